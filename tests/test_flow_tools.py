"""Flow tools: scaling and easing, combining with a mask, resampling, the colour-wheel legend."""

import pytest
import torch

from motion_i2v_core.motion.camera import CameraMove, camera_flow
from motion_i2v_core.motion.flow_combine import combine_flows
from motion_i2v_core.motion.flow_legend import add_legend, flow_preview_with_legend, legend_disc
from motion_i2v_core.motion.flow_resample import fit_flow, fit_plane, resample_frames
from motion_i2v_core.motion.flow_scale import scale_flow
from motion_i2v_core.motion.flow_viz import flow_to_color

H, W, F = 32, 48, 5


def pan(amount=0.2, frames=F):
    return camera_flow(CameraMove(pan_right=amount), H, W, frames)


def test_scale_flow_multiplies_and_linear_easing_keeps_the_timing():
    flow = pan()
    assert torch.allclose(scale_flow(flow, 2.0), 2 * flow)
    assert torch.allclose(scale_flow(flow, -0.5), -0.5 * flow)


def test_scale_flow_easing_retimes_between_the_first_and_last_frame():
    flow = pan()  # linear in time: frame i = i/4 of the move
    eased = scale_flow(flow, 1.0, "ease_in")
    assert torch.equal(eased[0], flow[0]) and torch.allclose(eased[-1], flow[-1])
    # ease_in: frame 2 of 5 sits at t = 0.25 instead of 0.5.
    assert torch.allclose(eased[2], flow[-1] * 0.25, atol=1e-4)
    with pytest.raises(ValueError, match="amplitude"):
        scale_flow(flow, 100.0)
    with pytest.raises(ValueError, match="easing"):
        scale_flow(flow, 1.0, "bounce")


def test_combine_replace_and_add_inside_the_mask_only():
    base, overlay = pan(0.2), camera_flow(CameraMove(zoom_in=0.5), H, W, F)
    mask = torch.zeros(H, W)
    mask[:, : W // 2] = 1
    flow, static = combine_flows(base, overlay, mask, "replace")
    assert torch.equal(flow[:, :, :, : W // 2], overlay[:, :, :, : W // 2])
    assert torch.equal(flow[:, :, :, W // 2:], base[:, :, :, W // 2:])
    added, _ = combine_flows(base, overlay, mask, "add")
    assert torch.allclose(added[:, :, :, : W // 2], (base + overlay)[:, :, :, : W // 2])
    assert torch.equal(added[:, :, :, W // 2:], base[:, :, :, W // 2:])
    assert not bool(static.any())


def test_combine_defaults_to_the_overlays_moving_region_and_keeps_static_there():
    base, overlay = pan(0.2), pan(-0.1)
    overlay_static = torch.ones(H, W)
    overlay_static[:8] = 0  # only the top rows move in the overlay
    flow, static = combine_flows(base, overlay, None, "replace", overlay_static=overlay_static)
    assert torch.equal(flow[:, :, :8], overlay[:, :, :8]) and torch.equal(flow[:, :, 8:], base[:, :, 8:])
    assert not bool(static.any())  # the base (camera) moves everything outside


def test_combine_rejects_flows_of_another_size_naming_the_fix():
    with pytest.raises(ValueError, match="same width, height and num_frames"):
        combine_flows(pan(), pan(frames=F + 1))


def test_resample_frames_keeps_the_ends_and_interpolates_linear_motion_exactly():
    flow = pan(0.3, frames=9)
    assert torch.allclose(resample_frames(flow, 5), flow[::2], atol=1e-5)
    longer = resample_frames(flow, 17)
    assert torch.allclose(longer[::2], flow, atol=1e-5)


def test_fit_flow_scales_displacements_with_the_resize_and_crops_like_the_image():
    flow = pan(0.25)  # 48 wide, uniform -12 px
    fitted = fit_flow(flow, 64, 64)  # cover 64x64: scale 2 (96x64), crop 16 px each side
    assert fitted.shape == (F, 2, 64, 64)
    assert torch.allclose(fitted[-1, 0], torch.full((64, 64), -24.0), atol=1e-4)
    mask = torch.zeros(H, W)
    mask[:, :8] = 1  # the left 8 columns are cropped away at 64x64 (8 * 2 = 16 px)
    assert float(fit_plane(mask, 64, 64)[:, 1:].max()) == 0


def test_legend_disc_hues_match_the_flow_colours_of_their_directions():
    rgb, alpha = legend_disc(41, 10.0)
    right = rgb[20, 40]
    assert torch.allclose(right, flow_to_color(torch.tensor([10.0, 0.0]).view(2, 1, 1), max_radius=10.0)[0, 0], atol=0.02)
    assert torch.allclose(rgb[20, 20], torch.ones(3), atol=1e-5)  # centre: no motion = white
    assert float(alpha[0, 0]) == 0 and float(alpha[20, 20]) == 1


def test_preview_with_legend_changes_only_the_corner():
    flow = camera_flow(CameraMove(zoom_in=0.3), 96, 128, 3)
    plain, legend = flow_to_color(flow), flow_preview_with_legend(flow)
    assert legend.shape == plain.shape
    assert torch.equal(legend[:, :40, :40], plain[:, :40, :40])
    assert not torch.equal(legend[:, -20:, -20:], plain[:, -20:, -20:])
    tiny = torch.rand(1, 16, 16, 3)
    assert torch.equal(add_legend(tiny, 1.0), tiny)  # too small for a legend
