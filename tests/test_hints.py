"""Widget JSON (format v1), brush rasteriser, KJNodes coord_str, MotionHints helpers."""

import json

import numpy as np
import pytest
import torch

from motion_i2v_core.motion import hints as hints_module
from motion_i2v_core.motion.brush import MAX_BRUSH_WORK, brush_work
from motion_i2v_core.motion.hints import (MotionHints, build_motion_hints, hints_summary, parse_coord_str,
                                          parse_widget_json, rasterize_brush)

GOOD = {
    "version": 1,
    "width": 96,
    "height": 64,
    "brush": [
        {"mode": "paint", "radius": 10, "points": [[20, 20], [60, 20]]},
        {"mode": "erase", "radius": 3, "points": [[40, 20]]},
    ],
    "tracks": [[[10.5, 12.0], [20.0, 14.2], [30, 30]], [[50, 40]]],
}


def test_parse_good_value_string_and_dict():
    for value in (json.dumps(GOOD), GOOD):
        h = parse_widget_json(value)
        assert (h.width, h.height) == (96, 64)
        assert len(h.tracks) == 2 and h.tracks[0].shape == (3, 2) and h.tracks[1].shape == (1, 2)
        assert h.tracks[0][0].tolist() == [10.5, 12.0]
        assert h.movable_mask.shape == (64, 96)
        assert h.movable_mask[20, 30].item() == 1.0  # painted
        assert h.movable_mask[20, 40].item() == 0.0  # erased afterwards
        assert h.movable_mask[50, 80].item() == 0.0  # never painted
        assert h.warnings == []


@pytest.mark.parametrize("value", ["", "   ", "{}", None, {}])
def test_empty_means_no_hints(value):
    h = parse_widget_json(value)
    assert h.tracks == [] and h.movable_mask is None and h.is_empty


def test_missing_keys_default_to_empty():
    h = parse_widget_json('{"version": 1, "width": 32, "height": 16}')
    assert h.tracks == [] and h.movable_mask is None and (h.width, h.height) == (32, 16)


def test_empty_brush_or_fully_erased_brush_means_everything_movable():
    v = dict(GOOD, brush=[{"mode": "paint", "radius": 2, "points": [[5, 5]]},
                          {"mode": "erase", "radius": 5, "points": [[5, 5]]}])
    assert parse_widget_json(v).movable_mask is None
    assert parse_widget_json(dict(GOOD, brush=[])).movable_mask is None


def _bad(**changes):
    v = json.loads(json.dumps(GOOD))
    v.update(changes)
    return v


@pytest.mark.parametrize(
    "value, path, expected",
    [
        ("{not json", "not valid JSON", ""),
        ("[1, 2]", "expected a JSON object", ""),
        (_bad(version=3), "version", "expected one of (1, 2)"),
        (_bad(version=None), "version", "expected one of (1, 2)"),
        (_bad(timing=[{"start": 2}]), "timing", "version 2"),
        (dict(_bad(version=2), timing=[{"start": 4, "end": 4}]), "timing[0]", "after start"),
        (dict(_bad(version=2), timing=[{"start": -1}]), "timing[0].start", "frame index"),
        (dict(_bad(version=2), timing=[{"ease_in": 1}]), "timing[0].ease_in", "true or false"),
        (dict(_bad(version=2), timing=[{"speed": 1}]), "timing[0]", "unknown key"),
        (dict(_bad(version=2), timing=[None] * 9), "timing", "one per track"),
        (_bad(width=0), "width", "positive integer"),
        (_bad(width="512"), "width", "positive integer"),
        (_bad(height=20000), "height", "<= 16384"),
        (_bad(height=True), "height", "positive integer"),
        (_bad(brush="paint"), "brush", "list of strokes"),
        (_bad(brush=[{"mode": "draw", "radius": 3, "points": [[1, 1]]}]), "brush[0].mode", "'paint' or 'erase'"),
        (_bad(brush=[GOOD["brush"][0], {"mode": "erase", "radius": 0, "points": [[1, 1]]}]), "brush[1].radius", "positive"),
        (_bad(brush=[{"mode": "paint", "radius": 3, "points": []}]), "brush[0].points", "non-empty list"),
        (_bad(brush=[{"mode": "paint", "radius": 3, "points": [[1, 1], [2]]}]), "brush[0].points[1]", "two finite numbers"),
        (_bad(tracks={"a": 1}), "tracks", "list of tracks"),
        (_bad(tracks=[[[1, 1]], []]), "tracks[1]", "non-empty list"),
        (_bad(tracks=[[[1, 1]], [[1, 1], [2, 2], [3, "a"]]]), "tracks[1][2]", "two finite numbers"),
        (_bad(tracks=[[[1, 1], [True, 2]]]), "tracks[0][1]", "two finite numbers"),
        ('{"version": 1, "width": 8, "height": 8, "tracks": [[[1, NaN]]]}', "tracks[0][0]", "finite"),
    ],
)
def test_bad_values_name_the_field(value, path, expected):
    with pytest.raises(ValueError) as err:
        parse_widget_json(value)
    msg = str(err.value)
    assert msg.startswith(path) or path in msg, msg
    assert expected in msg, msg


def test_rasteriser_paint_erase_order():
    disc = {"mode": "paint", "radius": 5, "points": [[20, 20]]}
    hole = {"mode": "erase", "radius": 2, "points": [[20, 20]]}
    ring = rasterize_brush([disc, hole], 40, 40)
    assert ring[20, 20] == 0 and ring[20, 24] == 1 and ring[20, 26] == 0
    # reversed order: erasing first has no effect, the disc covers the centre
    full = rasterize_brush([hole, disc], 40, 40)
    assert full[20, 20] == 1
    assert set(torch.unique(ring).tolist()) <= {0.0, 1.0} and ring.dtype == torch.float32


def test_rasteriser_round_capped_polyline():
    m = rasterize_brush([{"mode": "paint", "radius": 3, "points": [[10, 10], [30, 10]]}], 40, 20)
    assert m[10, 10:31].min() == 1 and m[7, 20] == 1 and m[13, 20] == 1 and m[5, 20] == 0
    assert m[10, 7] == 1 and m[10, 33] == 1 and m[10, 35] == 0  # round caps of radius 3
    # a single point is a disc: area close to pi r^2
    d = rasterize_brush([{"mode": "paint", "radius": 6, "points": [[20, 20]]}], 40, 40)
    assert abs(d.sum().item() - np.pi * 36) < 0.2 * np.pi * 36


def test_coord_str_one_and_many_tracks():
    one = parse_coord_str('[{"x": 1, "y": 2}, {"x": 3.5, "y": 4}]', 64, 64)
    assert len(one) == 1 and one[0].tolist() == [[1, 2], [3.5, 4]]
    many = parse_coord_str(json.dumps([[{"x": 1, "y": 2}], [{"x": 5, "y": 6}, {"x": 7, "y": 8}]]), 64, 64)
    assert [t.shape for t in many] == [(1, 2), (2, 2)]
    assert parse_coord_str("", 64, 64) == [] and parse_coord_str("[]", 64, 64) == []
    assert parse_coord_str("[{'x': 1, 'y': 2}]")[0].tolist() == [[1, 2]]  # python-repr quoting


@pytest.mark.parametrize(
    "s, path",
    [("{", "coord_str"), ('{"x": 1}', "coord_str"), ('[{"x": 1}]', "coord_str[0][0]"),
     ('[[{"x": 1, "y": 2}], []]', "coord_str[1]"), ('[{"x": "a", "y": 2}]', "coord_str[0][0]")],
)
def test_coord_str_errors(s, path):
    with pytest.raises(ValueError, match=path.replace("[", r"\[").replace("]", r"\]")):
        parse_coord_str(s, 64, 64)


def test_from_mask_and_resized():
    mask = torch.zeros(1, 20, 40)
    mask[0, :, :20] = 1
    h = MotionHints.from_mask(mask, tracks=[[[4, 6], [8, 10]]])
    assert (h.width, h.height) == (40, 20) and h.movable_mask.shape == (20, 40)
    r = h.resized(80, 40)
    assert r.tracks[0].tolist() == [[8, 12], [16, 20]]
    assert r.movable_mask.shape == (40, 80) and r.movable_mask[:, :38].min() == 1 and r.movable_mask[:, 42:].max() == 0
    assert MotionHints.from_mask(torch.zeros(8, 8)).movable_mask is None


def test_widget_json_round_trip():
    h = parse_widget_json(GOOD)
    again = parse_widget_json(h.to_widget_json())
    assert json.loads(h.to_widget_json()) == dict(GOOD, version=2)  # written as v2, no timing key
    assert [t.tolist() for t in again.tracks] == [t.tolist() for t in h.tracks]
    assert torch.equal(again.movable_mask, h.movable_mask)
    assert json.loads(again.to_widget_json()) == json.loads(h.to_widget_json())


# --------------------------------------------------------------------------------------------
# Bounds: every limit is named in the error, and checked before the work it bounds
# --------------------------------------------------------------------------------------------

def _stroke(n=1, radius=3, point=(5, 5)):
    return {"mode": "paint", "radius": radius, "points": [list(point)] * n}


L = hints_module


@pytest.mark.parametrize(
    "value, expected",
    [
        (_bad(brush=[_stroke(radius=1e9)]), "brush[0].radius: 1e+09 px is over the limit of 96 px"),
        (_bad(brush=[_stroke(radius=1e300)]), "over the limit of 96 px"),
        (_bad(brush=[_stroke()] * (L.MAX_STROKES + 1)), f"brush: {L.MAX_STROKES + 1:,} strokes, over the limit of {L.MAX_STROKES:,}"),
        (_bad(tracks=[[[1, 1]]] * (L.MAX_TRACKS + 1)), f"over the limit of {L.MAX_TRACKS}"),
        (_bad(tracks=[[[1, 1]] * (L.MAX_TRACK_POINTS + 1)]), f"tracks[0]: {L.MAX_TRACK_POINTS + 1:,} points, over the limit"),
        (_bad(brush=[_stroke(n=L.MAX_POINTS // 2 + 1)] * 2), f"more than {L.MAX_POINTS:,} points in all"),
        (_bad(tracks=[[[1e12, 1]]]), "tracks[0][0]: x = 1e+12 is outside -96..192"),
        (_bad(brush=[_stroke(point=(5, -1e13))]), "brush[0].points[0]: y = -1e+13 is outside -64..128"),
        (_bad(tracks=[[[10 ** 400, 1]]]), "two finite numbers"),
        ('{"version":1,"width":8,"height":8,"tracks":[[[1,2]]],"x":' + "[" * 100000 + "]" * 100000 + "}",
         f"nested 100001 levels deep, over the limit of {L.MAX_JSON_DEPTH}"),
        ('{"version":1,"width":8,"height":8,"tracks":[[[1,' + "9" * 5000 + "]]]}", "not valid JSON"),
        (" " * (L.MAX_JSON_CHARS + 1), None),  # blank: means no hints, whatever its length
        ('{"a":"' + "x" * L.MAX_JSON_CHARS + '"}', f"over the limit of {L.MAX_JSON_CHARS:,}"),
    ],
)
def test_limits_are_named_in_the_error(value, expected):
    if expected is None:
        assert parse_widget_json(value).is_empty
        return
    with pytest.raises(ValueError) as err:
        parse_widget_json(value, rasterize=False)
    assert expected in str(err.value), str(err.value)
    assert len(str(err.value)) < 400, "messages never echo a whole pasted value"


def test_brush_work_is_checked_before_drawing():
    # 1000 full-canvas discs at 4096x4096: far over the limit, refused without drawing.
    value = {"version": 1, "width": 4096, "height": 4096, "brush": [_stroke(n=1000, radius=4096, point=(2048, 2048))]}
    assert brush_work(value["brush"], 4096, 4096) > MAX_BRUSH_WORK
    with pytest.raises(ValueError, match="billion pixels, over the limit of 10 billion"):
        parse_widget_json(value, rasterize=False)
    # Accepted at the editor's size, refused at a 64x larger image (the radius scales with it).
    small = json.dumps({"version": 1, "width": 64, "height": 64, "brush": [_stroke(n=700, radius=64, point=(32, 32))]})
    assert parse_widget_json(small).movable_mask is not None
    with pytest.raises(ValueError, match="at 4096x4096 would write about"):
        build_motion_hints(small, 4096, 4096)


def test_parse_only_does_not_rasterise():
    h = parse_widget_json(GOOD, rasterize=False)
    assert h.movable_mask is None and len(h.brush_strokes) == 2 and len(h.tracks) == 2


def test_build_motion_hints_composites_once_on_the_mask():
    base = torch.zeros(64, 96)
    base[:, :10] = 1
    h = build_motion_hints(json.dumps(GOOD), 96, 64, mask=base)
    expected = rasterize_brush(GOOD["brush"], 96, 64, base=base)
    assert torch.equal(h.movable_mask, expected)
    assert h.movable_mask[30, 5] == 1 and h.movable_mask[20, 30] == 1 and h.movable_mask[20, 40] == 0
    # the same as painting the strokes one by one onto the base
    one_by_one = base.clone()
    for s in GOOD["brush"]:
        one_by_one[rasterize_brush([dict(s, mode="paint")], 96, 64) > 0] = float(s["mode"] == "paint")
    assert torch.equal(h.movable_mask, one_by_one)


def test_summary_counts_instead_of_points():
    many = dict(GOOD, tracks=[[[1.0 * i, 2.0]] * 900 for i in range(50)] + [[[-5, 3], [150, 3]]])
    h = build_motion_hints(json.dumps(many), 96, 64)
    summary = hints_summary(h)
    assert summary["track_count"] == 51 and summary["track_points"] == [900] * 50 + [2]
    assert summary["track_ends"][-1] == [[-5, 3], [150, 3]] and summary["clamped_points"] == 2
    assert summary["stroke_count"] == 2 and summary["brush_points"] == 3
    assert len(json.dumps(summary)) < 5000


@pytest.mark.parametrize(
    "s, expected",
    [("[" * 5000 + "]" * 5000, "nested 5000 levels deep"),
     (json.dumps([[{"x": 1, "y": 1}]] * (L.MAX_TRACKS + 1)), f"over the limit of {L.MAX_TRACKS}"),
     (json.dumps([{"x": 1, "y": 1}] * (L.MAX_TRACK_POINTS + 1)), f"coord_str[0]: {L.MAX_TRACK_POINTS + 1:,} points"),
     ('[{"x": 1e12, "y": 1}]', "coord_str[0][0]: x = 1e+12 is outside -64..128"),
     ("[{'x': [[[[[[[[[[1]]]]]]]]]], 'y': 1}]", "nested 12 levels deep")],
)
def test_coord_str_limits(s, expected):
    with pytest.raises(ValueError) as err:
        parse_coord_str(s, 64, 64)
    assert expected in str(err.value), str(err.value)
