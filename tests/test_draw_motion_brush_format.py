"""The editor's JSON writer/reader (web/motion_hints_format.js) and play-preview track sampling
(web/track_sampling.js) agree with the Python side (motion_i2v_core.motion.hints / trajectories).

Runs the JS modules under node (no browser); skipped when node is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from motion_i2v_core.motion.hints import MotionHints, parse_widget_json
from motion_i2v_core.motion.trajectories import resample_track

SCRIPT = Path(__file__).parent / "browser" / "format_check.mjs"


def run_js(values=(), states=(), tracks=(), frames=16) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    payload = json.dumps({"values": list(values), "states": list(states), "tracks": list(tracks), "frames": frames})
    proc = subprocess.run([node, str(SCRIPT)], input=payload, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def same_hints(a: MotionHints, b: MotionHints, atol=0.051):
    assert (a.width, a.height) == (b.width, b.height)
    assert len(a.tracks) == len(b.tracks)
    for ta, tb in zip(a.tracks, b.tracks):
        np.testing.assert_allclose(ta, tb, atol=atol)
    assert len(a.brush_strokes) == len(b.brush_strokes)
    for sa, sb in zip(a.brush_strokes, b.brush_strokes):
        assert sa["mode"] == sb["mode"] and abs(sa["radius"] - sb["radius"]) <= atol
        np.testing.assert_allclose(sa["points"], sb["points"], atol=atol)
    pad = lambda h: [h.timing[i] if i < len(h.timing) else None for i in range(len(h.tracks))]  # noqa: E731
    assert pad(a) == pad(b)


def test_js_writes_what_python_reads():
    state = {
        "width": 640, "height": 360,
        "brush": [{"mode": "paint", "radius": 17.25, "points": [[10.04, 20.06], [33.333, 44.449]]},
                  {"mode": "erase", "radius": 3, "points": [[-0.04, 359.99]]}],
        "tracks": [[[1.26, 2.24], [100.5, 80.45], [300, 200]], [[5, 6]]],
        "timing": [{"start": 2, "end": 9, "ease_in": True, "ease_out": False}],
    }
    written = run_js(states=[state])["written"][0]
    assert " " not in written and json.loads(written)["version"] == 2
    assert json.loads(written)["timing"] == [state["timing"][0], None]
    hints = parse_widget_json(written)
    expected = MotionHints(
        tracks=[np.array(t, float) for t in state["tracks"]], width=640, height=360, brush_strokes=state["brush"],
        timing=state["timing"],
    )
    same_hints(hints, expected)
    assert json.loads(written)["brush"][1]["points"] == [[0, 360]]  # rounded to 0.1, no "-0"


def test_python_written_value_round_trips_through_the_editor():
    original = parse_widget_json(json.dumps({
        "version": 2, "width": 300, "height": 200,
        "brush": [{"mode": "paint", "radius": 12, "points": [[10, 10], [50.5, 60.25]]}],
        "tracks": [[[20, 30], [40.75, 50], [80, 20]], [[150, 150]]],
        "timing": [None, {"start": 3, "end": None, "ease_in": False, "ease_out": True}],
    }))
    result = run_js(values=[original.to_widget_json()])["parsed"][0]
    assert result["error"] is None
    same_hints(parse_widget_json(result["value"]), original)


BAD_VALUES = [
    "{bad", "[]", "null", "3", '"text"',
    '{"width":64,"height":32}',  # no version
    '{"version":3,"width":64,"height":32}',
    '{"version":1,"width":64,"height":32,"tracks":[[[1,2]]],"timing":[null]}',
    '{"version":2,"width":64,"height":32,"tracks":[[[1,2]]],"timing":{}}',
    '{"version":2,"width":64,"height":32,"tracks":[[[1,2]]],"timing":[null,null]}',
    '{"version":2,"width":64,"height":32,"tracks":[[[1,2]]],"timing":[{"start":3,"end":3}]}',
    '{"version":2,"width":64,"height":32,"tracks":[[[1,2]]],"timing":[{"start":-1}]}',
    '{"version":2,"width":64,"height":32,"tracks":[[[1,2]]],"timing":[{"start":1.5}]}',
    '{"version":2,"width":64,"height":32,"tracks":[[[1,2]]],"timing":[{"ease_in":1}]}',
    '{"version":2,"width":64,"height":32,"tracks":[[[1,2]]],"timing":[{"speed":1}]}',
    '{"version":2,"width":64,"height":32,"tracks":[[[1,2]]],"timing":[[0,4]]}',
    '{"version":true,"width":64,"height":32}',
    '{"version":1,"height":32}',
    '{"version":1,"width":0,"height":32}',
    '{"version":1,"width":64.5,"height":32}',
    '{"version":1,"width":true,"height":32}',
    '{"version":1,"width":99999,"height":32}',
    '{"version":1,"width":64,"height":32,"brush":{}}',
    '{"version":1,"width":64,"height":32,"brush":[{"mode":"smear","radius":2,"points":[[1,1]]}]}',
    '{"version":1,"width":64,"height":32,"brush":[{"mode":"paint","radius":0,"points":[[1,1]]}]}',
    '{"version":1,"width":64,"height":32,"brush":[{"mode":"paint","radius":2,"points":[]}]}',
    '{"version":1,"width":64,"height":32,"brush":[{"mode":"paint","radius":2}]}',
    '{"version":1,"width":64,"height":32,"brush":[[1,2]]}',
    '{"version":1,"width":64,"height":32,"tracks":"x"}',
    '{"version":1,"width":64,"height":32,"tracks":[[]]}',
    '{"version":1,"width":64,"height":32,"tracks":[[[1]]]}',
    '{"version":1,"width":64,"height":32,"tracks":[[[1,true]]]}',
    '{"version":1,"width":64,"height":32,"tracks":[[[1,1e400]]]}',
]
GOOD_VALUES = [
    "", "   ", "{}",
    '{"version":1,"width":64,"height":32}',
    '{"version":2,"width":64,"height":32}',
    '{"version":2,"width":64,"height":32,"tracks":[[[1,2]],[[3,4]]],"timing":[{"start":2,"end":null,"ease_out":true}]}',
    '{"version":2,"width":64,"height":32,"tracks":[[[1,2]]],"timing":[null]}',
    '{"version":1.0,"width":64.0,"height":32,"brush":null,"tracks":null,"extra":1}',
    '{"version":1,"width":64,"height":32,"tracks":[[[1,2]]],"brush":[{"mode":"erase","radius":0.5,"points":[[3,4]]}]}',
]


def python_accepts(value: str) -> bool:
    try:
        parse_widget_json(value)
    except ValueError:
        return False
    return True


def test_editor_and_python_accept_and_reject_the_same_values():
    results = run_js(values=BAD_VALUES + GOOD_VALUES)["parsed"]
    for value, result in zip(BAD_VALUES + GOOD_VALUES, results):
        js_accepts = result["error"] is None
        assert js_accepts == python_accepts(value) == (value in GOOD_VALUES), (value, result)


def test_play_preview_samples_tracks_like_the_model():
    tracks = [
        [[0, 0], [100, 50]],
        [[10, 10], [60, 80], [120, 20]],
        [[5, 5], [20, 40], [22, 41], [90, 10], [95, 90]],
        [[0, 0], [0, 10], [0, 20], [0, 30]],
    ]
    sampled = run_js(tracks=tracks, frames=16)["sampled"]
    for track, js in zip(tracks, sampled):
        np.testing.assert_allclose(js, resample_track(track, 16), atol=1e-9)
    anchor = run_js(tracks=[[[7, 9]]], frames=16)["sampled"][0]
    assert anchor == [[7, 9]] * 16  # the editor shows an anchor still (the model drifts it by 1 px)
