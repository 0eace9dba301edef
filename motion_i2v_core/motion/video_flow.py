"""Flow From Video: the motion of a driving clip as dense flow from its first frame, for motion transfer.

Each clip frame is first fitted to the generation size exactly like the reference image (resize to
cover, centre crop), so the flow lands on the same content. Flow f(0 -> k) is found in two passes
per frame (OpenCV DIS or Farneback):
1. chain: f(0 -> k-1) composed with the small step f(k-1 -> k), which follows long motions that a
   direct estimate between distant frames would miss;
2. refine: re-estimate between frame 0 and frame k starting from the chained flow, which removes
   the drift that chaining accumulates. Per pixel the pass whose warp matches frame 0 better wins.
A backward flow f(k -> 0), chained and refined the same way on its own, gives the forward-backward
consistency check of Sundaram et al. (2010): a pixel is unreliable where
``|f(x) + b(x + f(x))|^2 > 0.01 (|f|^2 + |b|^2) + 0.5`` or where it leaves the picture (occlusion,
borders). The clip's frames are then resampled to the wanted frame count (fractional positions
blend the two nearest frames' flows).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from motion_i2v_core.motion.flow_compose import compose, sample_at
from motion_i2v_core.motion.flow_preview import fill_holes_push_pull
from motion_i2v_core.motion.flow_resample import sample_times
from motion_i2v_core.motion.image_prep import fit_transform

FLOW_METHODS = ("dis", "farneback")
MAX_CLIP_FRAMES = 2000
CONSISTENCY_ALPHA, CONSISTENCY_BETA = 0.01, 0.5


@dataclass
class VideoFlow:
    flow: torch.Tensor        # (F, 2, H, W) pixels, f(0 -> i), frame 0 zero
    unreliable: torch.Tensor  # (F, H, W) float {0, 1}, 1 = failed the consistency check
    clip_frames: int          # frames of the driving clip that were used


def fit_clip(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, H0, W0, C) IMAGE batch -> (N, height, width) float32 grey in [0, 1], fitted like the image."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4:
        raise ValueError(f"the clip must be an IMAGE batch (frames, height, width, channels), got "
                         f"{getattr(frames, 'shape', type(frames).__name__)}")
    n, h0, w0, c = frames.shape
    if n < 2:
        raise ValueError(f"the clip has {n} frame(s); motion needs at least 2 (connect a video, e.g. Load Video)")
    if n > MAX_CLIP_FRAMES:
        raise ValueError(f"the clip has {n} frames, more than {MAX_CLIP_FRAMES}; trim it first")
    grey = frames[..., :3].float().mean(dim=-1, keepdim=True) if c >= 3 else frames[..., :1].float()
    tf = fit_transform(h0, w0, height, width)
    out = F.interpolate(grey.permute(0, 3, 1, 2), size=(tf.resized_height, tf.resized_width), mode="bilinear",
                        align_corners=False, antialias=True)
    return out[:, 0, tf.offset_y:tf.offset_y + height, tf.offset_x:tf.offset_x + width].clamp(0, 1).contiguous()


class _Estimator:
    """Dense flow between two grey uint8 images, optionally started from a guess."""

    def __init__(self, method: str):
        if method not in FLOW_METHODS:
            raise ValueError(f"unknown flow method {method!r}: use one of {', '.join(FLOW_METHODS)}")
        self.method = method

    def __call__(self, a: np.ndarray, b: np.ndarray, init: torch.Tensor | None = None) -> torch.Tensor:
        guess = None if init is None else np.ascontiguousarray(init.permute(1, 2, 0).numpy(), np.float32)
        if self.method == "dis":
            # A fresh DIS object per call: one reused across image pairs of different content gave
            # wrong flows (it keeps state between calls).
            dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
            flow = dis.calc(a, b, guess.copy() if guess is not None else None)
        else:
            flags = cv2.OPTFLOW_USE_INITIAL_FLOW if guess is not None else 0
            flow = cv2.calcOpticalFlowFarneback(a, b, guess.copy() if guess is not None else None,
                                                0.5, 5, 21, 5, 7, 1.5, flags)
        return torch.from_numpy(np.ascontiguousarray(flow)).permute(2, 0, 1).float()


def _warp_error(grey0: torch.Tensor, greyk: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Per-pixel |frame0(x) - framek(x + f)|, box-smoothed (a 5x5 window) so single pixels do not decide."""
    diff = (grey0[None, None] - sample_at(greyk[None, None], flow[None])).abs()
    return F.avg_pool2d(diff, 5, stride=1, padding=2, count_include_pad=False)[0, 0]


def _chain_and_refine(estimate, images, grey, previous, a, b, anchor, reverse=False):
    """One more frame of a chained flow, refined against the anchor frame.

    Forward (reverse=False): previous = f(0 -> a), returns f(0 -> b) with b = a + 1, anchor 0.
    Backward (reverse=True): previous = f(b -> 0) with b = a - 1, returns f(a -> 0) (anchor = a).
    """
    if not reverse:
        chained = compose(previous[None], estimate(images[a], images[b])[None])[0]
        src, dst = 0, b
    else:
        chained = compose(estimate(images[a], images[b])[None], previous[None])[0]
        src, dst = anchor, 0
    refined = estimate(images[src], images[dst], chained)
    better = _warp_error(grey[src], grey[dst], refined) <= _warp_error(grey[src], grey[dst], chained)
    return torch.where(better[None], refined, chained)


def consistency(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """(H, W) bool, True = unreliable: the backward flow does not bring the pixel back, or it leaves."""
    _, h, w = forward.shape
    back = sample_at(backward[None], forward[None])[0]
    loop = (forward + back).pow(2).sum(0)
    bound = CONSISTENCY_ALPHA * (forward.pow(2).sum(0) + back.pow(2).sum(0)) + CONSISTENCY_BETA
    ys, xs = torch.meshgrid(torch.arange(h, dtype=forward.dtype), torch.arange(w, dtype=forward.dtype), indexing="ij")
    tx, ty = xs + forward[0], ys + forward[1]
    outside = (tx < 0) | (tx > w - 1) | (ty < 0) | (ty > h - 1)
    return (loop > bound) | outside


def flow_from_video(
    frames: torch.Tensor,
    height: int,
    width: int,
    num_frames: int,
    method: str = "dis",
    fill_unreliable: bool = True,
    progress=None,
    cancel=None,
) -> VideoFlow:
    """Dense flow f(0 -> i) of a driving clip at the generation size and frame count.

    :param frames: (N, H0, W0, C) IMAGE batch in [0, 1], N >= 2, any size (fitted like the image).
    :param fill_unreliable: replace unreliable flow by a smooth fill from the reliable surroundings.
    :param progress: optional callable(done, total) once per clip frame; cancel: optional callable
        that raises to stop.
    """
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2, got {num_frames}")
    grey = fit_clip(frames, height, width)
    n = grey.shape[0]
    images = [(g.numpy() * 255 + 0.5).astype(np.uint8) for g in grey]
    estimate = _Estimator(method)
    flows = [torch.zeros(2, height, width)]
    backs = [torch.zeros(2, height, width)]  # f(k-1 -> 0) of the previous frame
    bad = [torch.zeros(height, width, dtype=torch.bool)]
    for k in range(1, n):
        if cancel is not None:
            cancel()
        forward = _chain_and_refine(estimate, images, grey, flows[-1], k - 1, k, 0)
        # The backward flow is chained on its own (frame k -> k-1 -> 0), so the check is independent
        # of the forward estimate: a forward guess that inverted itself would always agree.
        backward = _chain_and_refine(estimate, images, grey, backs[-1], k, k - 1, k, reverse=True)
        flows.append(forward)
        backs.append(backward)
        bad.append(consistency(forward, backward))
        if progress is not None:
            progress(k, n - 1)
    flow = torch.stack(flows)
    unreliable = torch.stack(bad).float()
    if fill_unreliable and bool(unreliable.any()):
        filled = fill_holes_push_pull(flow, 1 - unreliable[:, None])
        flow = torch.where(unreliable[:, None] > 0, filled, flow)
    times = torch.linspace(0, n - 1, num_frames, dtype=torch.float64)
    lo, hi = times.floor().long(), times.ceil().long()
    return VideoFlow(flow=sample_times(flow, times), unreliable=torch.maximum(unreliable[lo], unreliable[hi]),
                     clip_frames=n)
