"""The editor JSON saved in the example workflows as they were at commit 069aef1 (format v1) still
parses to the same hints. Expected values are written by hand from the v1 semantics: tracks are
polylines in image pixels, a one-point track is a static anchor, "paint" strokes mark a disc of
``radius`` px around every point of the stroke's polyline as movable, and nothing else is movable."""

from pathlib import Path

import numpy as np
import pytest

from motion_i2v_core.motion.hints import parse_widget_json

DATA = Path(__file__).parent / "data" / "widget_v1"
FILES = ["motion_i2v_drag_and_brush.json", "motion_i2v_motion_preview_no_weights.json"]

TRACKS = [
    [[200, 372], [185, 330], [178, 285]],   # drag, left
    [[600, 362], [620, 320], [632, 278]],   # drag, right
    [[384, 250]],                           # anchor
]
STROKES = [
    {"mode": "paint", "radius": 70.0, "points": [[170, 375], [330, 390]]},
    {"mode": "paint", "radius": 70.0, "points": [[450, 385], [620, 360]]},
]
# (x, y) -> movable: on each stroke's line, just inside/outside a disc end, far away
MASK_PROBES = {
    (250, 382): 1, (170, 375): 1, (535, 372): 1, (620, 360): 1,
    (170, 375 - 65): 1, (170, 375 - 76): 0, (620 + 76, 360): 0,
    (384, 250): 0, (50, 50): 0, (700, 700): 0, (384, 600): 0,
}


@pytest.mark.parametrize("name", FILES)
def test_old_example_json_parses_to_the_same_hints(name):
    h = parse_widget_json((DATA / name).read_text())
    assert (h.width, h.height) == (768, 768)
    assert [t.tolist() for t in h.tracks] == TRACKS
    assert h.brush_strokes == STROKES
    assert h.warnings == []
    assert h.movable_mask.shape == (768, 768)
    got = {p: int(h.movable_mask[p[1], p[0]].item()) for p in MASK_PROBES}
    assert got == MASK_PROBES
    # two discs' worth of band each: about 2 * (length * 2r + pi r^2) px, overlap aside
    area = float(h.movable_mask.sum())
    band = sum(np.hypot(*np.subtract(*s["points"])) * 140 + np.pi * 70 ** 2 for s in STROKES)
    assert 0.9 * band < area < 1.05 * band
