"""Motion hints -> stage-1 ControlNet condition (stage1_spec.md sections 3 and 7).

sparse flow:  drag squares (trajectories.py), multiplied by (1 - static); mask = 1 in the
              squares and in the whole static region (known zero motion);
              ``sparse_flow01 = ((drag + 1) / 2 - 0.5) * mask + 0.5`` (0.5 = no motion)
control:      ``cat([flow_vae.encode(sparse_flow01).sample(), mask[..., ::8, ::8]], dim=1)``,
              the latent NOT scaled by 0.18215.
"""

from __future__ import annotations

import numpy as np
import torch

from motion_i2v_core.models.vae_frames import encode_frames
from motion_i2v_core.motion.brush import latent_mask, static_mask
from motion_i2v_core.motion.image_prep import fit_mask, fit_transform
from motion_i2v_core.motion.hints import MotionHints
from motion_i2v_core.motion.trajectories import tracks_to_drag


def hints_to_target(hints: MotionHints, height: int, width: int):
    """Map hint tracks and brush into the target frame (same resize + centre crop as the image).

    :return: ``(tracks, movable (H, W) or None, warnings)``
    """
    warnings: list[str] = list(hints.warnings)
    if not hints.width or not hints.height or (hints.width, hints.height) == (width, height):
        return [np.asarray(t, np.float64).reshape(-1, 2) for t in hints.tracks], hints.movable_mask, warnings
    tf = fit_transform(hints.height, hints.width, height, width)
    tracks = []
    for i, t in enumerate(hints.tracks):
        p = tf.apply_points(t)
        outside = (p[:, 0] < 0) | (p[:, 0] > width - 1) | (p[:, 1] < 0) | (p[:, 1] > height - 1)
        for j in np.nonzero(outside)[0]:
            warnings.append(f"track {i} point {int(j)} lies in the part of the image cropped away to fit "
                            f"{width}x{height}; it is clamped to the border")
        p[:, 0] = np.clip(p[:, 0], 0.0, width - 1.0)
        p[:, 1] = np.clip(p[:, 1], 0.0, height - 1.0)
        tracks.append(p)
    movable = None if hints.movable_mask is None else fit_mask(hints.movable_mask, tf)
    return tracks, movable, warnings


def sparse_flow_from_hints(
    hints: MotionHints | None,
    height: int,
    width: int,
    num_frames: int = 15,
    flow_unit: int | None = None,
    return_warnings: bool = False,
):
    """Stage-1 sparse flow and mask from motion hints (official app semantics).

    :param hints: MotionHints in hint-image pixels (rescaled + centre-cropped to the target), or None
    :param flow_unit: drag square half-size u in target pixels; None -> scaled default (64 at 512x320)
    :return: ``(sparse_flow01 (1,2,F,H,W), sparse_mask (1,1,F,H,W), brush_static (1,1,1,H,W))``
        float32; plus the warnings list when ``return_warnings``.
    """
    if hints is None:
        hints = MotionHints()
    tracks, movable, warnings = hints_to_target(hints, height, width)
    drag, mask, w2 = tracks_to_drag(tracks, height, width, num_frames=num_frames, flow_unit=flow_unit,
                                    timing=hints.timing)
    warnings.extend(w2)
    static = static_mask(movable, height, width)  # 1 = static
    drag = drag * (1.0 - static)
    mask = torch.where(static.expand_as(mask) > 0, torch.ones_like(mask), mask)
    flow01 = (drag + 1.0) / 2.0
    sparse = (flow01 - 0.5) * mask + 0.5
    out = (sparse[None], mask[None, None], static.reshape(1, 1, 1, height, width))
    return (*out, warnings) if return_warnings else out


def encode_control(
    flow_vae,
    sparse_flow01: torch.Tensor,
    sparse_mask: torch.Tensor,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    sample: bool = True,
    chunk: int | None = None,
) -> torch.Tensor:
    """5-channel ControlNet condition ``cat([flow latent (4), mask / 8 (1)])``.

    :param flow_vae: object with ``encode(x (N,2,H,W)) -> posterior`` having ``.mean`` and ``.std``
    :param sparse_flow01: (B, 2, F, H, W) in [0, 1]
    :param sparse_mask: (B, 1, F or 1, H, W)
    :param noise: posterior noise (B*F, 4, h, w) in (b f) order; drawn from ``generator`` if None
    :param sample: False -> use the posterior mean (the official app samples)
    :param chunk: frames per encoder call; None = as many as the free memory allows (a fixed chunk on
        the CPU). The noise is drawn for all frames at once, so the result does not depend on it.
    :return: (B, 5, F, H/8, W/8)
    """
    b, c, f, h, w = sparse_flow01.shape
    if c != 2:
        raise ValueError(f"sparse_flow01 must have 2 channels (dx, dy), got {c}")
    frames = sparse_flow01.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)  # (b f) c h w
    param = next(iter(flow_vae.parameters()), None) if hasattr(flow_vae, "parameters") else None
    if param is not None:
        frames = frames.to(device=param.device, dtype=param.dtype)
    mean, std = encode_frames(flow_vae, frames, chunk)
    if sample:
        if noise is None:
            noise = torch.randn(mean.shape, generator=generator, dtype=torch.float32,
                                device=generator.device if generator is not None else "cpu")
        if tuple(noise.shape) != tuple(mean.shape):
            raise ValueError(f"control noise must have shape {tuple(mean.shape)} ((b f), c, h, w), got {tuple(noise.shape)}")
        latent = mean + std * noise.to(device=mean.device, dtype=mean.dtype)
    else:
        latent = mean
    lc, lh, lw = latent.shape[1:]
    latent = latent.reshape(b, f, lc, lh, lw).permute(0, 2, 1, 3, 4)
    m8 = latent_mask(sparse_mask).to(device=latent.device, dtype=latent.dtype)
    m8 = m8.expand(b, 1, f, m8.shape[-2], m8.shape[-1])
    if m8.shape[-2:] != latent.shape[-2:]:
        raise ValueError(f"mask at latent size {tuple(m8.shape[-2:])} does not match the flow latent {tuple(latent.shape[-2:])}")
    return torch.cat([latent, m8], dim=1)
