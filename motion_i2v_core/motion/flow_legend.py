"""A colour-wheel legend for colour-coded flow previews: which hue is which direction, and how many
pixels of motion full saturation means."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from motion_i2v_core.motion.flow_viz import flow_to_color

LEGEND_FRACTION = 0.28  # of the shorter side
MIN_LEGEND = 24  # pixels; smaller previews get no legend (it would hide the flow)


def legend_disc(size: int, max_radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``size x size`` colour wheel: each pixel coloured as the flow pointing from the centre to it,
    the rim being ``max_radius`` pixels of motion. :return: (rgb (size, size, 3), alpha (size, size))."""
    c = (size - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    dx, dy = xs - c, ys - c
    r = torch.hypot(dx, dy) / c
    rgb = flow_to_color(torch.stack([dx / c, dy / c]), max_radius=1.0)
    alpha = (r <= 1).float()
    return rgb, alpha


def add_legend(frames: torch.Tensor, max_radius: float) -> torch.Tensor:
    """Paste the legend in the bottom-right corner of colour-coded frames (F, H, W, 3), labelled with
    the pixel magnitude of full saturation. Frames too small for a readable legend are returned as is."""
    frames = frames.clone()
    _, height, width, _ = frames.shape
    size = int(min(height, width) * LEGEND_FRACTION)
    if size < MIN_LEGEND:
        return frames
    label_h = max(10, size // 4)
    panel = np.ones((size + label_h, size, 3), np.float32) * 0.15  # dark panel behind disc and label
    rgb, alpha = legend_disc(size, max_radius)
    a = alpha.numpy()[..., None]
    panel[:size] = rgb.numpy() * a + panel[:size] * (1 - a)
    box = (panel * 255 + 0.5).astype(np.uint8)  # cv2 draws text on 8-bit images only
    text = f"{max_radius:.3g} px" if max_radius > 0 else "still"
    scale = label_h / 30
    (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.putText(box, text, (max(0, (size - tw) // 2), size + int(label_h * 0.8)), cv2.FONT_HERSHEY_SIMPLEX,
                scale, (255, 255, 255), 1, cv2.LINE_AA)
    box = box.astype(np.float32) / 255
    bh, bw = box.shape[:2]
    if bh + 2 > height or bw + 2 > width:
        return frames
    frames[:, height - bh - 2:height - 2, width - bw - 2:width - 2] = torch.from_numpy(box)
    return frames


def flow_preview_with_legend(flow: torch.Tensor) -> torch.Tensor:
    """Colour-code flow (F, 2, H, W) on one shared scale and add the legend: (F, H, W, 3)."""
    finite = torch.where(torch.isfinite(flow), flow, torch.zeros_like(flow))
    max_radius = float(torch.hypot(finite[:, 0], finite[:, 1]).max()) if flow.numel() else 0.0
    return add_legend(flow_to_color(flow, max_radius=max_radius if max_radius > 0 else None), max_radius)
