"""The stage-2 flow at a feature level: resized from image resolution and rescaled to feature pixels."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def resize_flow(
    flow: torch.Tensor, height: int, width: int, cache: Optional[dict[tuple[int, int], torch.Tensor]] = None
) -> torch.Tensor:
    """``(B_f, F, 2, H_img, W_img)`` pixels -> ``(B_f, F, 2, height, width)`` feature pixels, float32.

    Bilinear, align_corners=False, no antialias, straight from image resolution (as the official code).
    ``cache`` (one dict per flow) keeps each level's result, so the motion modules of a level share it.
    """
    key = (height, width)
    if cache is not None and key in cache:
        return cache[key]
    bf, frames, _, h_img, w_img = flow.shape
    fl = F.interpolate(flow.reshape(bf * frames, 2, h_img, w_img), size=key, mode="bilinear", align_corners=False)
    # Python-float ratios, as the official code divides by (W_img / W) and (H_img / H).
    fl = torch.stack([fl[:, 0] / (w_img / width), fl[:, 1] / (h_img / height)], dim=1)
    fl = fl.reshape(bf, frames, 2, height, width)
    if cache is not None:
        cache[key] = fl
    return fl
