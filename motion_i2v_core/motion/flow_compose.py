"""Chaining and inverting displacement fields: f(a -> c) from f(a -> b) and f(b -> c), and the flow
seen from a later frame.

Flows are (N, 2, H, W) pixels, f(a -> b)(x) = where the content at x in frame a is in frame b,
minus x. Backward sampling is bilinear (positions outside the image take the border value);
inverting a flow pushes values forward with the stage-2 splat and fills the holes it leaves
(disoccluded pixels) from their surroundings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from motion_i2v_core.motion.flow_preview import fill_holes_push_pull
from motion_i2v_core.ops.splat import splat_corners, splat_normaliser, splat_sum

HOLE_WEIGHT = 0.5  # splat weight below which a target pixel is (partly) a hole


def sample_at(values: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``values`` (N, C, H, W) read at ``x + flow(x)`` (bilinear, border values outside)."""
    n, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype, device=flow.device),
                            torch.arange(w, dtype=flow.dtype, device=flow.device), indexing="ij")
    gx = (xs + flow[:, 0]) * (2 / max(w - 1, 1)) - 1
    gy = (ys + flow[:, 1]) * (2 / max(h - 1, 1)) - 1
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(values.to(flow.dtype), grid, mode="bilinear", padding_mode="border", align_corners=True)


def compose(first: torch.Tensor, then: torch.Tensor) -> torch.Tensor:
    """f(a -> c) = f(a -> b) + f(b -> c) read where the content went: ``first(x) + then(x + first(x))``."""
    return first + sample_at(then, first)


def push(values: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move ``values`` (N, C, H, W) along ``flow`` to where the content goes (avg splat), filling the
    holes from the surroundings. :return: (values seen from the target frame, coverage (N, 1, H, W)
    in [0, 1], 0 = nothing landed there)."""
    corners = splat_corners(flow.float())
    weight = splat_normaliser(corners)
    moved = splat_sum(values.float(), corners) / (weight + 1e-7)
    coverage = (weight / HOLE_WEIGHT).clamp(0, 1)
    return fill_holes_push_pull(moved, coverage), coverage


def invert(flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f(b -> a) from f(a -> b): -f pushed to where the content went. :return: (flow, coverage)."""
    return push(-flow, flow)


def relative(from_start: torch.Tensor, to_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f(s -> t) from f(0 -> s) (1, 2, H, W) and f(0 -> t) (N, 2, H, W): the motion as seen from frame s.

    Content at x in frame 0 is at x + f(0 -> s)(x) in frame s and at x + f(0 -> t)(x) in frame t, so
    f(s -> t) at x + f(0 -> s)(x) is f(0 -> t)(x) - f(0 -> s)(x), pushed there. :return: (flow, coverage).
    """
    start = from_start.expand_as(to_target)
    return push(to_target - start, start)
