"""Flow utilities: colour wheel, arrow/track overlays, warp preview, flow save/load."""

import colorsys
import os

import numpy as np
import pytest
import torch

from motion_i2v_core.motion.flow_io import load_flow, save_flow
from motion_i2v_core.motion.flow_preview import drags_to_flow, fill_holes_push_pull, warp_preview
from motion_i2v_core.motion.hints import MotionHints
from motion_i2v_core.motion.flow_viz import color_wheel, draw_flow_arrows, draw_tracks, flow_to_color


def hue_degrees(rgb) -> float:
    return colorsys.rgb_to_hsv(*[float(v) for v in rgb])[0] * 360


# ---------------------------------------------------------------- colour wheel


def direction_flow(dx, dy, h=4, w=4):
    flow = torch.zeros(2, h, w)
    flow[0], flow[1] = dx, dy
    return flow


def test_color_wheel_table():
    wheel = color_wheel()
    assert wheel.shape == (55, 3) and wheel.min() >= 0 and wheel.max() <= 1
    assert np.allclose(wheel[0], [1, 0, 0]) and np.allclose(wheel[15], [1, 1, 0]) and np.allclose(wheel[21], [0, 1, 0])


def test_flow_to_color_directions_and_zero():
    flows = torch.stack([direction_flow(*d) for d in [(5, 0), (0, 5), (-5, 0), (0, -5), (0, 0)]])
    colors = flow_to_color(flows)  # shared scale: max radius 5
    assert colors.shape == (5, 4, 4, 3) and colors.dtype == torch.float32
    right, down, left, up, still = (colors[i, 0, 0] for i in range(5))
    assert torch.equal(still, torch.ones(3))  # zero flow = white
    assert right[0] > 0.9 and right[1] < 0.1 and right[2] < 0.1  # right = red
    hues = [hue_degrees(c) for c in (right, down, left, up)]
    hues[0] = hues[0] - 360 if hues[0] > 180 else hues[0]
    # Clockwise on screen (right, down, left, up) runs red -> yellow -> cyan/blue -> blue/magenta.
    assert hues == sorted(hues), hues
    assert 15 < hues[1] < 75 and 160 < hues[2] < 235 and 230 < hues[3] < 320, hues
    for c in (right, down, left, up):
        assert c.max() > 0.95 and c.min() < 0.1  # full saturation at the max radius


def test_flow_to_color_scale_and_nonfinite():
    flows = torch.stack([direction_flow(4, 0), direction_flow(2, 0)])
    shared = flow_to_color(flows)
    assert shared[1, 0, 0, 1] > shared[0, 0, 0, 1] + 0.3  # half the radius: paler
    fixed = flow_to_color(direction_flow(2, 0), max_radius=4.0)
    assert fixed.shape == (4, 4, 3)
    assert torch.allclose(fixed, shared[1])
    beyond = flow_to_color(direction_flow(8, 0), max_radius=4.0)
    assert beyond[0, 0].max() < 0.8  # beyond the radius: darkened, not clipped to white
    nan_flow = direction_flow(1, 0)
    nan_flow[0, 1, 1] = float("nan")
    out = flow_to_color(nan_flow)
    assert torch.equal(out[1, 1], torch.zeros(3)) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="max_radius"):
        flow_to_color(nan_flow, max_radius=0)
    with pytest.raises(ValueError, match=r"\(F, 2, H, W\)"):
        flow_to_color(torch.zeros(3, 4, 4))


# ---------------------------------------------------------------- overlays


def test_arrows_change_pixels_only_near_flow():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(64, 96, 3, generator=g)
    flow = torch.zeros(2, 64, 96)
    flow[0, 16:32, 48:64] = 6.0  # one 16x16 cell moves right
    out = draw_flow_arrows(image, flow, step=16)
    assert out.shape == image.shape and out.dtype == torch.float32
    changed = (out != image).any(dim=-1)
    assert changed.sum() > 5  # an arrow was drawn
    near = torch.zeros_like(changed)
    near[12:37, 44:72] = True  # the cell, its arrow (6 px right) and anti-aliasing
    assert not (changed & ~near).any()
    assert torch.equal(draw_flow_arrows(image, torch.zeros(2, 64, 96)), image)
    chw = draw_flow_arrows(image.permute(2, 0, 1), flow, step=16)  # (3, H, W) layout is kept
    assert torch.equal(chw, out.permute(2, 0, 1))
    with pytest.raises(ValueError, match="match the image"):
        draw_flow_arrows(image, torch.zeros(2, 32, 32))


def test_draw_tracks_overlays_polylines_and_anchors():
    image = torch.full((80, 120, 3), 0.5)
    tracks = [np.array([[10.0, 10.0], [40.0, 20.0], [70.0, 50.0]]), np.array([[100.0, 60.0]])]
    out = draw_tracks(image, tracks)
    assert out.shape == image.shape
    changed = (out != image).any(dim=-1)
    assert changed[20, 40] and changed[50, 70]  # on the polyline's points
    assert changed[60, 100]  # the static anchor
    assert not changed[70:, :60].any()  # far from every track
    plain = draw_tracks(image, tracks, numbered=False, arrow=False)
    assert (plain != out).any()  # numbers / arrow head add pixels
    with pytest.raises(ValueError, match="one colour per track"):
        draw_tracks(image, tracks, colors=[(1, 0, 0)])


# ---------------------------------------------------------------- warp preview


def test_warp_preview_integer_shift_fills_holes():
    g = torch.Generator().manual_seed(1)
    image = 0.2 + 0.8 * torch.rand(3, 24, 32, generator=g)
    frames = 4
    flow = torch.zeros(frames, 2, 24, 32)
    for i in range(1, frames):
        flow[i, 0] = 2 * i  # right by 2i pixels
    out = warp_preview(image, flow)
    assert out.shape == (frames, 24, 32, 3) and out.dtype == torch.float32
    hwc = image.permute(1, 2, 0)
    assert torch.equal(out[0], hwc)  # frame 0 is the image itself
    for i in range(1, frames):
        s = 2 * i
        torch.testing.assert_close(out[i, :, s:], hwc[:, :-s], rtol=0, atol=1e-6)  # content moved
        holes = out[i, :, :s]
        assert (holes >= 0.2 - 1e-6).all() and (holes <= 1).all()  # filled from the image colours
    assert (out > 0).all()  # no zeros left anywhere
    # (H, W, 3) input gives the same frames; 'none' leaves the holes at 0.
    assert torch.equal(warp_preview(hwc.numpy(), flow), out)
    raw = warp_preview(image, flow, fill="none")
    assert (raw[1, :, :2] == 0).all()
    telea = warp_preview(image, flow, fill="telea")
    assert (telea[1:, :, :2] > 0).all()


def test_warp_preview_validates_inputs():
    with pytest.raises(ValueError, match="differs from the image size"):
        warp_preview(torch.rand(3, 8, 8), torch.zeros(2, 2, 8, 9))
    with pytest.raises(ValueError, match="unknown hole fill"):
        warp_preview(torch.rand(3, 8, 8), torch.zeros(2, 2, 8, 8), fill="magic")
    with pytest.raises(ValueError, match="3 colour channels"):
        warp_preview(torch.rand(4, 8, 8), torch.zeros(2, 2, 8, 8))


def test_push_pull_keeps_trusted_pixels_and_fills_holes():
    values = torch.zeros(1, 1, 9, 9)
    conf = torch.zeros(1, 1, 9, 9)
    values[0, 0, :, :4], conf[0, 0, :, :4] = 1.0, 1.0
    values[0, 0, :, 5:], conf[0, 0, :, 5:] = 3.0, 1.0
    out = fill_holes_push_pull(values, conf)
    assert torch.equal(out[..., :4], values[..., :4]) and torch.equal(out[..., 5:], values[..., 5:])
    assert 1.0 < out[0, 0, 4, 4] < 3.0  # the hole column gets a blend of both sides
    assert torch.equal(values[0, 0, 0, 4], torch.tensor(0.0))  # input untouched


# ---------------------------------------------------------------- flow io


def test_flow_io_round_trip(tmp_path):
    g = torch.Generator().manual_seed(2)
    flow = torch.randn(5, 2, 6, 8, generator=g)
    flow[0] = 0
    mask = (torch.rand(6, 8, generator=g) > 0.5).float()
    path = tmp_path / "motion.safetensors"
    save_flow(path, flow, static_mask=mask[None, None], metadata={"stride": [8, 16, 24, 32], "seed": 7, "note": "x"})
    flow2, mask2, meta = load_flow(path)
    assert torch.equal(flow2, flow) and torch.equal(mask2, mask)
    assert meta["width"] == 8 and meta["height"] == 6 and meta["frames"] == 5
    assert meta["units"] == "pixels" and meta["format_version"] == 1
    assert meta["stride"] == [8, 16, 24, 32] and meta["seed"] == 7 and meta["note"] == "x"
    save_flow(path, flow.half())  # overwrite, no mask or metadata
    flow3, mask3, meta3 = load_flow(str(path))
    assert flow3.dtype == torch.float16 and mask3 is None and "stride" not in meta3
    assert sorted(os.listdir(tmp_path)) == ["motion.safetensors"]  # no temp files left


def test_flow_io_truncated_and_garbage_files(tmp_path):
    path = tmp_path / "motion.safetensors"
    save_flow(path, torch.randn(3, 2, 16, 16))
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.safetensors.*truncated"):
        load_flow(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="garbage.safetensors"):
        load_flow(garbage)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_flow(tmp_path / "missing.safetensors")


def test_flow_io_bad_metadata(tmp_path):
    from safetensors.torch import save_file

    flow = torch.zeros(3, 2, 4, 5)
    good = {
        "format": "motion-i2v-flow",
        "format_version": "1",
        "width": "5",
        "height": "4",
        "frames": "3",
        "units": "pixels",
    }
    cases = [
        ({**good, "width": "6"}, {"flow": flow}, "width=6 disagrees"),
        ({**good, "format": "something"}, {"flow": flow}, "format"),
        ({**good, "units": "normalised"}, {"flow": flow}, "units"),
        ({**good, "format_version": "99"}, {"flow": flow}, "newer"),
        ({**good, "stride": "[8, 'x'"}, {"flow": flow}, "stride"),
        ({k: v for k, v in good.items() if k != "frames"}, {"flow": flow}, "frames"),
        (good, {"flow": torch.zeros(3, 3, 4, 5)}, r"\(F, 2, H, W\)"),
        (good, {"flow": flow, "static_mask": torch.zeros(4, 4)}, "static_mask"),
        (good, {"flow": flow, "other": torch.zeros(1)}, "other"),
        (good, {"motion": flow}, "expected tensors"),
    ]
    for i, (meta, tensors, message) in enumerate(cases):
        path = tmp_path / f"bad{i}.safetensors"
        save_file(tensors, str(path), metadata=meta)
        with pytest.raises(ValueError, match=message) as info:
            load_flow(path)
        assert f"bad{i}.safetensors" in str(info.value)


def test_flow_io_failed_save_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "motion.safetensors"
    flow = torch.randn(2, 2, 4, 4)
    save_flow(path, flow)
    before = path.read_bytes()
    import safetensors.torch

    def broken_save(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_flow(path, torch.randn(2, 2, 4, 4))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["motion.safetensors"]
    monkeypatch.undo()
    with pytest.raises(ValueError, match="JSON"):
        save_flow(path, flow, metadata={"bad": object()})
    with pytest.raises(ValueError, match="set from the flow tensor"):
        save_flow(path, flow, metadata={"width": 3})
    with pytest.raises(ValueError, match="static_mask"):
        save_flow(path, flow, static_mask=torch.zeros(3, 3))
    assert path.read_bytes() == before


# ---------------------------------------------------------------- drags to flow (no model)


def test_drags_to_flow_follows_the_drag_and_fades_with_distance():
    # One drag 16 px right over the video, from the left part of a 128x64 image.
    hints = MotionHints(tracks=[np.array([[32.0, 32.0], [48.0, 32.0]])], width=128, height=64)
    flow, static = drags_to_flow(hints, 64, 128, num_frames=5, flow_unit=8)
    assert flow.shape == (5, 2, 64, 128) and flow.dtype == torch.float32
    assert static.shape == (64, 128) and not static.any()  # nothing painted: all movable
    assert torch.equal(flow[0], torch.zeros(2, 64, 128))  # the reference frame does not move
    at_drag = flow[:, :, 32, 32]
    assert torch.all(at_drag[1:, 0] > 0) and torch.all(at_drag[1:, 1].abs() < 0.5)  # rightwards only
    assert torch.all(at_drag[2:, 0] >= at_drag[1:-1, 0])  # the drag grows frame by frame
    assert 10 < at_drag[-1, 0] <= 16.5  # most of the full 16 px at the last frame
    far = flow[-1, 0, 32, 120]
    assert 0 <= far < at_drag[-1, 0]  # the pull fades away from the drag (normalised, not sign-flipped)


def _textured_image(height, width, seed=0):
    """Smooth random colour texture: every patch is distinct, so template matching finds it."""
    import cv2

    noise = np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), 1.5)
    return (tex - tex.min()) / (tex.max() - tex.min())


def _tracked_displacements(frames, image, start, radius=8):
    """Where the patch around ``start`` in ``image`` is found in each frame, relative to start."""
    import cv2

    x0, y0 = int(start[0]), int(start[1])
    patch = image[y0 - radius:y0 + radius, x0 - radius:x0 + radius]
    found = []
    for frame in frames:
        _, _, best, _ = cv2.minMaxLoc(cv2.matchTemplate(frame, patch, cv2.TM_SQDIFF))
        found.append((best[0] - (x0 - radius), best[1] - (y0 - radius)))
    return np.array(found, np.float64)


PREVIEW_TRACKS = [np.array([[60.0, 70.0], [90.0, 50.0], [120.0, 58.0]]),
                  np.array([[170.0, 80.0], [180.0, 100.0], [205.0, 112.0]])]


@pytest.mark.parametrize("brush", ["none", "around the starts", "narrow bands"])
def test_drags_to_flow_preview_moves_the_content_as_far_as_drawn(brush):
    # The preview is where artists judge their drags: the content at each track's start must follow
    # the track (within 10% of the drawn displacement, every frame), whatever is painted around it.
    import cv2

    from motion_i2v_core.motion.trajectories import resample_track

    h, w, frames_n = 160, 256, 16
    movable = None
    if brush != "none":
        m = np.zeros((h, w), np.float32)
        if brush == "around the starts":
            cv2.circle(m, (60, 70), 30, 1, -1)
            cv2.circle(m, (170, 80), 30, 1, -1)
        else:  # bands barely wider than the template, so most of each drag square is unpainted
            cv2.line(m, (40, 80), (80, 60), 1, 24)
            cv2.line(m, (170, 70), (170, 95), 1, 24)
        movable = torch.from_numpy(m)
    hints = MotionHints(tracks=PREVIEW_TRACKS, movable_mask=movable, width=w, height=h)
    image = _textured_image(h, w)
    flow, _ = drags_to_flow(hints, h, w, frames_n)
    frames = warp_preview(torch.from_numpy(image), flow).numpy()
    for track in PREVIEW_TRACKS:
        path = resample_track(track, frames_n)
        drawn = path - path[0]
        moved = _tracked_displacements(frames, image, path[0])
        error = np.linalg.norm(moved - drawn, axis=1)
        allowed = np.maximum(0.1 * np.linalg.norm(drawn, axis=1), 1.0)  # 1 px: whole-pixel matching
        assert np.all(error <= allowed), (brush, drawn.round(1).tolist(), moved.tolist())
    if movable is not None:  # and nothing unpainted moved at all
        assert torch.all(flow[:, :, movable == 0] == 0)


def test_drags_to_flow_brush_edge_is_sharp_but_smooth():
    h, w = 128, 256
    movable = torch.zeros(h, w)
    movable[:, :128] = 1
    hints = MotionHints(tracks=[np.array([[64.0, 64.0], [64.0, 84.0]])], movable_mask=movable, width=w, height=h)
    flow, _ = drags_to_flow(hints, h, w, num_frames=3)
    across = flow[-1, 1, 64, 100:140]  # a row from inside the painted half into the still half
    assert across[0] == pytest.approx(20.0, abs=1e-3)  # the whole drag, well inside
    assert torch.all(across[28:] == 0)  # still from the first unpainted column (128) on
    steps = across[:-1] - across[1:]
    assert torch.all(steps >= -1e-4)  # falls monotonically...
    assert steps.max() < 0.5 * across[0]  # ...over a few pixels, not in one jump...
    assert int(((across > 0.01) & (across < 0.99 * across[0])).sum()) <= 6  # ...but only a few


def test_drags_to_flow_ignores_tracks_that_start_unpainted():
    movable = torch.zeros(64, 128)
    movable[:, :64] = 1
    tracks = [np.array([[100.0, 32.0], [120.0, 32.0]])]  # starts in the still half
    flow, _ = drags_to_flow(MotionHints(tracks=tracks, movable_mask=movable, width=128, height=64), 64, 128, 3)
    assert torch.equal(flow, torch.zeros_like(flow))


def test_drags_to_flow_keeps_brushed_out_regions_still():
    movable = torch.zeros(64, 128)
    movable[:, :64] = 1  # only the left half may move
    hints = MotionHints(tracks=[np.array([[32.0, 32.0], [32.0, 48.0]])], movable_mask=movable, width=128, height=64)
    flow, static = drags_to_flow(hints, 64, 128, num_frames=4)
    assert torch.equal(static, 1 - movable)
    assert torch.equal(flow[:, :, :, 64:], torch.zeros(4, 2, 64, 64))  # exactly still where not painted
    assert flow[-1, 1, 32, 32] > 5  # dragged down in the movable part


def test_drags_to_flow_maps_hints_drawn_at_another_size():
    # The same drag drawn on a 2x larger image lands at the same place, with twice fewer pixels of motion.
    small = MotionHints(tracks=[np.array([[32.0, 32.0], [48.0, 32.0]])], width=128, height=64)
    large = MotionHints(tracks=[np.array([[64.0, 64.0], [96.0, 64.0]])], width=256, height=128)
    f_small, _ = drags_to_flow(small, 64, 128, num_frames=3, flow_unit=8)
    f_large, _ = drags_to_flow(large, 64, 128, num_frames=3, flow_unit=8)
    assert torch.allclose(f_small, f_large, atol=1e-4)


def test_drags_to_flow_no_hints_and_bad_arguments():
    flow, static = drags_to_flow(None, 64, 64, num_frames=3)
    assert torch.equal(flow, torch.zeros(3, 2, 64, 64)) and not static.any()
    with pytest.raises(ValueError, match="multiples of 8"):
        drags_to_flow(None, 60, 64, num_frames=3)
    with pytest.raises(ValueError, match="at least 2"):
        drags_to_flow(None, 64, 64, num_frames=1)


def test_flow_io_keeps_fractional_strides_and_normal_permissions(tmp_path):
    path = tmp_path / "fast.safetensors"
    # motion speed 1.3 gives fractional strides; whole ones stay ints
    save_flow(path, torch.zeros(3, 2, 4, 4), metadata={"stride": [10.4, 20.8, 16.0]})
    assert load_flow(path)[2]["stride"] == [10.4, 20.8, 16]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not the owner-only mode of a temp file
