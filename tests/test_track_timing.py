"""Per-track timing (widget format v2): start/end frame and easing of a track's position."""

import json

import numpy as np
import pytest
from motion_i2v_core.motion.control import sparse_flow_from_hints
from motion_i2v_core.motion.hints import parse_widget_json
from motion_i2v_core.motion.trajectories import resample_track, timing_progress, track_path

LINE = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])  # straight: PCHIP is linear in t here


@pytest.mark.parametrize("timing", [None, {}, {"start": 0, "end": None, "ease_in": False, "ease_out": False}])
def test_default_timing_is_the_untimed_path(timing):
    curve = np.array([[3.0, 4.0], [30.0, 9.0], [12.0, 40.0]])
    assert np.array_equal(track_path(curve, 9, timing), resample_track(curve, 9))


def test_still_before_start_held_after_end_linear_between():
    path = track_path(LINE, 9, {"start": 2, "end": 6})  # frames 0..8
    x = path[:, 0]
    assert x[:3].tolist() == [0, 0, 0]
    np.testing.assert_allclose(x[2:7], [0, 5, 10, 15, 20], atol=1e-9)
    assert x[6:].tolist() == [20, 20, 20]


def test_easing_shapes():
    n = 5  # u = 0, .25, .5, .75, 1
    np.testing.assert_allclose(timing_progress({"ease_in": True}, n), [0, 1 / 16, 1 / 4, 9 / 16, 1])
    np.testing.assert_allclose(timing_progress({"ease_out": True}, n), [0, 7 / 16, 3 / 4, 15 / 16, 1])
    np.testing.assert_allclose(timing_progress({"ease_in": True, "ease_out": True}, n), [0, 5 / 32, 1 / 2, 27 / 32, 1])


def test_frames_past_the_clip_are_clamped():
    # saved for a 16-frame clip, played in 5: end 12 -> last frame, start 9 -> one before it
    np.testing.assert_allclose(timing_progress({"start": 9, "end": 12}, 5), [0, 0, 0, 0, 1])


def test_v2_json_timing_reaches_the_control_encode():
    value = {"version": 2, "width": 64, "height": 64, "brush": [],
             "tracks": [[[10, 32], [50, 32]]], "timing": [{"start": 8, "end": None}]}
    timed = parse_widget_json(json.dumps(value))
    assert timed.timing == [{"start": 8, "end": None, "ease_in": False, "ease_out": False}]
    flow, mask, _ = sparse_flow_from_hints(timed, 64, 64, num_frames=15)
    dx = (flow[0, 0, :, 32, 10] - 0.5) * 2 * 64  # cumulative x displacement per flow frame, px
    assert dx[:7].abs().max() < 1e-4  # flow frames 0..6 = video frames 1..7: still
    assert dx[-1] == pytest.approx(40, abs=0.05)  # arrives at the end
    untimed = parse_widget_json({k: v for k, v in value.items() if k != "timing"} | {"version": 1})
    flow1, _, _ = sparse_flow_from_hints(untimed, 64, 64, num_frames=15)
    assert ((flow1[0, 0, :, 32, 10] - 0.5) * 2 * 64)[0] > 1  # without timing it moves at once


def test_round_trip_keeps_timing_and_v1_has_none():
    value = {"version": 2, "width": 64, "height": 64, "tracks": [[[1, 2], [3, 4]], [[5, 6]]],
             "timing": [None, {"start": 1, "end": 5, "ease_in": True, "ease_out": False}]}
    h = parse_widget_json(value)
    again = parse_widget_json(h.to_widget_json())
    assert again.timing == h.timing and json.loads(h.to_widget_json())["version"] == 2
    assert parse_widget_json({"version": 1, "width": 8, "height": 8, "tracks": [[[1, 2]]]}).timing == []
    assert "timing" not in json.loads(parse_widget_json({"version": 1, "width": 8, "height": 8}).to_widget_json())
