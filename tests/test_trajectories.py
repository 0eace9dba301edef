"""PCHIP, track resampling and drag squares (stage1_spec.md section 7, steps 1-4)."""

import math

import numpy as np
import pytest
import torch

from motion_i2v_core.motion.trajectories import (
    default_flow_unit,
    pchip_interpolate,
    pchip_slopes,
    resample_track,
    tracks_to_drag,
)


# ---------------------------------------------------------------- PCHIP, hand-checked values
# Cubic Hermite on [0, 1] at s = 0.5: y = 0.5*y0 + 0.125*d0 + 0.5*y1 - 0.125*d1.

def test_pchip_two_points_is_linear():
    assert np.allclose(pchip_interpolate([0, 1], [0, 2], [0, 0.25, 0.5, 1]), [0, 0.5, 1.0, 2.0], atol=1e-15)


def test_pchip_three_points_hand_values():
    # x = 0,1,2; y = 0,1,3: secants m = 1, 2; h = 1, 1.
    # interior d1 = (w1 + w2) / (w1/m0 + w2/m1), w1 = w2 = 3 -> 6 / (3 + 1.5) = 4/3
    # left end  d0 = ((2h0+h1) m0 - h0 m1) / (h0+h1) = (3 - 2) / 2 = 0.5
    # right end d2 = ((2h1+h0) m1 - h1 m0) / (h0+h1) = (6 - 1) / 2 = 2.5
    assert np.allclose(pchip_slopes(np.array([0.0, 1, 2]), np.array([0.0, 1, 3])), [0.5, 4 / 3, 2.5])
    # y(0.5) = 0.125*0.5 + 0.5*1 - 0.125*4/3 = 19/48 ; y(1.5) = 0.5 + 0.125*4/3 + 1.5 - 0.125*2.5 = 89/48
    got = pchip_interpolate([0, 1, 2], [0, 1, 3], [0.5, 1.5])
    assert np.allclose(got, [19 / 48, 89 / 48], atol=1e-15)


def test_pchip_local_extremum_is_flat():
    # y = 0,1,0: secants change sign -> d1 = 0; d0 = (3*1 - 1*(-1))/2 = 2 (|2| <= 3|m0|, kept)
    # y(0.5) = 0.125*2 + 0.5*1 = 0.75, and no overshoot above 1.
    assert pchip_interpolate([0, 1, 2], [0, 1, 0], 0.5) == pytest.approx(0.75, abs=1e-15)
    dense = pchip_interpolate([0, 1, 2], [0, 1, 0], np.linspace(0, 2, 201))
    assert dense.max() <= 1.0 + 1e-15


def test_pchip_end_slope_guards():
    # Overshoot guard: m0 = 1, m1 = -10 -> raw d0 = (3 + 10)/2 = 6.5 > 3|m0| -> d0 = 3.
    # y(0.5) = 0.125*3 + 0.5*1 - 0.125*0 = 0.875 (without the guard it would be 1.3125).
    assert pchip_slopes(np.array([0.0, 1, 2]), np.array([0.0, 1, -9]))[0] == 3.0
    assert pchip_interpolate([0, 1, 2], [0, 1, -9], 0.5) == pytest.approx(0.875, abs=1e-15)
    # Sign guard: m0 = 1, m1 = 5 -> raw d0 = (3 - 5)/2 = -1, sign differs from m0 -> d0 = 0;
    # d1 = 6 / (3/1 + 3/5) = 5/3 ; y(0.5) = 0.5 - 0.125*5/3 = 7/24.
    d = pchip_slopes(np.array([0.0, 1, 2]), np.array([0.0, 1, 6]))
    assert d[0] == 0.0 and d[1] == pytest.approx(5 / 3)
    assert pchip_interpolate([0, 1, 2], [0, 1, 6], 0.5) == pytest.approx(7 / 24, abs=1e-15)


def test_pchip_unequal_spacing_weights():
    # x = 0,1,3; y = 0,1,2: h = 1, 2; m = 1, 0.5.
    # w1 = 2h1 + h0 = 5, w2 = h1 + 2h0 = 4 -> d1 = 9 / (5/1 + 4/0.5) = 9/13
    d = pchip_slopes(np.array([0.0, 1, 3]), np.array([0.0, 1, 2]))
    assert d[1] == pytest.approx(9 / 13)


def test_pchip_interpolates_knots_and_preserves_monotonicity():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(3, 9))
        x = np.cumsum(rng.uniform(0.1, 2.0, n))
        y = np.cumsum(rng.uniform(0.0, 3.0, n))  # non-decreasing data
        knots = pchip_interpolate(x, y, x)
        assert np.array_equal(knots[:-1], y[:-1])  # exact at the start of each piece
        assert knots[-1] == pytest.approx(y[-1], abs=1e-12)
        dense = pchip_interpolate(x, y, np.linspace(x[0], x[-1], 500))
        assert np.all(np.diff(dense) >= -1e-12)
        assert dense.min() >= y[0] - 1e-12 and dense.max() <= y[-1] + 1e-12


def test_pchip_rejects_bad_knots():
    with pytest.raises(ValueError, match="increasing"):
        pchip_interpolate([0, 0, 1], [0, 1, 2], 0.5)
    with pytest.raises(ValueError, match="2 knots"):
        pchip_interpolate([0], [0], 0.5)


def test_resample_track_endpoints_and_linear_case():
    p = resample_track([[10, 20], [40, 50]], 16)
    assert p.shape == (16, 2)
    assert np.allclose(p[:, 0], np.linspace(10, 40, 16)) and np.allclose(p[:, 1], np.linspace(20, 50, 16))
    q = resample_track([[20, 22], [30, 26], [41, 36]], 16)
    assert np.array_equal(q[0], [20, 22]) and np.allclose(q[-1], [41, 36])
    # the middle knot (t = 0.5) is not on the 16-point grid, but values stay within the data range
    assert q[:, 0].min() >= 20 and q[:, 0].max() <= 41


# ---------------------------------------------------------------- drag squares

def test_drag_square_placement_values_and_normalisation():
    drag, mask, warnings = tracks_to_drag([np.array([[10.0, 20.0], [40.0, 50.0]])], 64, 64, num_frames=15, flow_unit=8)
    assert drag.shape == (2, 15, 64, 64) and mask.shape == (15, 64, 64) and warnings == []
    # rows max(20-8,0):20+8 = 12..27, cols max(10-8,0):int(10+8) = 2..17
    expected = torch.zeros(64, 64)
    expected[12:28, 2:18] = 1
    for i in range(15):
        assert torch.equal(mask[i], expected)
        step = (i + 1) / 15 * 30.0
        assert torch.allclose(drag[0, i][expected > 0], torch.tensor(step / 64), atol=1e-7)
        assert torch.allclose(drag[1, i][expected > 0], torch.tensor(step / 64), atol=1e-7)
        assert torch.all(drag[:, i][:, expected == 0] == 0)


def test_drag_square_edges_use_app_truncation():
    # x0 = 3.7: cols max(int(3.7)-8, 0) = 0 : int(3.7 + 8) = 11 ; y0 = 60.2: rows 52 : 68 (cut at 64)
    _, mask, _ = tracks_to_drag([np.array([[3.7, 60.2], [5.0, 61.0]])], 64, 64, num_frames=3, flow_unit=8)
    rows = torch.nonzero(mask[0].any(dim=1)).flatten()
    cols = torch.nonzero(mask[0].any(dim=0)).flatten()
    assert (rows.min().item(), rows.max().item()) == (52, 63)
    assert (cols.min().item(), cols.max().item()) == (0, 10)


def test_single_point_is_diagonal_anchor():
    drag, mask, _ = tracks_to_drag([np.array([[47.0, 12.0]])], 64, 64, num_frames=15, flow_unit=8)
    assert drag[0, 14, 12, 47].item() == pytest.approx(1 / 64)
    assert drag[1, 14, 12, 47].item() == pytest.approx(1 / 64)
    assert drag[0, 0, 12, 47].item() == pytest.approx(1 / 15 / 64)
    assert mask[:, 4:20, 39:55].min() == 1


def test_later_tracks_overwrite():
    a = np.array([[20.0, 20.0], [30.0, 20.0]])
    b = np.array([[24.0, 20.0], [24.0, 40.0]])
    drag, _, _ = tracks_to_drag([a, b], 64, 64, num_frames=15, flow_unit=8)
    # overlap pixel (row 20, col 22): from b -> dx 0, dy 20
    assert drag[0, 14, 20, 22].item() == 0.0
    assert drag[1, 14, 20, 22].item() == pytest.approx(20 / 64)
    # pixel only in a's square (col 14)
    assert drag[0, 14, 20, 14].item() == pytest.approx(10 / 64)


def test_normalisation_uses_width_and_height_separately():
    drag, _, _ = tracks_to_drag([np.array([[50.0, 30.0], [114.0, 62.0]])], 64, 128, num_frames=15, flow_unit=4)
    assert drag[0, 14, 30, 50].item() == pytest.approx(64 / 128)
    assert drag[1, 14, 30, 50].item() == pytest.approx(32 / 64)


def test_flow_unit_default_scales_with_resolution():
    assert default_flow_unit(320, 512) == 64
    assert default_flow_unit(640, 1024) == 128
    assert default_flow_unit(64, 64) == round(64 * math.sqrt(64 * 64 / (512 * 320)))  # 10
    assert default_flow_unit(1, 1) == 1
    _, mask, _ = tracks_to_drag([np.array([[200.0, 150.0], [210.0, 150.0]])], 320, 512, num_frames=2)
    assert mask[0].sum().item() == 128 * 128


def test_out_of_image_points_are_clamped_and_reported():
    drag, mask, warnings = tracks_to_drag(
        [np.array([[10.0, 10.0], [20.0, 10.0]]), np.array([[-5.0, 30.0], [100.0, 30.0]])], 64, 64, 15, 8
    )
    assert len(warnings) == 2
    assert "track 1 point 0" in warnings[0] and "track 1 point 1" in warnings[1]
    # clamped: start (0, 30), end (63, 30) -> dx = 63
    assert drag[0, 14, 30, 0].item() == pytest.approx(63 / 64)
    assert torch.isfinite(drag).all()


def test_non_finite_points_raise_naming_the_track():
    with pytest.raises(ValueError, match="track 1 point 2"):
        tracks_to_drag([np.array([[1.0, 1.0]]), np.array([[1.0, 1.0], [2, 2], [np.nan, 3]])], 64, 64)


def test_truncate_points_option_matches_integer_clicks():
    a, _, _ = tracks_to_drag([np.array([[10.9, 20.6], [30.2, 40.8]])], 64, 64, 15, 8, truncate_points=True)
    b, _, _ = tracks_to_drag([np.array([[10.0, 20.0], [30.0, 40.0]])], 64, 64, 15, 8)
    assert torch.equal(a, b)
