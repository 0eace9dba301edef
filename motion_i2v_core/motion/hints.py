"""Motion hints: drag tracks + motion brush, as drawn by the artist.

Sources:
* the editor widget's JSON value (format v1, see :func:`parse_widget_json`),
* KJNodes' spline editor ``coord_str`` (:func:`parse_coord_str`),
* a ComfyUI MASK used as the brush (:meth:`MotionHints.from_mask`).

All coordinates are in the hint image's pixel space (``width x height``; x right, y down).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

WIDGET_FORMAT_VERSION = 1
MAX_SIZE = 16384
BRUSH_MODES = ("paint", "erase")


@dataclass
class MotionHints:
    """Tracks and movable (painted) mask in hint-image pixels.

    :param tracks: list of (n, 2) float64 arrays of (x, y) points; n == 1 is a static anchor
    :param movable_mask: (height, width) float {0, 1} tensor, 1 = painted = may move;
        None = nothing painted = everything movable
    :param brush_strokes: the strokes the mask was rasterised from (kept for round trips)
    :param warnings: problems that were repaired (e.g. clamped points), for the user
    """

    tracks: list = field(default_factory=list)
    movable_mask: torch.Tensor | None = None
    width: int = 0
    height: int = 0
    warnings: list = field(default_factory=list)
    brush_strokes: list = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.tracks and self.movable_mask is None

    @classmethod
    def from_mask(cls, mask, tracks=None) -> "MotionHints":
        """Brush from a mask (ComfyUI MASK (H,W) or (1,H,W), 1 = may move)."""
        m = torch.as_tensor(mask).float()
        if m.ndim == 3 and m.shape[0] == 1:
            m = m[0]
        if m.ndim != 2:
            raise ValueError(f"mask must be (H, W) or (1, H, W), got shape {tuple(m.shape)}")
        h, w = m.shape
        movable = (m > 0.5).float()
        return cls(
            tracks=[np.asarray(t, np.float64).reshape(-1, 2) for t in (tracks or [])],
            movable_mask=movable if bool(movable.any()) else None,
            width=int(w),
            height=int(h),
        )

    def resized(self, width: int, height: int) -> "MotionHints":
        """Same hints in a ``width x height`` pixel space (plain per-axis scaling, no crop)."""
        sx, sy = width / self.width, height / self.height
        tracks = [np.asarray(t, np.float64) * np.array([sx, sy]) for t in self.tracks]
        mask = self.movable_mask
        if mask is not None and (height, width) != tuple(mask.shape):
            r = cv2.resize(mask.cpu().float().numpy(), (width, height), interpolation=cv2.INTER_LINEAR)
            mask = torch.from_numpy((r > 0.5).astype(np.float32))
        strokes = [
            {"mode": s["mode"], "radius": s["radius"] * math.sqrt(sx * sy),
             "points": [[x * sx, y * sy] for x, y in s["points"]]}
            for s in self.brush_strokes
        ]
        return MotionHints(tracks, mask, int(width), int(height), list(self.warnings), strokes)

    def to_widget_json(self) -> str:
        """Widget value (format v1). The brush is written from ``brush_strokes`` (a raster-only
        mask, e.g. from :meth:`from_mask`, cannot be expressed as strokes and is left out)."""
        value = {
            "version": WIDGET_FORMAT_VERSION,
            "width": int(self.width),
            "height": int(self.height),
            "brush": [
                {"mode": s["mode"], "radius": _num(s["radius"]), "points": [[_num(x), _num(y)] for x, y in s["points"]]}
                for s in self.brush_strokes
            ],
            "tracks": [[[_num(x), _num(y)] for x, y in np.asarray(t).reshape(-1, 2)] for t in self.tracks],
        }
        return json.dumps(value, separators=(",", ":"))


def _num(v) -> float | int:
    v = float(v)
    return int(v) if v.is_integer() else v


# --------------------------------------------------------------------------------------------
# Widget JSON (format v1)
# --------------------------------------------------------------------------------------------

def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _point(v, path: str) -> list[float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2 or not all(_is_number(c) for c in v):
        raise ValueError(f"{path}: expected a point [x, y] of two finite numbers, got {v!r}")
    return [float(v[0]), float(v[1])]


def _points(v, path: str, what: str) -> list[list[float]]:
    if not isinstance(v, (list, tuple)) or len(v) == 0:
        raise ValueError(f"{path}: expected {what}: a non-empty list of [x, y] points, got {v!r}")
    return [_point(p, f"{path}[{j}]") for j, p in enumerate(v)]


def _size(value: dict, key: str) -> int:
    v = value.get(key)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= MAX_SIZE:
        raise ValueError(f"{key}: expected a positive integer <= {MAX_SIZE} (image size in pixels), got {v!r}")
    return v


def parse_widget_json(value) -> MotionHints:
    """Parse the editor widget value (format v1; a JSON string or an already decoded dict).

    ``""``, ``"{}"``, ``None`` and ``{}`` mean "no hints". Every error is a ValueError naming the
    field path (e.g. ``tracks[1][2]``) and what was expected.
    """
    if value is None:
        return MotionHints()
    if isinstance(value, str):
        if not value.strip():
            return MotionHints()
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"motion hints: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(value, dict):
        raise ValueError(f"motion hints: expected a JSON object, got {type(value).__name__}")
    if not value:
        return MotionHints()
    version = value.get("version")
    if version != WIDGET_FORMAT_VERSION or isinstance(version, bool):
        raise ValueError(f"version: expected {WIDGET_FORMAT_VERSION}, got {version!r} (unknown motion-hints format)")
    width = _size(value, "width")
    height = _size(value, "height")

    brush = value.get("brush", [])
    if brush is None:
        brush = []
    if not isinstance(brush, list):
        raise ValueError(f"brush: expected a list of strokes, got {type(brush).__name__}")
    strokes = []
    for i, s in enumerate(brush):
        path = f"brush[{i}]"
        if not isinstance(s, dict):
            raise ValueError(f"{path}: expected a stroke object {{mode, radius, points}}, got {s!r}")
        mode = s.get("mode")
        if mode not in BRUSH_MODES:
            raise ValueError(f"{path}.mode: expected 'paint' or 'erase', got {mode!r}")
        radius = s.get("radius")
        if not _is_number(radius) or radius <= 0:
            raise ValueError(f"{path}.radius: expected a positive number of pixels, got {radius!r}")
        pts = _points(s.get("points"), f"{path}.points", "the stroke")
        strokes.append({"mode": mode, "radius": float(radius), "points": pts})

    tracks_in = value.get("tracks", [])
    if tracks_in is None:
        tracks_in = []
    if not isinstance(tracks_in, list):
        raise ValueError(f"tracks: expected a list of tracks, got {type(tracks_in).__name__}")
    tracks = [np.asarray(_points(t, f"tracks[{i}]", "a track"), np.float64) for i, t in enumerate(tracks_in)]

    movable = None
    if strokes:
        m = rasterize_brush(strokes, width, height)
        if bool(m.any()):
            movable = m
    return MotionHints(tracks, movable, width, height, [], strokes)


def rasterize_brush(strokes, width: int, height: int) -> torch.Tensor:
    """Rasterise brush strokes in order (paint -> 1, erase -> 0) as round-capped polylines.

    Each segment is a line of thickness ``2r + 1`` plus a disc of radius ``r`` at every point
    (round caps and joins; a one-point stroke is a disc).
    :return: (height, width) float32 {0, 1}
    """
    canvas = np.zeros((height, width), np.uint8)
    for s in strokes:
        color = 1 if s["mode"] == "paint" else 0
        r = max(int(round(float(s["radius"]))), 0)
        pts = [(int(round(x)), int(round(y))) for x, y in s["points"]]
        for a, b in zip(pts[:-1], pts[1:]):
            cv2.line(canvas, a, b, color, thickness=2 * r + 1, lineType=cv2.LINE_8)
        for p in pts:
            cv2.circle(canvas, p, r, color, thickness=-1, lineType=cv2.LINE_8)
    return torch.from_numpy(canvas.astype(np.float32))


# --------------------------------------------------------------------------------------------
# KJNodes coord_str
# --------------------------------------------------------------------------------------------

def _coord_point(p, path: str) -> list[float]:
    if not isinstance(p, dict) or "x" not in p or "y" not in p:
        raise ValueError(f"{path}: expected an object {{\"x\": .., \"y\": ..}}, got {p!r}")
    x, y = p["x"], p["y"]
    if not (_is_number(x) and _is_number(y)):
        raise ValueError(f"{path}: x and y must be finite numbers, got {p!r}")
    return [float(x), float(y)]


def parse_coord_str(coord_str: str, width: int | None = None, height: int | None = None) -> list[np.ndarray]:
    """Tracks from KJNodes' spline-editor ``coord_str``.

    Accepts a JSON list of ``{"x": .., "y": ..}`` (one track) or a list of such lists (several
    tracks). Coordinates are in the editor's pixel space (``width x height``, used only to check
    that the size is valid). Returns a list of (n, 2) float64 arrays.
    """
    if width is not None and (not isinstance(width, int) or width <= 0):
        raise ValueError(f"width: expected a positive integer, got {width!r}")
    if height is not None and (not isinstance(height, int) or height <= 0):
        raise ValueError(f"height: expected a positive integer, got {height!r}")
    if coord_str is None or not str(coord_str).strip():
        return []
    try:
        data = json.loads(coord_str)
    except json.JSONDecodeError:
        try:
            # Some workflows carry a Python repr (single quotes) instead of JSON.
            data = json.loads(str(coord_str).replace("'", '"'))
        except json.JSONDecodeError as e:
            raise ValueError(f"coord_str: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, list):
        raise ValueError(f"coord_str: expected a list of {{x, y}} points or a list of such lists, got {type(data).__name__}")
    if not data:
        return []
    if all(isinstance(p, dict) for p in data):
        data = [data]
    tracks = []
    for i, t in enumerate(data):
        if not isinstance(t, list) or not t:
            raise ValueError(f"coord_str[{i}]: expected a non-empty list of {{x, y}} points, got {t!r}")
        tracks.append(np.asarray([_coord_point(p, f"coord_str[{i}][{j}]") for j, p in enumerate(t)], np.float64))
    return tracks
