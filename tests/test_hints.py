"""Widget JSON (format v1), brush rasteriser, KJNodes coord_str, MotionHints helpers."""

import json

import numpy as np
import pytest
import torch

from motion_i2v_core.motion.hints import MotionHints, parse_coord_str, parse_widget_json, rasterize_brush

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
        (_bad(version=2), "version", "expected 1"),
        (_bad(version=None), "version", "expected 1"),
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
    assert json.loads(h.to_widget_json()) == GOOD
    assert [t.tolist() for t in again.tracks] == [t.tolist() for t in h.tracks]
    assert torch.equal(again.movable_mask, h.movable_mask)
    assert json.loads(again.to_widget_json()) == json.loads(h.to_widget_json())
