"""The pack loads in a real ComfyUI server and declares its nodes."""

import subprocess
import sys


from harness.comfy_server import REPO_DIR

PACK_NODES = {
    "MotionI2VLoader": {"weights", "precision", "appearance_model", "appearance_checkpoint"},
    "MotionI2VDrawMotionBrush": {"image", "hints_json", "mask", "coord_str", "coord_width", "coord_height"},
    "MotionI2VEncodeFlow": {"model", "motion", "width", "height", "num_frames", "flow_unit", "seed"},
    "MotionI2VPredictFlow": {"model", "image", "positive", "negative", "control", "width", "height", "num_frames",
                             "steps", "cfg", "seed", "sampler", "motion_speed", "official_compat"},
    "MotionI2VRenderVideo": {"model", "image", "positive", "negative", "flow", "steps", "cfg", "seed", "sampler",
                             "official_compat"},
    "MotionI2VDragsToFlow": {"motion", "width", "height", "num_frames", "flow_unit"},
    "MotionI2VPreviewMotion": {"image", "flow"},
    "MotionI2VPreviewFlow": {"flow"},
    "MotionI2VCameraMotion": {"width", "height", "num_frames", "pan_right", "pan_down", "zoom_in", "rotate_clockwise",
                              "dolly_in", "easing", "depth", "invert_depth", "far_distance", "fov", "track_grid",
                              "image"},
    "MotionI2VScaleFlow": {"flow", "amplitude", "easing"},
    "MotionI2VCombineFlows": {"base", "overlay", "mode", "mask"},
    "MotionI2VSaveFlow": {"flow", "filename_prefix"},
    "MotionI2VLoadFlow": {"flow_file", "width", "height", "num_frames"},
    "MotionI2VFlowFromVideo": {"video", "width", "height", "num_frames", "method", "fill_unreliable", "track_grid",
                               "mask", "image"},
    "MotionI2VExportTracks": {"motion", "width", "height", "points_per_track"},
    "MotionI2VRenderLongShot": {"model", "image", "positive", "negative", "flow", "segment_frames", "overlap",
                                "steps", "cfg", "seed", "sampler", "official_compat"},
}


def test_pack_imports_without_errors(comfy_server, comfy_client):
    log = comfy_server.log_text()
    problems = [line for line in log.splitlines()
                if ("IMPORT FAILED" in line and ("motion-i2v" in line or "testing_pack" in line))
                or "Motion-I2V: node module" in line or "Error while calling comfy_entrypoint" in line]
    assert not problems, "\n".join(problems) + "\n" + comfy_server.log_tail()
    assert "comfyui-motion-i2v" in log  # listed in "Import times for custom nodes"


def test_object_info_lists_every_node_with_its_inputs(comfy_client):
    info = comfy_client.object_info()
    ours = {name for name, node in info.items() if node["category"] == "Motion-I2V"}
    assert ours == set(PACK_NODES)
    for node_id, expected in PACK_NODES.items():
        node = info[node_id]
        declared = set(node["input"].get("required", {})) | set(node["input"].get("optional", {}))
        assert declared == expected, node_id
        assert node["description"], node_id
        for section_name, section in node["input"].items():
            if section_name == "hidden":  # prompt / extra_pnginfo of output nodes, not shown to users
                continue
            for name, spec in section.items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_web_extension_is_served(comfy_client):
    assert any("motion-i2v" in path for path in comfy_client.get_json("/extensions"))


def test_example_workflow_files_are_up_to_date():
    # The JSON files are generated; editing the generator without re-running it is caught here.
    run = subprocess.run([sys.executable, str(REPO_DIR / "scripts" / "make_example_workflows.py"), "--check"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
