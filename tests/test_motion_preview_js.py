"""The editor's Play preview (web/motion_preview.js) computes the same field as Drags To Flow and
warps like Preview Motion, so what the artist sees while drawing is what the node makes.

Runs the JS module under node (no browser); skipped when node is not installed (an error in CI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from motion_i2v_core.motion.brush import static_mask
from motion_i2v_core.motion.flow_preview import EDGE_FRACTION, FALLOFF_FRACTION, drags_to_flow, warp_preview
from motion_i2v_core.motion.hints import MotionHints
from motion_i2v_core.motion.trajectories import default_flow_unit

SCRIPT = Path(__file__).parent / "browser" / "preview_check.mjs"
H, W, FRAMES = 48, 80, 5
TRACKS = [[[20.0, 20.0], [30.0, 14.0], [41.5, 18.0]], [[60.0, 30.0], [58.0, 40.0]], [[10.0, 40.0]]]


def run_js(cases):
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("node is not installed")
        pytest.skip("node is not installed")
    proc = subprocess.run([node, str(SCRIPT)], input=json.dumps({"cases": cases}), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def case(movable, image=None, timing=None):
    painted = None if movable is None else (1 - static_mask(movable, H, W)).flatten().int().tolist()
    return {
        "tracks": TRACKS, "timing": timing, "painted": painted, "width": W, "height": H, "frames": FRAMES,
        "flowUnit": default_flow_unit(H, W), "reach": FALLOFF_FRACTION * max(H, W),
        "edgeRamp": max(2, round(EDGE_FRACTION * min(H, W))), "image": image,
    }


def brush():
    movable = torch.zeros(H, W)
    movable[5:45, 5:50] = 1
    return movable


@pytest.mark.parametrize("painted", [False, True])
def test_play_field_equals_drags_to_flow(painted):
    movable = brush() if painted else None
    flow, _ = drags_to_flow(MotionHints(tracks=[np.array(t) for t in TRACKS], movable_mask=movable, width=W, height=H), H, W, FRAMES)
    js = torch.tensor(run_js([case(movable)])["flows"][0], dtype=torch.float32)  # (F, 2, H*W)
    assert flow.abs().max() > 5  # the case moves things
    torch.testing.assert_close(js.reshape(FRAMES, 2, H, W), flow, atol=1e-3, rtol=1e-4)


def test_play_frames_equal_preview_motion():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (H, W, 3)).astype(np.uint8)
    rgba = np.concatenate([image, np.full((H, W, 1), 255, np.uint8)], -1)
    out = run_js([case(brush(), rgba.flatten().tolist())])
    js_flow = torch.tensor(out["flows"][0], dtype=torch.float32).reshape(FRAMES, 2, H, W)
    py = warp_preview(torch.from_numpy(image).float() / 255, js_flow).numpy() * 255
    js = np.array(out["warped"][0], np.float32).reshape(FRAMES, H, W, 4)[..., :3]
    assert np.abs(js[0] - image).max() <= 0.5  # frame 0 is the image itself
    diff = np.abs(js - py)
    assert diff.max() <= 1.0, diff.max()  # 8-bit rounding only


# Per-track timing (format v2): a late start with easing, a held end, and the default.
TIMING = [{"start": 1, "end": None, "ease_in": True, "ease_out": False},
          {"start": 0, "end": 2, "ease_in": True, "ease_out": True}, None]


@pytest.mark.parametrize("painted", [False, True])
def test_play_field_with_track_timing_equals_drags_to_flow(painted):
    movable = brush() if painted else None
    hints = MotionHints(tracks=[np.array(t) for t in TRACKS], movable_mask=movable, width=W, height=H, timing=TIMING)
    flow, _ = drags_to_flow(hints, H, W, FRAMES)
    untimed, _ = drags_to_flow(MotionHints(tracks=hints.tracks, movable_mask=movable, width=W, height=H), H, W, FRAMES)
    js = torch.tensor(run_js([case(movable, timing=TIMING)])["flows"][0], dtype=torch.float32)
    assert (flow - untimed).abs().max() > 1  # the timing changes the field
    torch.testing.assert_close(flow[-1], untimed[-1])  # every track still ends where it was drawn to
    torch.testing.assert_close(js.reshape(FRAMES, 2, H, W), flow, atol=1e-3, rtol=1e-4)
