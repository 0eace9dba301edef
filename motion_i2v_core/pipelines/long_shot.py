"""Long shots: a flow longer than one render (16 frames) rendered as chained segments.

The long flow f(0 -> i), i < N, is cut into segments of at most ``segment_frames`` frames that
share ``overlap + 1`` frames with the next one. Segment k starts at long frame s_k; its reference
image is the frame s_k the previous segment rendered (the last one when overlap = 0), and its flow
is the motion seen from frame s_k, f(s_k -> s_k + j), derived from the long flow
(``flow_compose.relative``: pushed from frame 0's pixels, disocclusions filled), so a camera move or
a driving clip continues where the last segment stopped. Overlapping frames are cross-faded
linearly from the earlier segment to the later one. Built only on the public ``render_video``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch

from motion_i2v_core.motion.flow_compose import relative
from motion_i2v_core.pipelines.stage1 import MAX_FRAMES
from motion_i2v_core.pipelines.stage2 import render_video
from motion_i2v_core.schedulers import SamplingCancelled

MAX_LONG_FRAMES = 1024


@dataclass
class LongShotResult:
    frames: torch.Tensor  # (N, H, W, 3) float32 in [0, 1], frame 0 = the reference image
    segments: List[tuple] = field(default_factory=list)  # (start, frames) of each rendered segment


def plan_segments(total: int, segment_frames: int = MAX_FRAMES, overlap: int = 0) -> list[tuple[int, int]]:
    """(start, frames) of each segment covering long frames 0 .. total - 1.

    Consecutive segments share ``overlap + 1`` frames (the next reference and the cross-faded ones).
    """
    if not 2 <= total <= MAX_LONG_FRAMES:
        raise ValueError(f"a long shot has 2 to {MAX_LONG_FRAMES} frames, got {total}")
    if not 2 <= segment_frames <= MAX_FRAMES:
        raise ValueError(f"segment_frames must be 2 to {MAX_FRAMES}, got {segment_frames}")
    step = segment_frames - 1 - overlap
    if overlap < 0 or step < 1:
        raise ValueError(
            f"overlap {overlap} leaves no new frames in segments of {segment_frames}; use 0 to {segment_frames - 2}"
        )
    segments, start = [], 0
    while True:
        frames = min(segment_frames, total - start)
        segments.append((start, frames))
        if start + frames >= total:
            return segments
        start += step


def segment_flow(flow: torch.Tensor, start: int, frames: int) -> torch.Tensor:
    """f(start -> start + j), j < frames, from the long flow f(0 -> i) (F, 2, H, W)."""
    window = flow[start:start + frames]
    if start == 0:
        return window.clone()
    seen, _ = relative(flow[start:start + 1], window)
    seen[0] = 0  # the reference frame does not move
    return seen


def crossfade(earlier: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
    """Blend two renderings of the same n frames (n, H, W, 3): frame j (1-based) takes j / (n + 1) of
    ``later``, so the earlier segment fades out over the overlap."""
    n = earlier.shape[0]
    w = torch.arange(1, n + 1, dtype=earlier.dtype).div(n + 1).view(-1, 1, 1, 1)
    return earlier * (1 - w) + later * w


def render_long_shot(
    models, image01: torch.Tensor, cond: torch.Tensor, uncond: Optional[torch.Tensor], flow: torch.Tensor,
    static_mask: Optional[torch.Tensor] = None,
    *,
    segment_frames: int = MAX_FRAMES,
    overlap: int = 0,
    steps: int = 25,
    seed: int = 0,
    progress: Optional[Callable] = None,
    cancel: Optional[Callable] = None,
    render: Callable = render_video,
    **render_args,
) -> LongShotResult:
    """Render ``flow`` (N, 2, H, W), N possibly > 16, as chained segments (see the module docstring).

    :param progress: progress(done, total, latent) over all segments' steps together.
    :param cancel: checked between segments and passed into every segment's sampler.
    :param render_args: guidance, sampler, official_compat, ... passed to ``render_video``; segment
        k uses seed ``seed + k``.
    """
    total = flow.shape[0]
    plan = plan_segments(total, segment_frames, overlap)
    total_steps = len(plan) * steps
    out: list[torch.Tensor] = []  # frames rendered so far, long-frame order
    reference = image01
    for k, (start, frames) in enumerate(plan):
        if cancel is not None and cancel():
            raise SamplingCancelled("generation was cancelled")

        def segment_progress(step, _total=None, latent=None, _offset=k * steps):
            if progress is not None:
                progress(_offset + step, total_steps, latent)

        result = render(models, reference, cond, uncond, segment_flow(flow, start, frames), static_mask,
                        steps=steps, seed=(seed + k) % 2**64, progress=segment_progress, cancel=cancel, **render_args)
        rendered = result.frames
        if k == 0:
            out = list(rendered)
        else:
            shared = len(out) - start  # frames start .. len(out) - 1 exist already (the reference first)
            inner = shared - 1
            if inner > 0:
                blended = crossfade(torch.stack(out[start + 1:]), rendered[1:shared])
                out[start + 1:] = list(blended)
            out += list(rendered[shared:])
        reference = out[plan[k + 1][0]].permute(2, 0, 1).contiguous() if k + 1 < len(plan) else reference
    return LongShotResult(frames=torch.stack(out), segments=plan)
