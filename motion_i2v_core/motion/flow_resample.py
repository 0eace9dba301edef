"""Resample a flow field in time (another frame count) and in space (the reference image's fit).

Flow f(0 -> t) changes smoothly with t, so a frame count change interpolates linearly between the
two nearest frames. A spatial change follows ``image_prep.fit_transform`` (resize to cover, centre
crop), the same geometry as the reference image, and scales the displacements with the resize.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from motion_i2v_core.motion.image_prep import fit_transform


def sample_times(flow: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Flow at fractional frame positions ``times`` (in [0, F - 1]), linear between frames."""
    last = flow.shape[0] - 1
    times = times.to(torch.float64).clamp(0, last)
    lo = times.floor().long().clamp(max=max(last - 1, 0))
    hi = (lo + 1).clamp(max=last)
    w = (times - lo.double()).to(flow.dtype).view(-1, 1, 1, 1)
    return flow[lo] * (1 - w) + flow[hi] * w


def resample_frames(flow: torch.Tensor, num_frames: int) -> torch.Tensor:
    """The same motion over ``num_frames`` frames (first and last frame kept)."""
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2, got {num_frames}")
    if flow.shape[0] == num_frames:
        return flow
    return sample_times(flow, torch.linspace(0, flow.shape[0] - 1, num_frames, dtype=torch.float64))


def _fit(x: torch.Tensor, height: int, width: int, tf) -> torch.Tensor:
    out = F.interpolate(x.float(), size=(tf.resized_height, tf.resized_width), mode="bilinear", align_corners=False)
    return out[:, :, tf.offset_y:tf.offset_y + height, tf.offset_x:tf.offset_x + width].contiguous()


def fit_flow(flow: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Flow (F, 2, h0, w0) fitted to ``height x width`` like the reference image: resized to cover
    (displacements scaled by the resize factors), then centre-cropped."""
    h0, w0 = flow.shape[-2:]
    if (h0, w0) == (height, width):
        return flow
    tf = fit_transform(h0, w0, height, width)
    return _fit(flow, height, width, tf) * torch.tensor([tf.scale_x, tf.scale_y]).view(1, 2, 1, 1)


def fit_plane(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A (..., h0, w0) mask fitted like ``fit_flow`` (values not scaled, not thresholded)."""
    h0, w0 = mask.shape[-2:]
    if (h0, w0) == (height, width):
        return mask.float()
    lead = mask.shape[:-2]
    flat = mask.float().reshape(-1, 1, h0, w0)
    return _fit(flat, height, width, fit_transform(h0, w0, height, width)).reshape(*lead, height, width)
