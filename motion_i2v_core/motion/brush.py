"""Motion-brush mask semantics.

The artist paints the regions that MAY move ("movable" mask, 1 = painted). Internally, as in the
official app (stage1_spec.md section 7 step 5, stage2_spec.md section 6), the model works with a
``static`` mask: 1 = keep still. Nothing painted means everything may move, i.e. an all-zero
static mask (never an all-one one).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

PAINT_THRESHOLD = 0.5
LATENT_FACTOR = 8


def static_mask(movable, height: int, width: int) -> torch.Tensor:
    """Movable (painted) mask -> static mask at ``height x width``.

    :param movable: (h, w) float tensor/array in [0, 1] (1 = painted = may move), or None
        (nothing painted). Resized with cv2 INTER_LINEAR when the size differs (as the app does).
    :return: (H, W) float32 {0, 1}; 1 = static. All zeros when nothing is painted.
    """
    if movable is None:
        return torch.zeros(height, width, dtype=torch.float32)
    m = movable.detach().cpu().float().numpy() if isinstance(movable, torch.Tensor) else np.asarray(movable, np.float32)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise ValueError(f"brush mask must be (H, W), got shape {m.shape}")
    if m.shape != (height, width):
        m = cv2.resize(np.ascontiguousarray(m, np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    painted = m > PAINT_THRESHOLD
    if not painted.any():
        return torch.zeros(height, width, dtype=torch.float32)
    return torch.from_numpy((~painted).astype(np.float32))


def latent_mask(mask: torch.Tensor, factor: int = LATENT_FACTOR) -> torch.Tensor:
    """Nearest downsample to latent resolution: the top-left pixel of each ``factor`` block.

    Equals ``F.interpolate(mask, scale_factor=1/8, mode="nearest")`` used by the official pipelines.
    Works on any tensor whose last two dims are (H, W).
    """
    return mask[..., ::factor, ::factor]


def static_mask_5d(static: torch.Tensor) -> torch.Tensor:
    """(H, W) static mask -> (1, 1, 1, H, W), the official ``brush_mask`` layout."""
    return static.reshape(1, 1, 1, *static.shape[-2:])
