"""Easing curves: how a move's progress (0 at the first frame, 1 at the last) is spread over time."""

from __future__ import annotations

import math

import torch

EASINGS = ("linear", "ease_in", "ease_out", "ease_in_out")


def ease(t: torch.Tensor, easing: str) -> torch.Tensor:
    """Map progress ``t`` in [0, 1] through an easing curve (0 -> 0, 1 -> 1, monotone).

    ease_in starts slowly (t^2), ease_out ends slowly, ease_in_out is the smoothstep-like cosine.
    """
    if easing == "linear":
        return t
    if easing == "ease_in":
        return t * t
    if easing == "ease_out":
        return 1 - (1 - t) * (1 - t)
    if easing == "ease_in_out":
        return (1 - torch.cos(t * math.pi)) / 2
    raise ValueError(f"unknown easing {easing!r}: use one of {', '.join(EASINGS)}")


def progress(num_frames: int, easing: str = "linear") -> torch.Tensor:
    """(num_frames,) float64 eased progress, 0 at frame 0 and 1 at the last frame."""
    if num_frames < 2:
        raise ValueError(f"a move needs at least 2 frames (the reference and one more), got {num_frames}")
    return ease(torch.linspace(0, 1, num_frames, dtype=torch.float64), easing)
