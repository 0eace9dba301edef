"""Bounded fuzz test of the motion-hints readers: whatever the value, the result is MotionHints (or a
track list) or one ValueError with a short message; nothing else escapes (no RecursionError,
OverflowError, cv2.error, TypeError, ...). Deterministic (derandomized) and 150 examples per reader, no example database written."""

from __future__ import annotations

import json
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from motion_i2v_core.motion.hints import MotionHints, parse_coord_str, parse_widget_json

# Hypothesis caches what it learns in a home folder; keep it out of the checkout (removed at exit).
_HOME = tempfile.TemporaryDirectory(prefix="mi2v-hypothesis-")
set_hypothesis_home_dir(_HOME.name)
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

numbers = st.one_of(
    st.integers(-(10 ** 30), 10 ** 30), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.5, 1e9, 1e300, -1e12, 2 ** 63, True, False]),
)
scalars = st.one_of(st.none(), numbers, st.text(alphabet="az09 \"[]{}é\\", max_size=8), st.sampled_from(["paint", "erase"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["x", "y", "mode", "radius", "points", "v"]), inner, max_size=4)),
    max_leaves=30)
points = st.lists(st.one_of(st.lists(numbers, min_size=2, max_size=2), json_values), max_size=6)
strokes = st.fixed_dictionaries({"mode": st.one_of(st.sampled_from(["paint", "erase"]), scalars),
                                 "radius": st.one_of(numbers, scalars), "points": st.one_of(points, json_values)})
widget_values = st.fixed_dictionaries(
    {"version": st.one_of(st.just(1), scalars), "width": st.one_of(st.integers(-5, 300), numbers),
     "height": st.one_of(st.integers(-5, 300), numbers)},
    optional={"brush": st.one_of(st.lists(strokes, max_size=4), json_values),
              "tracks": st.one_of(st.lists(points, max_size=4), json_values)})


def _json_text(value) -> str:
    return json.dumps(value, allow_nan=True)


def _assert_clean(call):
    try:
        return call()
    except ValueError as e:
        message = str(e)
        assert message and len(message) < 1000, message
        return None


@FUZZ
@given(st.one_of(widget_values, json_values))
def test_widget_json_values_parse_or_fail_cleanly(value):
    for v in (value, _json_text(value)):
        result = _assert_clean(lambda: parse_widget_json(v))
        if result is not None:
            assert isinstance(result, MotionHints)
            if result.movable_mask is not None:
                assert tuple(result.movable_mask.shape) == (result.height, result.width)


@FUZZ
@given(st.text(alphabet='[]{}",:0123456789.-eE truefalsnul\\x', max_size=200))
def test_widget_json_text_parses_or_fails_cleanly(text):
    result = _assert_clean(lambda: parse_widget_json(text))
    assert result is None or isinstance(result, MotionHints)


@FUZZ
@given(st.one_of(json_values, st.lists(st.lists(st.fixed_dictionaries({"x": numbers, "y": numbers}), max_size=4), max_size=3)))
def test_coord_str_parses_or_fails_cleanly(value):
    for text in (_json_text(value), repr(value)):
        result = _assert_clean(lambda: parse_coord_str(text, 64, 64))
        if result is not None:
            assert all(isinstance(t, np.ndarray) and t.ndim == 2 and t.shape[1] == 2 for t in result)


@pytest.mark.parametrize("depth", [50, 5000, 200000])
def test_deep_nesting_is_one_clean_error(depth):
    for text in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        with pytest.raises(ValueError, match="levels deep"):
            parse_widget_json(text)
        with pytest.raises(ValueError, match="levels deep"):
            parse_coord_str(text)
