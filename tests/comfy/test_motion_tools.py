"""Camera moves and flow tools on the real server: depth input, bad input as node errors, Save/Load Flow."""

from __future__ import annotations

import json

import pytest

from harness.comfy_server import PromptRejected
from test_workflows import node_of, tiny_prompt, workflow


@pytest.fixture(scope="module")
def object_info(tiny_server):
    return tiny_server.client().object_info()


def camera_prompt(object_info, seed):
    return tiny_prompt(workflow("motion_i2v_camera_move_no_weights"), object_info, seed=seed)


def test_camera_motion_takes_an_image_as_depth_map(tiny_server, object_info):
    prompt = camera_prompt(object_info, 101)
    camera = prompt[node_of(prompt, "MotionI2VCameraMotion")]["inputs"]
    camera["depth"] = [node_of(prompt, "LoadImage"), 0]
    camera["dolly_in"] = 0.5
    result = tiny_server.client().run(prompt, timeout=120)
    assert result.ok, result.describe() + "\n" + tiny_server.log_tail()


def test_camera_motion_flat_depth_is_a_node_error_naming_the_fix(tiny_server, object_info):
    prompt = camera_prompt(object_info, 102)
    solid = "900"
    prompt[solid] = {"class_type": "SolidMask", "inputs": {"value": 0.5, "width": 64, "height": 64}}
    camera_id = node_of(prompt, "MotionI2VCameraMotion")
    camera = prompt[camera_id]["inputs"]
    camera.pop("image")  # a square mask over a square image would pass the aspect check anyway
    camera["depth"] = [solid, 0]
    result = tiny_server.client().run(prompt, timeout=120)
    assert result.status == "error" and result.error["node_id"] == camera_id, result.describe()
    assert "depth map is flat" in result.error["exception_message"] and "disconnect" in result.error["exception_message"]


def test_camera_motion_depth_of_another_aspect_is_a_node_error(tiny_server, object_info):
    prompt = camera_prompt(object_info, 103)
    prompt["901"] = {"class_type": "SolidMask", "inputs": {"value": 0.5, "width": 64, "height": 32}}
    camera_id = node_of(prompt, "MotionI2VCameraMotion")
    prompt[camera_id]["inputs"]["depth"] = ["901", 0]
    result = tiny_server.client().run(prompt, timeout=120)
    assert result.status == "error" and result.error["node_id"] == camera_id, result.describe()
    assert "aspect" in result.error["exception_message"]


def test_saved_flow_loads_back_and_resamples(tiny_server, object_info):
    prompt = tiny_prompt(workflow("motion_i2v_flow_tools_no_weights"), object_info, seed=104)
    save_id = node_of(prompt, "MotionI2VSaveFlow")
    prompt[save_id]["inputs"]["filename_prefix"] = "motion_i2v_test/roundtrip"
    client = tiny_server.client()
    result = client.run(prompt, timeout=120)
    assert result.ok, result.describe() + "\n" + tiny_server.log_tail()
    saved = result.outputs[save_id]["mi2v_flow_files"][0]
    assert (tiny_server.output_dir / saved["subfolder"] / saved["filename"]).is_file()
    listed = client.object_info()["MotionI2VLoadFlow"]["input"]["required"]["flow_file"]
    names = listed[1]["options"] if len(listed) > 1 and "options" in listed[1] else listed[0]
    name = f"{saved['subfolder']}/{saved['filename']} [output]"
    assert name in names
    load = {
        "1": {"class_type": "MotionI2VLoadFlow",
              "inputs": {"flow_file": name, "width": 128, "height": 64, "num_frames": 4}},
        "2": {"class_type": "MotionI2VPreviewFlow", "inputs": {"flow": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "mi2v_loaded"}},
    }
    loaded = client.run(load, timeout=120)
    assert loaded.ok, loaded.describe()
    images = loaded.outputs["3"]["images"]
    assert len(images) == 4  # one colour frame per resampled flow frame


def test_save_flow_outside_the_output_folder_is_refused(tiny_server, object_info):
    prompt = tiny_prompt(workflow("motion_i2v_flow_tools_no_weights"), object_info, seed=105)
    save_id = node_of(prompt, "MotionI2VSaveFlow")
    prompt[save_id]["inputs"]["filename_prefix"] = "../escape/flow"
    result = tiny_server.client().run(prompt, timeout=120)
    assert result.status == "error" and result.error["node_id"] == save_id, result.describe()
    assert "'..'" in result.error["exception_message"]
    assert not (tiny_server.output_dir.parent / "escape").exists()


def test_load_flow_name_outside_the_folders_is_rejected(tiny_server, object_info):
    prompt = {"1": {"class_type": "MotionI2VLoadFlow",
                    "inputs": {"flow_file": "../../etc/passwd", "width": 0, "height": 0, "num_frames": 0}},
              "2": {"class_type": "MotionI2VPreviewFlow", "inputs": {"flow": ["1", 0]}},
              "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}
    with pytest.raises(PromptRejected) as err:
        tiny_server.client().queue(prompt)
    assert "flow_file" in str(err.value) or "Load Flow" in str(err.value)


def test_flow_from_video_one_frame_clip_is_a_node_error(tiny_server, object_info):
    prompt = tiny_prompt(workflow("motion_i2v_video_to_video"), object_info, seed=106)
    video_id = node_of(prompt, "MotionI2VFlowFromVideo")
    prompt[video_id]["inputs"]["video"] = [node_of(prompt, "LoadImage"), 0]  # a single picture
    result = tiny_server.client().run(prompt, timeout=120)
    assert result.status == "error" and result.error["node_id"] == video_id, result.describe()
    assert "at least 2" in result.error["exception_message"]


def test_flow_from_video_reports_progress_per_clip_frame(tiny_server, object_info):
    prompt = tiny_prompt(workflow("motion_i2v_video_to_video"), object_info, seed=107)
    video_id = node_of(prompt, "MotionI2VFlowFromVideo")
    result = tiny_server.client().run(prompt, timeout=300)
    assert result.ok, result.describe() + "\n" + tiny_server.log_tail()
    steps = result.progress_for(video_id)
    assert steps and steps[-1] == (11, 11), steps  # 12-frame driving clip: 11 flows


def test_coord_str_from_another_canvas_lands_where_drawn_and_the_node_says_so(tiny_server):
    # example.png is 768x768; the coord_str was drawn on a 512x512 canvas: (100, 200) -> (150, 300).
    coord = '[[{"x": 100, "y": 200}, {"x": 400, "y": 300}], [{"x": 600, "y": 10}]]'
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "2": {"class_type": "PrimitiveString", "inputs": {"value": coord}},
        "3": {"class_type": "MotionI2VDrawMotionBrush",
              "inputs": {"image": ["1", 0], "hints_json": "", "coord_str": ["2", 0],
                         "coord_width": 512, "coord_height": 512}},
        "4": {"class_type": "MotionI2VExportTracks",
              "inputs": {"motion": ["3", 1], "width": 512, "height": 320, "points_per_track": 16}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}},
    }
    result = tiny_server.client().run(prompt, timeout=120)
    assert result.ok, result.describe() + "\n" + tiny_server.log_tail()
    summary = result.outputs["3"]["mi2v_hints"][0]
    assert summary["track_ends"][0] == [[150.0, 300.0], [600.0, 450.0]]
    notes = result.outputs["3"]["mi2v_notes"]
    assert any("512x512 canvas" in n and "768x768 image" in n for n in notes), notes
    assert any("track 1 point 0" in n and "outside" in n for n in notes), notes  # (900, 15) is off the image
    export_notes = result.outputs["4"]["mi2v_notes"]
    assert any("512x320" in n for n in export_notes), export_notes
    exported = json.loads(result.outputs["5"]["text"][0])
    assert len(exported) == 2 and len(exported[0]) == 16
    assert abs(exported[0][0]["x"] - 100) < 1 and abs(exported[0][0]["y"] - 125) < 1  # 768x768 -> 512x320


def test_long_shot_chains_segments_into_one_batch_with_one_progress_bar(tiny_server, object_info):
    prompt = tiny_prompt(workflow("motion_i2v_long_shot"), object_info, seed=108)  # 6 frames, 2 steps
    long_id = node_of(prompt, "MotionI2VRenderLongShot")
    prompt[long_id]["inputs"]["segment_frames"] = 4  # segments (0, 4) and (3, 3)
    prompt["950"] = {"class_type": "SaveImage", "inputs": {"images": [long_id, 0], "filename_prefix": "mi2v_long"}}
    result = tiny_server.client().run(prompt, timeout=300)
    assert result.ok, result.describe() + "\n" + tiny_server.log_tail()
    assert result.progress_for(long_id) == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert len(result.outputs["950"]["images"]) == 6


def test_render_video_refuses_a_long_flow_naming_render_long_shot(tiny_server, object_info):
    prompt = tiny_prompt(workflow("motion_i2v_camera_move"), object_info, seed=109)
    prompt[node_of(prompt, "MotionI2VCameraMotion")]["inputs"]["num_frames"] = 20
    render_id = node_of(prompt, "MotionI2VRenderVideo")
    result = tiny_server.client().run(prompt, timeout=120)
    assert result.status == "error" and result.error["node_id"] == render_id, result.describe()
    assert "Render Long Shot" in result.error["exception_message"]
