"""Flow From Video on synthetic clips with known motion: end-point error, occlusion mask, resampling.

Each clip is a smooth random texture moved by a known affine map per frame; frames are windows
into a larger texture, so content really leaves the picture (no mirrored borders).
"""

import cv2
import numpy as np
import pytest
import torch

from motion_i2v_core.motion.flow_compose import compose, invert, relative
from motion_i2v_core.motion.video_flow import consistency, flow_from_video

H, W, N = 96, 128, 12
MARGIN = 100


def texture(h, w, seed=0):
    rng = np.random.default_rng(seed)
    t = sum(cv2.resize(rng.random((h // s + 2, w // s + 2)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
            for s in (3, 7, 15))
    return (t - t.min()) / (t.max() - t.min())


def synthetic_clip(affine, n=N, h=H, w=W):
    """(frames IMAGE (n, h, w, 3), true flow (n, 2, h, w)); affine(t) maps frame-0 content to frame t."""
    big = texture(h + 2 * MARGIN, w + 2 * MARGIN)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    frames, truth = [], []
    for k in range(n):
        a = affine(k / (n - 1))
        inverse = cv2.invertAffineTransform(a) + np.float64([[0, 0, MARGIN], [0, 0, MARGIN]])
        frames.append(cv2.warpAffine(big, inverse, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP))
        tx = a[0, 0] * xs + a[0, 1] * ys + a[0, 2]
        ty = a[1, 0] * xs + a[1, 1] * ys + a[1, 2]
        truth.append(np.stack([tx - xs, ty - ys]))
    clip = torch.from_numpy(np.stack(frames))[..., None].expand(-1, -1, -1, 3).contiguous()
    return clip, torch.from_numpy(np.stack(truth)).float()


def stays_inside(flow):
    _, h, w = flow.shape
    tx = flow[0] + torch.arange(w)[None]
    ty = flow[1] + torch.arange(h)[:, None]
    return (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)


CENTRE = ((W - 1) / 2, (H - 1) / 2)
MOTIONS = {
    "translate 67 px": lambda t: np.float64([[1, 0, 64 * t], [0, 1, -20 * t]]),
    "zoom 1.4x": lambda t: cv2.getRotationMatrix2D(CENTRE, 0, 1 + 0.4 * t),
    "rotate 20 deg": lambda t: cv2.getRotationMatrix2D(CENTRE, 20 * t, 1.0),
}
# Mean end-point error (px) over reliable pixels, measured: DIS 0.04 / 0.35 / 0.46, Farneback 0.03 / 0.75 / 0.79.
EPE_LIMIT = {"dis": 0.6, "farneback": 1.0}


@pytest.mark.parametrize("method", ["dis", "farneback"])
@pytest.mark.parametrize("motion", list(MOTIONS))
def test_recovers_known_motion_and_marks_what_leaves_the_picture(motion, method):
    clip, truth = synthetic_clip(MOTIONS[motion])
    result = flow_from_video(clip, H, W, N, method=method, fill_unreliable=False)
    assert result.flow.shape == (N, 2, H, W) and result.unreliable.shape == (N, H, W)
    assert torch.equal(result.flow[0], torch.zeros(2, H, W))
    for k in (N // 2, N - 1):
        reliable = result.unreliable[k] < 0.5
        epe = (result.flow[k] - truth[k]).pow(2).sum(0).sqrt()
        assert float(epe[reliable].mean()) < EPE_LIMIT[method], (k, float(epe[reliable].mean()))
        inside = stays_inside(truth[k])
        if (~inside).sum() > 50:
            assert float(result.unreliable[k][~inside].mean()) > 0.9  # occluded borders are marked
        assert float(result.unreliable[k][inside].mean()) < 0.15  # ...and most visible content is not


def test_other_length_blends_frames_at_fractional_times():
    clip, truth = synthetic_clip(MOTIONS["translate 67 px"])
    result = flow_from_video(clip, H, W, 5)  # clip times 0, 2.75, 5.5, 8.25, 11
    for i, t in enumerate(np.linspace(0, 1, 5)):
        expected = torch.tensor([64 * t, -20 * t]).view(2, 1, 1)
        region = stays_inside(truth[-1])
        err = (result.flow[i] - expected).pow(2).sum(0).sqrt()[region]
        assert float(err.mean()) < 0.3, (i, float(err.mean()))


def test_clip_of_another_size_is_fitted_like_the_image_and_scaled():
    # A 2x clip (192x256) moving 80 px right: at 96x128 it is 40 px.
    clip, _ = synthetic_clip(lambda t: np.float64([[1, 0, 80 * t], [0, 1, 0]]), n=6, h=2 * H, w=2 * W)
    result = flow_from_video(clip, H, W, 6)
    left = result.flow[-1, :, :, : W // 2]
    assert float((left[0] - 40).abs().mean()) < 0.5 and float(left[1].abs().mean()) < 0.5
    # A wider clip is centre-cropped like the reference image: the motion stays 40 px.
    wide, _ = synthetic_clip(lambda t: np.float64([[1, 0, 40 * t], [0, 1, 0]]), n=6, h=H, w=W + 64)
    result = flow_from_video(wide, H, W, 6)
    assert float((result.flow[-1, 0, :, : W // 2] - 40).abs().mean()) < 0.5


@pytest.mark.parametrize("frames, message", [(torch.rand(1, H, W, 3), "at least 2"), (torch.rand(H, W, 3), "IMAGE batch")])
def test_bad_clips_are_named(frames, message):
    with pytest.raises(ValueError, match=message):
        flow_from_video(frames, H, W, 4)


def test_fill_replaces_unreliable_flow_smoothly():
    clip, truth = synthetic_clip(MOTIONS["translate 67 px"], n=6)
    raw = flow_from_video(clip, H, W, 6, fill_unreliable=False)
    filled = flow_from_video(clip, H, W, 6, fill_unreliable=True)
    reliable = raw.unreliable[-1] < 0.5
    assert torch.equal(filled.flow[-1][:, reliable], raw.flow[-1][:, reliable])
    # The filled part continues the translation (64 px right) instead of random values.
    assert float((filled.flow[-1, 0][~reliable] - 64).abs().mean()) < 2.0


def test_consistency_check_flags_a_loop_that_does_not_close():
    forward = torch.zeros(2, 8, 8)
    forward[0] = 1.0
    assert not bool(consistency(forward, -forward)[:, :6].any())
    assert bool(consistency(forward, torch.zeros_like(forward))[:, :6].all())


def test_composition_of_segment_flows_equals_the_direct_flow():
    # Synthetic camera motion: zoom + rotation around the centre; f(0 -> t) is analytic for every t.
    motion = lambda t: cv2.getRotationMatrix2D(CENTRE, 12 * t, 1 + 0.3 * t)
    _, truth = synthetic_clip(motion, n=9)
    s, t = 4, 8
    # f(s -> t) analytic: A_t A_s^-1 applied to frame-s positions.
    a_s = np.vstack([motion(s / 8), [0, 0, 1]])
    a_t = np.vstack([motion(t / 8), [0, 0, 1]])
    rel = (a_t @ np.linalg.inv(a_s))[:2]
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    seg = torch.from_numpy(np.stack([rel[0, 0] * xs + rel[0, 1] * ys + rel[0, 2] - xs,
                                     rel[1, 0] * xs + rel[1, 1] * ys + rel[1, 2] - ys])).float()
    composed = compose(truth[s][None], seg[None])[0]
    inside = stays_inside(truth[t])
    assert float((composed - truth[t]).pow(2).sum(0).sqrt()[inside].max()) < 1e-3
    # ...and the segment flow is recovered from the two flows from frame 0 (pushed, holes filled).
    derived, coverage = relative(truth[s][None], truth[t][None])
    covered = (coverage[0, 0] >= 1) & stays_inside(seg)
    assert float((derived[0] - seg).pow(2).sum(0).sqrt()[covered].mean()) < 0.05
    back, _ = invert(truth[s][None])
    loop = compose(truth[s][None], back)[0]
    assert float(loop.pow(2).sum(0).sqrt()[stays_inside(truth[s])].mean()) < 0.05
