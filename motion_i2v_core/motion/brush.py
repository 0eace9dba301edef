"""Motion-brush masks: rasterising the drawn strokes, and the mask semantics the model uses.

The artist paints the regions that MAY move ("movable" mask, 1 = painted). Internally, as in the
official app (stage1_spec.md section 7 step 5, stage2_spec.md section 6), the model works with a
``static`` mask: 1 = keep still. Nothing painted means everything may move, i.e. an all-zero
static mask (never an all-one one).

Strokes are rasterised once, at the size they are used at, onto one canvas; the work is estimated
first and refused above :data:`MAX_BRUSH_WORK`, so no drawing can hold the server for long.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

PAINT_THRESHOLD = 0.5
LATENT_FACTOR = 8
# Pixels written (an OpenCV fill writes a few GB/s), plus a per-call cost in pixel equivalents:
# the limit keeps the worst accepted brush at about two seconds of drawing.
MAX_BRUSH_WORK = 10_000_000_000
_CALL_COST = 2_000


def _stroke_pixels(stroke) -> tuple[int, list[tuple[int, int]]]:
    r = max(int(round(float(stroke["radius"]))), 0)
    return r, [(int(round(x)), int(round(y))) for x, y in stroke["points"]]


def brush_work(strokes, width: int, height: int) -> int:
    """Estimated pixels written by :func:`rasterize_brush` (discs and thick segments, clipped to the canvas)."""
    canvas = width * height
    total = 0
    for s in strokes:
        r = max(int(round(float(s["radius"]))), 0)
        side = 2 * r + 1
        p = np.asarray(s["points"], np.float64).reshape(-1, 2)
        lengths = np.hypot(*np.diff(p, axis=0).T) if len(p) > 1 else np.zeros(0)
        total += len(p) * (min(side * side, canvas) + _CALL_COST)
        total += int(np.minimum(lengths * side + side * side, canvas).sum()) + len(lengths) * _CALL_COST
    return total


def check_brush_work(strokes, width: int, height: int) -> None:
    """Raise ValueError (naming the limit) if the strokes are too much work to draw at ``width x height``."""
    work = brush_work(strokes, width, height)
    if work > MAX_BRUSH_WORK:
        raise ValueError(
            f"brush: drawing these {len(strokes)} strokes at {width}x{height} would write about "
            f"{work / 1e9:.0f} billion pixels, over the limit of {MAX_BRUSH_WORK / 1e9:.0f} billion; "
            f"use fewer strokes or points, or a smaller radius")


def rasterize_brush(strokes, width: int, height: int, base=None) -> torch.Tensor:
    """Rasterise brush strokes in order (paint -> 1, erase -> 0) as round-capped polylines.

    Each segment is a line of thickness ``2r + 1`` plus a disc of radius ``r`` at every point
    (round caps and joins; a one-point stroke is a disc). Drawn on one canvas: ``base`` (a
    ``(height, width)`` {0, 1} mask to paint onto and erase from) or an empty one.
    :return: (height, width) float32 {0, 1}
    """
    check_brush_work(strokes, width, height)
    if base is None:
        canvas = np.zeros((height, width), np.uint8)
    else:
        b = base.detach().cpu().numpy() if isinstance(base, torch.Tensor) else np.asarray(base)
        canvas = np.ascontiguousarray(b > PAINT_THRESHOLD, np.uint8)
    for s in strokes:
        color = 1 if s["mode"] == "paint" else 0
        r, pts = _stroke_pixels(s)
        try:
            for a, b in zip(pts[:-1], pts[1:]):
                cv2.line(canvas, a, b, color, thickness=2 * r + 1, lineType=cv2.LINE_8)
            for p in pts:
                cv2.circle(canvas, p, r, color, thickness=-1, lineType=cv2.LINE_8)
        except (cv2.error, OverflowError) as e:  # out-of-range values that slipped past the parser
            raise ValueError(f"brush: a stroke (radius {s['radius']!r}) cannot be drawn at {width}x{height} "
                             f"({type(e).__name__}); redraw it in the editor") from None
    return torch.from_numpy(canvas.astype(np.float32))


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

