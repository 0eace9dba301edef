"""Scale Flow: make a motion bigger or smaller, and re-time it with an easing curve."""

from __future__ import annotations

import math

import torch

from motion_i2v_core.motion.easing import progress
from motion_i2v_core.motion.flow_resample import sample_times

MAX_AMPLITUDE = 8.0


def scale_flow(flow: torch.Tensor, amplitude: float = 1.0, easing: str = "linear") -> torch.Tensor:
    """``amplitude`` times the motion, frame ``i`` showing the motion at eased time ``ease(i / (F-1))``.

    The first and last frames keep their place in time, so only the pace in between changes
    (linear = unchanged). A negative amplitude reverses the direction.
    :param flow: (F, 2, H, W) pixels f(0 -> i).
    """
    if not math.isfinite(amplitude) or abs(amplitude) > MAX_AMPLITUDE:
        raise ValueError(f"amplitude {amplitude} is out of range; use -{MAX_AMPLITUDE:g} to {MAX_AMPLITUDE:g}")
    frames = flow.shape[0]
    if frames < 2:
        return flow * amplitude
    times = progress(frames, easing) * (frames - 1)
    return sample_times(flow, times) * amplitude
