"""Combine Flows: one motion inside a mask, another outside (object motion over a camera move)."""

from __future__ import annotations

import torch

COMBINE_MODES = ("replace", "add")


def combine_flows(
    base: torch.Tensor,
    overlay: torch.Tensor,
    mask: torch.Tensor | None = None,
    mode: str = "replace",
    base_static: torch.Tensor | None = None,
    overlay_static: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend two flows of the same size and frame count.

    :param mask: (H, W) in [0, 1], where the overlay applies (soft edges blend). None = the
        overlay's moving region (1 - overlay_static), or everywhere if that is unknown.
    :param mode: "replace": overlay inside the mask, base outside; "add": the base everywhere plus
        the overlay inside the mask (the object moves with the camera and by itself).
    :return: (flow (F, 2, H, W), static (H, W): 1 where nothing may move).
    """
    if mode not in COMBINE_MODES:
        raise ValueError(f"unknown combine mode {mode!r}: use one of {', '.join(COMBINE_MODES)}")
    if base.shape != overlay.shape:
        raise ValueError(
            f"the flows differ: base {tuple(base.shape)} vs overlay {tuple(overlay.shape)} (frames, 2, height, "
            "width); make both at the same width, height and num_frames"
        )
    _, _, height, width = base.shape
    zeros = torch.zeros(height, width)
    base_static = zeros if base_static is None else base_static.float()
    overlay_static = zeros if overlay_static is None else overlay_static.float()
    if mask is None:
        mask = 1 - overlay_static if bool(overlay_static.any()) else torch.ones(height, width)
    mask = mask.float().clamp(0, 1)
    if tuple(mask.shape) != (height, width):
        raise ValueError(f"mask is {tuple(mask.shape)} but the flows are ({height}, {width}); resize the mask")
    m = mask.view(1, 1, height, width)
    if mode == "replace":
        flow = base * (1 - m) + overlay * m
        static = torch.where(mask > 0.5, overlay_static, base_static)
    else:
        flow = base + overlay * m
        static = base_static * torch.where(mask > 0.5, overlay_static, torch.ones_like(overlay_static))
    return flow, static
