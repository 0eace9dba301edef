"""Drag trajectories -> per-frame sparse flow (stage-1 drag hints).

Semantics follow stage1_spec.md section 7 (the official app's drag handling):
each track is resampled to ``num_frames + 1`` points with monotone cubic (PCHIP) interpolation,
and flow frame ``i`` holds the cumulative displacement ``P[i+1] - P[0]`` written into a
``2u x 2u`` square around the start point ``P[0]`` (``u`` = flow unit).
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Resolution at which the official app's default flow unit (64 px) was chosen.
REFERENCE_HEIGHT = 320
REFERENCE_WIDTH = 512
REFERENCE_FLOW_UNIT = 64


# --------------------------------------------------------------------------------------------
# PCHIP (monotone piecewise cubic Hermite), written from the Fritsch-Carlson construction
# --------------------------------------------------------------------------------------------

def _end_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    """One-sided three-point end derivative with the shape-preserving guards.

    d = ((2 h0 + h1) m0 - h0 m1) / (h0 + h1); forced to 0 if its sign differs from m0, and
    limited to 3 m0 if the data changes direction (m0, m1 of opposite sign) and |d| > 3|m0|.
    """
    d = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > abs(3.0 * m0):
        return 3.0 * m0
    return float(d)


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Knot derivatives of the monotone cubic interpolant (1-D ``y``)."""
    h = np.diff(x)
    m = np.diff(y) / h
    n = x.shape[0]
    if n == 2:
        # Two knots: the interpolant is the straight line.
        return np.full(2, m[0])
    d = np.zeros(n, dtype=np.float64)
    # Interior knots: weighted harmonic mean of the neighbouring secants when they have the same
    # (non-zero) sign, else 0 (a local extremum stays flat -> no overshoot).
    for k in range(1, n - 1):
        ml, mr = m[k - 1], m[k]
        if ml == 0.0 or mr == 0.0 or np.sign(ml) != np.sign(mr):
            d[k] = 0.0
            continue
        wl = 2.0 * h[k] + h[k - 1]
        wr = h[k] + 2.0 * h[k - 1]
        d[k] = (wl + wr) / (wl / ml + wr / mr)
    d[0] = _end_slope(h[0], h[1], m[0], m[1])
    d[-1] = _end_slope(h[-1], h[-2], m[-1], m[-2])
    return d


def pchip_interpolate(x, y, x_new) -> np.ndarray:
    """Evaluate the monotone cubic (PCHIP) interpolant of ``(x, y)`` at ``x_new``.

    :param x: strictly increasing knots, shape (n,), n >= 2
    :param y: values, shape (n,)
    :param x_new: evaluation points (any shape); points outside [x0, xn] are extrapolated with the
        end cubic pieces.
    :return: float64 array shaped like ``x_new``
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x_new = np.asarray(x_new, dtype=np.float64)
    if x.ndim != 1 or y.shape != x.shape:
        raise ValueError(f"pchip_interpolate: x and y must be 1-D of equal length, got {x.shape} and {y.shape}")
    if x.shape[0] < 2:
        raise ValueError("pchip_interpolate: need at least 2 knots")
    if not np.all(np.diff(x) > 0):
        raise ValueError("pchip_interpolate: x must be strictly increasing")
    d = pchip_slopes(x, y)
    h = np.diff(x)
    slope = np.diff(y) / h
    # Power-basis coefficients of each piece in s = x - x_k (Horner evaluation keeps the knot
    # values exact at s = 0).
    c3 = (d[:-1] + d[1:] - 2.0 * slope) / h**2
    c2 = (3.0 * slope - 2.0 * d[:-1] - d[1:]) / h
    c1 = d[:-1]
    c0 = y[:-1]
    k = np.clip(np.searchsorted(x, x_new, side="right") - 1, 0, x.shape[0] - 2)
    s = x_new - x[k]
    return ((c3[k] * s + c2[k]) * s + c1[k]) * s + c0[k]


def resample_track(points, num_points: int) -> np.ndarray:
    """Resample a polyline of ``n`` points to ``num_points`` points with PCHIP per coordinate.

    The knots sit at ``t = linspace(0, 1, n)``; the result is evaluated at ``linspace(0, 1, num_points)``.
    :param points: (n, 2) array, n >= 2
    :return: (num_points, 2) float64
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 2:
        raise ValueError(f"resample_track: expected (n>=2, 2) points, got shape {p.shape}")
    t = np.linspace(0.0, 1.0, p.shape[0])
    t_new = np.linspace(0.0, 1.0, num_points)
    return np.stack([pchip_interpolate(t, p[:, 0], t_new), pchip_interpolate(t, p[:, 1], t_new)], axis=1)


# --------------------------------------------------------------------------------------------
# Per-track timing (widget format v2)
# --------------------------------------------------------------------------------------------

def is_default_timing(timing) -> bool:
    """True when ``timing`` (dict or None) changes nothing: whole clip, no easing."""
    return (not timing or (int(timing.get("start") or 0) == 0 and timing.get("end") is None
                           and not timing.get("ease_in") and not timing.get("ease_out")))


def timing_progress(timing, num_points: int) -> np.ndarray:
    """Where along its drawn path a track is at each of ``num_points`` frames, 0 .. 1.

    Frame ``k`` (0 = the input image) is at ``u = (k - start) / (end - start)`` clipped to [0, 1], so
    the track is still before ``start`` and held after ``end``; ``end`` None = the last frame. Both
    are clamped into the clip (a timing saved for a longer clip still plays). Easing bends ``u``:
    in only ``u^2``, out only ``1 - (1 - u)^2``, both the smoothstep ``3u^2 - 2u^3``.
    """
    last = num_points - 1
    k = np.arange(num_points, dtype=np.float64)
    if is_default_timing(timing) or last < 1:
        return k / max(last, 1)
    start = min(max(int(timing.get("start") or 0), 0), last - 1)
    end = timing.get("end")
    end = last if end is None else min(max(int(end), start + 1), last)
    u = np.clip((k - start) / (end - start), 0.0, 1.0)
    ease_in, ease_out = bool(timing.get("ease_in")), bool(timing.get("ease_out"))
    if ease_in and ease_out:
        return u * u * (3.0 - 2.0 * u)
    if ease_in:
        return u * u
    if ease_out:
        return 1.0 - (1.0 - u) ** 2
    return u


def track_path(points, num_points: int, timing=None) -> np.ndarray:
    """A track's position at each of ``num_points`` frames: :func:`resample_track`, re-timed.

    Without timing (format v1, or v2 defaults) this is exactly :func:`resample_track`.
    """
    if is_default_timing(timing):
        return resample_track(points, num_points)
    p = np.asarray(points, dtype=np.float64)
    t = np.linspace(0.0, 1.0, p.shape[0])
    u = timing_progress(timing, num_points)
    return np.stack([pchip_interpolate(t, p[:, 0], u), pchip_interpolate(t, p[:, 1], u)], axis=1)


# --------------------------------------------------------------------------------------------
# Drag squares
# --------------------------------------------------------------------------------------------

def default_flow_unit(height: int, width: int) -> int:
    """Half-size ``u`` of the drag square, scaled with resolution.

    The official app uses u = 64 at 512x320. We keep the same fraction of the image by scaling
    with the square root of the pixel count: ``max(1, round(64 * sqrt(H*W / (512*320))))``
    (64 at 512x320, 10 at 64x64, 128 at 1024x640).
    """
    return max(1, int(round(REFERENCE_FLOW_UNIT * math.sqrt(height * width / (REFERENCE_HEIGHT * REFERENCE_WIDTH)))))


def _clean_track(track, index: int, height: int, width: int, warnings: list[str], truncate: bool) -> np.ndarray:
    p = np.asarray(track, dtype=np.float64)
    if p.ndim == 1 and p.shape == (2,):
        p = p[None]
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 1:
        raise ValueError(f"track {index}: expected an (n>=1, 2) array of (x, y) points, got shape {p.shape}")
    bad = ~np.isfinite(p).all(axis=1)
    if bad.any():
        j = int(np.nonzero(bad)[0][0])
        raise ValueError(f"track {index} point {j}: coordinates must be finite numbers, got {p[j].tolist()}")
    if truncate:
        p = np.trunc(p)
    for j in range(p.shape[0]):
        x, y = p[j]
        cx = min(max(x, 0.0), width - 1.0)
        cy = min(max(y, 0.0), height - 1.0)
        if cx != x or cy != y:
            warnings.append(
                f"track {index} point {j} ({x:g}, {y:g}) is outside the {width}x{height} image; "
                f"clamped to ({cx:g}, {cy:g})"
            )
            p[j] = (cx, cy)
    return p


def tracks_to_drag(
    tracks,
    height: int,
    width: int,
    num_frames: int = 15,
    flow_unit: int | None = None,
    truncate_points: bool = False,
    timing=None,
):
    """Rasterise drag tracks into per-frame displacement squares, as the official app does.

    :param tracks: list of (n, 2) point arrays in target-image pixels (x right, y down)
    :param num_frames: number of flow frames F (video length - 1; 15 for the 16-frame model)
    :param flow_unit: half-size u of the square; None -> :func:`default_flow_unit`
    :param truncate_points: truncate points to integers first (the app's ``int()`` on clicks)
    :param timing: per-track timing dicts or None, parallel to ``tracks`` (see :func:`track_path`)
    :return: ``(drag, mask, warnings)``: drag (2, F, H, W) float32 with ch0 = dx / W and
        ch1 = dy / H; mask (F, H, W) float32, 1 inside the squares; list of warning strings
        (points clamped into the image).
    """
    if flow_unit is None:
        flow_unit = default_flow_unit(height, width)
    u = int(flow_unit)
    if u < 1:
        raise ValueError(f"flow_unit must be >= 1 pixel, got {flow_unit}")
    warnings: list[str] = []
    # float32 canvases like the app (displacements are computed in float64, then stored).
    drag = torch.zeros(2, num_frames, height, width, dtype=torch.float32)
    mask = torch.zeros(num_frames, height, width, dtype=torch.float32)
    for index, track in enumerate(tracks):
        p = _clean_track(track, index, height, width, warnings, truncate_points)
        if p.shape[0] == 1:
            # A single click is an anchor drifting 1 px diagonally by the last frame (app behaviour).
            p = np.concatenate([p, p + 1.0], axis=0)
        path = track_path(p, num_frames + 1, timing[index] if timing and index < len(timing) else None)
        x0, y0 = path[0]
        rows = slice(max(int(y0) - u, 0), int(y0) + u)
        cols = slice(max(int(x0) - u, 0), int(x0 + u))
        for i in range(num_frames):
            dx, dy = path[i + 1] - path[0]
            drag[0, i, rows, cols] = float(dx)
            drag[1, i, rows, cols] = float(dy)
            mask[i, rows, cols] = 1.0
    drag[0] /= width
    drag[1] /= height
    return drag, mask, warnings
