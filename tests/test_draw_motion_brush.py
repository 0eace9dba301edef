"""Draw Motion Brush node, Python side: widget JSON -> MASK + MotionHints, validation, ui output.

In-process tests import the node module inside the ComfyUI that scripts/setup_env.sh installed
(skipped without it); the server tests at the end run the node through a real ComfyUI prompt.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import urllib.parse
import urllib.request

import cv2
import numpy as np
import pytest
import torch

from harness.comfy_server import REPO_DIR, PromptRejected, default_comfyui_dir
from motion_i2v_core.motion.hints import MotionHints, rasterize_brush

PACKAGE_ALIAS = "mi2v_pack_under_test"


@pytest.fixture(scope="module")
def dmb():
    """nodes/draw_motion_brush.py, imported as ComfyUI would: inside the pack's package."""
    comfy_dir = default_comfyui_dir()
    if not (comfy_dir / "main.py").is_file():
        pytest.skip(f"no ComfyUI backend at {comfy_dir}; run scripts/setup_env.sh")
    sys.path.insert(0, str(REPO_DIR / "scripts"))
    from launch_comfyui import install_torchvision_shim

    install_torchvision_shim()
    if str(comfy_dir) not in sys.path:
        sys.path.insert(0, str(comfy_dir))
    argv, sys.argv = sys.argv, ["pytest", "--cpu", "--disable-api-nodes"]
    try:
        import comfy.options

        comfy.options.enable_args_parsing()
        import comfy_api.latest  # noqa: F401  (parses --cpu before model management loads)
    finally:
        sys.argv = argv
    if PACKAGE_ALIAS not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE_ALIAS, REPO_DIR / "__init__.py", submodule_search_locations=[str(REPO_DIR)]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE_ALIAS] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{PACKAGE_ALIAS}.nodes.draw_motion_brush")


@pytest.fixture
def temp_dir(tmp_path):
    import folder_paths

    old = folder_paths.get_temp_directory()
    folder_paths.set_temp_directory(str(tmp_path))
    yield tmp_path
    folder_paths.set_temp_directory(old)


def hints_json(width, height, brush=(), tracks=()):
    return json.dumps({"version": 1, "width": width, "height": height, "brush": list(brush), "tracks": list(tracks)})


def image(height, width):
    return torch.rand(1, height, width, 3, generator=torch.Generator().manual_seed(0))


def run(dmb, img, value, **optional):
    out = dmb.DrawMotionBrush.execute(image=img, hints_json=value, **optional)
    mask, hints = out.result
    return mask, hints, out.ui


# --------------------------------------------------------------------------------------------
# Schema and validation
# --------------------------------------------------------------------------------------------

def test_schema_declares_editor_widget_and_outputs(dmb):
    info = dmb.DrawMotionBrush.INPUT_TYPES()
    assert info["required"]["image"][0] == "IMAGE"
    widget_type, options = info["required"]["hints_json"]
    assert widget_type == dmb.HINTS_WIDGET_TYPE == "MI2V_HINTS_JSON"  # web/draw_motion_brush.js WIDGET_TYPE
    assert options["default"] == "" and options["socketless"] is True
    assert info["optional"]["mask"][0] == "MASK"
    assert info["optional"]["coord_str"][0] == "STRING" and info["optional"]["coord_str"][1]["forceInput"]
    assert list(dmb.DrawMotionBrush.RETURN_TYPES) == ["MASK", "MI2V_MOTION"]
    assert dmb.NODE_ID == "MotionI2VDrawMotionBrush"  # web/draw_motion_brush.js NODE_ID


@pytest.mark.parametrize("value", ["", "{}", "  ", hints_json(64, 32, tracks=[[[1, 2], [3, 4]]])])
def test_validate_accepts_empty_and_valid_values(dmb, value):
    assert dmb.DrawMotionBrush.validate_inputs(hints_json=value) is True


@pytest.mark.parametrize(
    "value, expected",
    [
        ('{"version":1,"width":64', "not valid JSON"),
        ('{"version":7,"width":64,"height":32}', "version"),
        ('{"version":1,"width":64,"height":32,"tracks":[[[1,"a"]]]}', "tracks[0][0]"),
        ('{"version":1,"width":64,"height":32,"brush":[{"mode":"smear","radius":3,"points":[[1,1]]}]}', "brush[0].mode"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_validate_reports_malformed_json_readably(dmb, value, expected):
    message = dmb.DrawMotionBrush.validate_inputs(hints_json=value)
    assert isinstance(message, str)
    assert expected in message and "Draw Motion Brush" in message and "Redraw" in message


def test_execute_raises_value_error_for_malformed_json(dmb, temp_dir):
    with pytest.raises(ValueError, match="not valid JSON"):
        run(dmb, image(32, 64), "{oops")


# --------------------------------------------------------------------------------------------
# JSON -> MASK + MotionHints
# --------------------------------------------------------------------------------------------

def test_empty_value_means_everything_movable_and_no_tracks(dmb, temp_dir):
    mask, hints, _ = run(dmb, image(40, 72), "")
    assert mask.shape == (1, 40, 72) and bool((mask == 1).all())
    assert isinstance(hints, MotionHints)
    assert hints.movable_mask is None and hints.tracks == [] and (hints.width, hints.height) == (72, 40)


def test_painted_strokes_and_tracks_at_image_size(dmb, temp_dir):
    strokes = [
        {"mode": "paint", "radius": 6, "points": [[10, 10], [40, 12]]},
        {"mode": "erase", "radius": 3, "points": [[25, 11]]},
    ]
    tracks = [[[5.5, 6.5], [20, 25], [50.2, 30]], [[60, 5]]]
    mask, hints, ui = run(dmb, image(48, 80), hints_json(80, 48, strokes, tracks))

    expected = rasterize_brush(strokes, 80, 48)
    assert mask.shape == (1, 48, 80) and torch.equal(mask[0], expected)
    assert mask[0, 10, 12] == 1 and mask[0, 11, 25] == 0 and mask[0, 40, 70] == 0  # painted, erased, never painted
    assert torch.equal(hints.movable_mask, expected)
    assert [t.tolist() for t in hints.tracks] == tracks
    assert hints.brush_strokes[0]["mode"] == "paint"

    summary = ui["mi2v_hints"][0]
    assert (summary["width"], summary["height"]) == (80, 48)
    assert summary["track_count"] == 2 and summary["track_points"] == [3, 1]
    assert summary["track_ends"] == [[t[0], t[-1]] for t in tracks]
    assert (summary["stroke_count"], summary["brush_points"], summary["clamped_points"]) == (2, 3, 0)
    assert summary["movable_fraction"] == pytest.approx(float(expected.mean()), abs=1e-5)


def test_hints_drawn_at_another_size_are_scaled_to_the_image(dmb, temp_dir):
    strokes = [{"mode": "paint", "radius": 4, "points": [[8, 8], [24, 8]]}]
    mask, hints, _ = run(dmb, image(64, 128), hints_json(64, 32, strokes, [[[10, 5], [30, 20]]]))
    assert [t.tolist() for t in hints.tracks] == [[[20, 10], [60, 40]]]
    # Rasterised at the image size from the scaled strokes (radius scaled by sqrt(sx*sy) = 2).
    expected = rasterize_brush([{"mode": "paint", "radius": 8, "points": [[16, 16], [48, 16]]}], 128, 64)
    assert torch.equal(mask[0], expected)


def test_mask_input_is_the_base_that_strokes_paint_and_erase(dmb, temp_dir):
    base = torch.zeros(1, 20, 40)
    base[:, :, :10] = 1  # left quarter movable
    strokes = [
        {"mode": "erase", "radius": 2, "points": [[3, 10]]},  # cut a hole in the base
        {"mode": "paint", "radius": 2, "points": [[30, 10]]},  # add a spot on the right
    ]
    mask, hints, _ = run(dmb, image(20, 40), hints_json(40, 20, strokes), mask=base)
    assert mask[0, 10, 3] == 0 and mask[0, 2, 3] == 1  # erased inside the base, base kept elsewhere
    assert mask[0, 10, 30] == 1 and mask[0, 2, 30] == 0  # painted spot only
    assert torch.equal(hints.movable_mask, mask[0])


def test_mask_input_of_another_size_is_resized_and_alone_defines_the_region(dmb, temp_dir):
    base = torch.zeros(10, 20)
    base[:, 10:] = 1  # right half
    mask, hints, _ = run(dmb, image(40, 80), "", mask=base)
    assert mask.shape == (1, 40, 80)
    assert bool((mask[0, :, 44:] == 1).all()) and bool((mask[0, :, :36] == 0).all())
    # An all-zero mask marks nothing: everything may move, as with nothing painted.
    mask, hints, _ = run(dmb, image(40, 80), "", mask=torch.zeros(1, 40, 80))
    assert hints.movable_mask is None and bool((mask == 1).all())


def test_coord_str_tracks_are_appended(dmb, temp_dir):
    coord_str = json.dumps([[{"x": 1, "y": 2}, {"x": 30, "y": 20}], [{"x": 5, "y": 5}]])
    _, hints, ui = run(dmb, image(32, 64), hints_json(64, 32, tracks=[[[9, 9], [10, 10]]]), coord_str=coord_str)
    assert [t.tolist() for t in hints.tracks] == [[[9, 9], [10, 10]], [[1, 2], [30, 20]], [[5, 5]]]
    with pytest.raises(ValueError, match="coord_str"):
        run(dmb, image(32, 64), "", coord_str="[[{'x': 1}]]")


def test_points_outside_the_image_are_reported(dmb, temp_dir):
    _, hints, ui = run(dmb, image(32, 64), hints_json(64, 32, tracks=[[[10, 10], [90, 10]]]))
    assert any("outside" in w for w in hints.warnings) and ui["mi2v_hints"][0]["warnings"]
    assert ui["mi2v_hints"][0]["clamped_points"] == 1


def test_reference_preview_is_written_to_temp_with_true_size(dmb, temp_dir):
    big = torch.rand(1, 600, 1500, 3)
    _, _, ui = run(dmb, big, "")
    ref = ui["mi2v_reference"][0]
    assert ref["type"] == "temp" and (ref["width"], ref["height"]) == (1500, 600)
    path = temp_dir / ref["subfolder"] / ref["filename"]
    preview = cv2.imread(str(path))
    assert preview is not None and max(preview.shape[:2]) == dmb.REFERENCE_PREVIEW_MAX_SIDE


# --------------------------------------------------------------------------------------------
# Through a real ComfyUI server (API prompt, the same JSON string as the editor writes)
# --------------------------------------------------------------------------------------------

def fetch_view_image(url, ref):
    """A ui image record {filename, subfolder, type} -> grey uint8 array, via the standard /view route."""
    query = urllib.parse.urlencode({k: ref.get(k, "") for k in ("filename", "subfolder", "type")})
    with urllib.request.urlopen(f"{url}/view?{query}", timeout=30) as r:
        return cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_GRAYSCALE)


def api_prompt(value, width=96, height=64):
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": 1, "color": 0x336699}},
        "2": {"class_type": "MotionI2VDrawMotionBrush", "inputs": {"image": ["1", 0], "hints_json": value}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }


def test_server_runs_node_from_api_json(comfy_client):
    strokes = [{"mode": "paint", "radius": 5, "points": [[10, 10], [60, 30]]}]
    tracks = [[[12, 40], [30, 44], [70, 50]], [[80, 8]]]
    result = comfy_client.run(api_prompt(hints_json(96, 64, strokes, tracks)), timeout=120)
    assert result.ok, result.describe()
    summary = result.outputs["2"]["mi2v_hints"][0]
    assert summary["track_points"] == [3, 1] and summary["track_ends"] == [[t[0], t[-1]] for t in tracks]
    preview = result.outputs["4"]["images"][0]
    png = fetch_view_image(comfy_client.url, preview)
    assert png.shape == (64, 96)
    np.testing.assert_array_equal(png > 127, rasterize_brush(strokes, 96, 64).numpy() > 0)


def test_server_rejects_malformed_json_with_a_node_error(comfy_client):
    with pytest.raises(PromptRejected) as info:
        comfy_client.queue(api_prompt('{"version":1,"width":96,"height":64,"tracks":[[[1]]]}'))
    node_errors = info.value.body["node_errors"]["2"]["errors"]
    assert any("tracks[0][0]" in e["details"] and "hints_json" in e["details"] for e in node_errors)
