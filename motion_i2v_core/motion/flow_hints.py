"""Dense flow -> sparse drag tracks (MotionHints), so stage 1 re-imagines a given motion.

Predict Flow takes drags, not dense flow: we sample the flow at a regular grid of points and give
each point a track through its positions in every frame (``p + f(0 -> i)(p)``). Points whose path
leaves the image, or that lie outside the allowed region, are left out rather than clamped (a
clamped track would tell the model the wrong motion).
"""

from __future__ import annotations

import numpy as np
import torch

from motion_i2v_core.motion.hints import MotionHints


def grid_points(height: int, width: int, grid: int) -> np.ndarray:
    """(grid * rows, 2) cell-centre points: ``grid`` columns, rows chosen for square-ish cells."""
    if grid < 1:
        raise ValueError(f"track grid must have at least 1 column, got {grid}")
    rows = max(1, round(grid * height / width))
    xs = (np.arange(grid) + 0.5) * width / grid - 0.5
    ys = (np.arange(rows) + 0.5) * height / rows - 0.5
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def flow_to_hints(flow: torch.Tensor, grid: int = 4, region: torch.Tensor | None = None,
                  reliable: torch.Tensor | None = None) -> MotionHints:
    """Tracks sampled from ``flow`` (F, 2, H, W) pixels at a ``grid``-column point grid.

    :param region: optional (H, W) mask, 1 = this part follows the flow; it also becomes the brush
        (movable mask), so the rest stays still.
    :param reliable: optional (F, H, W) mask, 1 = trustworthy flow; points unreliable in any frame
        are left out.
    :return: MotionHints in flow pixels (tracks of F points each); ``warnings`` lists left-out points.
    """
    frames, _, height, width = flow.shape
    warnings = []
    tracks = []
    for x, y in grid_points(height, width, grid):
        j, i = int(round(x)), int(round(y))
        if region is not None and region[i, j] < 0.5:
            continue
        if reliable is not None and bool((reliable[:, i, j] < 0.5).any()):
            warnings.append(f"grid point ({x:.0f}, {y:.0f}) left out: its flow is unreliable in some frame")
            continue
        path = np.stack([x + flow[:, 0, i, j].double().numpy(), y + flow[:, 1, i, j].double().numpy()], axis=1)
        if ((path[:, 0] < 0) | (path[:, 0] > width - 1) | (path[:, 1] < 0) | (path[:, 1] > height - 1)).any():
            warnings.append(f"grid point ({x:.0f}, {y:.0f}) left out: it moves out of the picture")
            continue
        tracks.append(path)
    movable = None if region is None else (region > 0.5).float()
    if movable is not None and not bool(movable.any()):
        movable = None
    return MotionHints(tracks=tracks, movable_mask=movable, width=width, height=height, warnings=warnings)
