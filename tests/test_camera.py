"""Camera moves: the analytic fields of each preset, parallax with a depth map, dolly vs zoom."""

import math

import numpy as np
import pytest
import torch

from motion_i2v_core.motion.camera import PRESETS, CameraMove, camera_flow, focal_length
from motion_i2v_core.motion.depth import depth_to_distance
from motion_i2v_core.motion.easing import EASINGS, progress
from motion_i2v_core.motion.flow_hints import flow_to_hints

H, W, F = 48, 80, 6


def centre_offsets(h=H, w=W):
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return xs - (w - 1) / 2, ys - (h - 1) / 2


def test_pan_without_depth_is_a_uniform_shift_opposite_to_the_camera():
    flow = camera_flow(CameraMove(pan_right=0.25, pan_down=-0.1), H, W, F)
    assert flow.shape == (F, 2, H, W) and torch.equal(flow[0], torch.zeros(2, H, W))
    assert torch.allclose(flow[-1, 0], torch.full((H, W), -0.25 * W), atol=1e-4)
    assert torch.allclose(flow[-1, 1], torch.full((H, W), 0.1 * H), atol=1e-4)
    # Linear easing: frame i holds i / (F - 1) of the move.
    assert torch.allclose(flow[2, 0], torch.full((H, W), -0.25 * W * 2 / (F - 1)), atol=1e-4)


def test_zoom_is_radial_and_linear_in_distance_from_the_centre():
    dx, dy = centre_offsets()
    for amount, end in ((0.5, 1.5), (-0.5, 1 / 1.5)):
        flow = camera_flow(CameraMove(zoom_in=amount), H, W, F).double()
        assert torch.allclose(flow[-1, 0], (end - 1) * dx, atol=1e-4)
        assert torch.allclose(flow[-1, 1], (end - 1) * dy, atol=1e-4)
    # Geometric pace: the middle frame of a 2x zoom over 3 frames magnifies sqrt(2).
    mid = camera_flow(CameraMove(zoom_in=1.0), H, W, 3).double()[1]
    assert torch.allclose(mid[0], (math.sqrt(2) - 1) * dx, atol=1e-4)


def test_roll_keeps_distances_from_the_centre_and_turns_the_picture_the_other_way():
    dx, dy = centre_offsets()
    flow = camera_flow(CameraMove(rotate_clockwise=30.0), H, W, F).double()[-1]
    nx, ny = dx + flow[0], dy + flow[1]
    assert torch.allclose(torch.hypot(nx, ny), torch.hypot(dx, dy), atol=1e-4)
    angle = torch.atan2(ny, nx) - torch.atan2(dy, dx)
    angle = torch.remainder(angle + math.pi, 2 * math.pi) - math.pi
    far = torch.hypot(dx, dy) > 5
    # The camera rolls clockwise (+ on screen with y down), so content turns by -30 degrees.
    assert torch.allclose(angle[far], torch.full_like(angle[far], -math.radians(30)), atol=1e-6)


def two_plane_depth(h=H, w=W):
    """Near = bright: left half near (1), right half far (0)."""
    depth = torch.zeros(1, h, w, 3)
    depth[:, :, : w // 2] = 1.0
    return depth


def test_depth_pan_moves_near_content_far_times_more():
    far = 4.0
    z = depth_to_distance(two_plane_depth(), H, W, far=far)
    assert float(z[:, 0].max()) == pytest.approx(1.0) and float(z[:, -1].min()) == pytest.approx(far)
    flow = camera_flow(CameraMove(pan_right=0.2), H, W, F, distance=z)[-1, 0]
    near, far_shift = flow[:, 5], flow[:, -5]
    assert torch.allclose(near, torch.full_like(near, -0.2 * W), atol=1e-4)
    assert torch.allclose(near / far_shift, torch.full_like(near, far), atol=1e-4)


def test_dolly_differs_from_zoom_with_depth_and_matches_the_pinhole_formula():
    far, dolly = 3.0, 0.5
    z = depth_to_distance(two_plane_depth(), H, W, far=far)
    dx, _ = centre_offsets()
    dolly_flow = camera_flow(CameraMove(dolly_in=dolly), H, W, F, distance=z).double()[-1, 0]
    # A point at distance Z seen from dolly metres closer: magnified Z / (Z - dolly).
    expected = dx * (z / (z - dolly) - 1)
    assert torch.allclose(dolly_flow, expected, atol=1e-4)
    row = H // 2
    near_col, far_col = 2, W - 3  # mirror columns: same distance from the centre
    assert abs(float(dx[row, near_col])) == pytest.approx(abs(float(dx[row, far_col])))
    assert abs(float(dolly_flow[row, near_col])) > 2 * abs(float(dolly_flow[row, far_col]))
    zoom_flow = camera_flow(CameraMove(zoom_in=0.5), H, W, F, distance=z).double()[-1, 0]
    assert float(zoom_flow[row, near_col]) == pytest.approx(-float(zoom_flow[row, far_col]), abs=1e-4)
    # Without depth (a flat scene at distance 1) a dolly is exactly a zoom by 1 / (1 - dolly).
    flat = camera_flow(CameraMove(dolly_in=dolly), H, W, F).double()[-1, 0]
    assert torch.allclose(flat, dx * (1 / (1 - dolly) - 1), atol=1e-4)


def test_field_of_view_sets_the_parallax_of_a_sideways_move_with_depth_only_through_distance():
    z = depth_to_distance(two_plane_depth(), H, W, far=2.0)
    a = camera_flow(CameraMove(pan_right=0.1), H, W, F, distance=z, fov_degrees=40)
    b = camera_flow(CameraMove(pan_right=0.1), H, W, F, distance=z, fov_degrees=90)
    assert torch.allclose(a, b, atol=1e-4)  # pan amounts are in picture widths, whatever the lens
    # ...but a dolly's pace does depend on the lens: wider lens = more perspective change at the edge.
    assert focal_length(W, 90) == pytest.approx(W / 2)


def test_easing_curves_start_at_0_end_at_1_and_are_monotone():
    for name in EASINGS:
        t = progress(9, name)
        assert float(t[0]) == 0 and float(t[-1]) == pytest.approx(1) and bool((t.diff() >= 0).all())
    slow = camera_flow(CameraMove(pan_right=0.2), H, W, 5, easing="ease_in")[1, 0, 0, 0]
    fast = camera_flow(CameraMove(pan_right=0.2), H, W, 5, easing="ease_out")[1, 0, 0, 0]
    assert abs(float(slow)) < abs(float(fast))


def test_presets_use_comfyui_names_and_move_the_right_way():
    up = camera_flow(PRESETS["Pan Up"], H, W, F)[-1]
    left = camera_flow(PRESETS["Pan Left"], H, W, F)[-1]
    assert float(up[1].mean()) > 0 and float(left[0].mean()) > 0  # the picture moves down / right
    zin = camera_flow(PRESETS["Zoom In"], H, W, F)[-1]
    assert float(zin[0, H // 2, -1]) > 0  # the right edge moves further right
    assert torch.equal(camera_flow(PRESETS["Static"], H, W, F), torch.zeros(F, 2, H, W))


@pytest.mark.parametrize("depth, message", [
    (torch.full((1, H, W), 0.5), "flat"),
    (torch.tensor([[[0.0, float("nan")], [1.0, 0.5]]]), "NaN"),
])
def test_bad_depth_maps_are_named(depth, message):
    with pytest.raises(ValueError, match=message):
        depth_to_distance(depth, H, W)


def test_depth_invert_flips_near_and_far_and_fits_like_the_image():
    depth = two_plane_depth(96, 96)  # square map cropped to 80x48: left half stays near
    z = depth_to_distance(depth, H, W, far=2.0)
    zi = depth_to_distance(depth, H, W, far=2.0, invert=True)
    assert float(z[0, 0]) == pytest.approx(1.0) and float(zi[0, 0]) == pytest.approx(2.0)
    assert z.shape == (H, W)


@pytest.mark.parametrize("kwargs", [dict(zoom_in=-1.0), dict(dolly_in=1.0), dict(pan_right=3.0),
                                    dict(rotate_clockwise=float("nan"))])
def test_out_of_range_amounts_are_named(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        camera_flow(CameraMove(**kwargs), H, W, F)


def test_flow_to_hints_tracks_follow_the_flow_and_skip_points_that_leave():
    flow = camera_flow(CameraMove(pan_right=0.1), H, W, F)
    hints = flow_to_hints(flow, grid=4)
    assert hints.width == W and hints.height == H and len(hints.tracks) > 0
    for track in hints.tracks:
        assert track.shape == (F, 2)
        assert np.allclose(track[-1] - track[0], [-0.1 * W, 0], atol=1e-3)
    # A big pan pushes the leftmost column of points out of the picture: those are left out.
    big = flow_to_hints(camera_flow(CameraMove(pan_right=0.3), H, W, F), grid=4)
    assert len(big.tracks) < 4 * 2 and any("out of the picture" in w for w in big.warnings)
