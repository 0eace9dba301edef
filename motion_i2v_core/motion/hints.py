"""Motion hints: drag tracks + motion brush, as drawn by the artist.

Sources:
* the editor widget's JSON value (format v2, v1 still read, see :func:`parse_widget_json`),
* KJNodes' spline editor ``coord_str`` (:func:`parse_coord_str`),
* a ComfyUI MASK used as the brush (:meth:`MotionHints.from_mask`).

All coordinates are in the hint image's pixel space (``width x height``; x right, y down).

Every reader checks bounds before any work that grows with them (text length, nesting depth,
counts of strokes, tracks and points, radius, coordinate range) and names the limit when one is
exceeded; every failure is a ValueError with the field path and what was expected.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from motion_i2v_core.motion.brush import check_brush_work, rasterize_brush

WIDGET_FORMAT_VERSION = 2    # v2 = v1 + optional per-track "timing"; v1 means "no timing"
READ_FORMAT_VERSIONS = (1, 2)
MAX_FRAME = 10_000           # timing start/end frame indices
TIMING_KEYS = ("start", "end", "ease_in", "ease_out")
MAX_SIZE = 16384
BRUSH_MODES = ("paint", "erase")
# Bounds of what the readers accept. The editor writes far less: a vertex every 0.2 radius, a radius
# up to a quarter of the image, points inside the image.
MAX_JSON_CHARS = 4_000_000
MAX_JSON_DEPTH = 8           # format v1 nests 5 deep, coord_str 3
MAX_STROKES = 5000
MAX_TRACKS = 100
MAX_TRACK_POINTS = 1000
MAX_POINTS = 100_000         # all strokes and tracks together
COORD_MARGIN = 1.0           # points may lie up to one image size outside the image
MAX_COORD = 4 * MAX_SIZE     # the range for coord_str points when no image size is given


@dataclass
class MotionHints:
    """Tracks and movable (painted) mask in hint-image pixels.

    :param tracks: list of (n, 2) float64 arrays of (x, y) points; n == 1 is a static anchor
    :param movable_mask: (height, width) float {0, 1} tensor, 1 = painted = may move;
        None = nothing painted = everything movable
    :param brush_strokes: the strokes the mask was rasterised from (kept for round trips)
    :param warnings: problems that were repaired (e.g. clamped points), for the user
    :param timing: per-track timing, parallel to ``tracks`` (may be shorter): None = the whole clip,
        or ``{"start": frame, "end": frame or None, "ease_in": bool, "ease_out": bool}``
        (see ``trajectories.track_path``)
    """

    tracks: list = field(default_factory=list)
    movable_mask: torch.Tensor | None = None
    width: int = 0
    height: int = 0
    warnings: list = field(default_factory=list)
    brush_strokes: list = field(default_factory=list)
    timing: list = field(default_factory=list)

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
        return MotionHints(tracks, mask, int(width), int(height), list(self.warnings), strokes, list(self.timing))

    def to_widget_json(self) -> str:
        """Widget value (format v2). The brush is written from ``brush_strokes`` (a raster-only
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
        if any(self.timing):
            value["timing"] = [self.timing[i] if i < len(self.timing) else None for i in range(len(self.tracks))]
        return json.dumps(value, separators=(",", ":"))


def _num(v) -> float | int:
    v = float(v)
    return int(v) if v.is_integer() else v


# --------------------------------------------------------------------------------------------
# Bounded JSON reading
# --------------------------------------------------------------------------------------------

def _nesting_depth(text: str) -> int:
    """Deepest bracket nesting of ``text`` (brackets inside strings count too: an upper bound)."""
    b = np.frombuffer(text.encode("utf-8", "replace"), np.uint8)
    step = ((b == ord("[")) | (b == ord("{"))).astype(np.int32) - ((b == ord("]")) | (b == ord("}")))
    return int(np.cumsum(step).max()) if len(step) else 0


def load_json_bounded(text: str, what: str):
    """``json.loads`` after checking length and nesting, so that neither can exhaust the reader."""
    if len(text) > MAX_JSON_CHARS:
        raise ValueError(f"{what}: {len(text):,} characters, over the limit of {MAX_JSON_CHARS:,}")
    depth = _nesting_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{what}: brackets nested {depth} levels deep, over the limit of {MAX_JSON_DEPTH}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (ValueError, RecursionError) as e:  # e.g. an integer of more than 4300 digits
        raise ValueError(f"{what}: not valid JSON ({e})") from None


class _Budget:
    """Counts points across a whole value, raising when MAX_POINTS is exceeded."""

    def __init__(self) -> None:
        self.points = 0

    def take(self, n: int, path: str) -> None:
        self.points += n
        if self.points > MAX_POINTS:
            raise ValueError(f"{path}: more than {MAX_POINTS:,} points in all, over the limit; "
                             f"draw fewer or shorter strokes and tracks")


def _count(items, limit: int, path: str, what: str) -> None:
    if len(items) > limit:
        raise ValueError(f"{path}: {len(items):,} {what}, over the limit of {limit:,}")


def _is_number(v) -> bool:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int too large for a float
        return False


class _Range:
    """The accepted coordinate range: the image and a margin around it."""

    def __init__(self, width: int | None, height: int | None) -> None:
        if width and height:
            mx, my = COORD_MARGIN * width, COORD_MARGIN * height
            self.x, self.y = (-mx, width + mx), (-my, height + my)
            self.why = f"up to one image size around the {width}x{height} image"
        else:
            self.x = self.y = (-MAX_COORD, MAX_COORD)
            self.why = "the accepted range"

    def check(self, x: float, y: float, path: str) -> None:
        for name, v, (lo, hi) in (("x", x, self.x), ("y", y, self.y)):
            if not lo <= v <= hi:
                raise ValueError(f"{path}: {name} = {v:g} is outside {lo:g}..{hi:g} ({self.why})")


# --------------------------------------------------------------------------------------------
# Widget JSON (format v1)
# --------------------------------------------------------------------------------------------

def _point(v, path: str, area: _Range) -> list[float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2 or not all(_is_number(c) for c in v):
        raise ValueError(f"{path}: expected a point [x, y] of two finite numbers, got {_short(v)}")
    x, y = float(v[0]), float(v[1])
    area.check(x, y, path)
    return [x, y]


def _points(v, path: str, what: str, area: _Range, budget: _Budget, limit: int = MAX_POINTS) -> list[list[float]]:
    if not isinstance(v, (list, tuple)) or len(v) == 0:
        raise ValueError(f"{path}: expected {what}: a non-empty list of [x, y] points, got {_short(v)}")
    _count(v, limit, path, "points")
    budget.take(len(v), path)
    return [_point(p, f"{path}[{j}]", area) for j, p in enumerate(v)]


def _short(v, limit: int = 80) -> str:
    """repr(v) cut to ``limit`` characters (never a whole pasted value in a message)."""
    try:
        text = json.dumps(v)
    except (TypeError, ValueError):
        text = type(v).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _size(value: dict, key: str) -> int:
    v = value.get(key)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= MAX_SIZE:
        raise ValueError(f"{key}: expected a positive integer <= {MAX_SIZE} (image size in pixels), got {_short(v)}")
    return v


def _stroke(s, path: str, area: _Range, budget: _Budget, max_radius: int) -> dict:
    if not isinstance(s, dict):
        raise ValueError(f"{path}: expected a stroke object {{mode, radius, points}}, got {_short(s)}")
    mode = s.get("mode")
    if mode not in BRUSH_MODES:
        raise ValueError(f"{path}.mode: expected 'paint' or 'erase', got {_short(mode)}")
    radius = s.get("radius")
    if not _is_number(radius) or radius <= 0:
        raise ValueError(f"{path}.radius: expected a positive number of pixels, got {_short(radius)}")
    if radius > max_radius:
        raise ValueError(f"{path}.radius: {radius:g} px is over the limit of {max_radius} px "
                         f"(the longer side of the image)")
    pts = _points(s.get("points"), f"{path}.points", "the stroke", area, budget)
    return {"mode": mode, "radius": float(radius), "points": pts}


def _list_field(value: dict, key: str, what: str) -> list:
    items = value.get(key, [])
    if items is None:
        return []
    if not isinstance(items, list):
        raise ValueError(f"{key}: expected a list of {what}, got {type(items).__name__}")
    return items


def _timing(v, path: str) -> dict | None:
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ValueError(f"{path}: expected null or {{start, end, ease_in, ease_out}}, got {_short(v)}")
    extra = sorted(set(v) - set(TIMING_KEYS))
    if extra:
        raise ValueError(f"{path}: unknown key {_short(extra[0])} (expected {', '.join(TIMING_KEYS)})")
    out = {}
    for key in ("start", "end"):
        f = v.get(key, 0 if key == "start" else None)
        if isinstance(f, float) and f.is_integer():
            f = int(f)
        if f is None and key == "end":
            out[key] = None
            continue
        if not isinstance(f, int) or isinstance(f, bool) or not 0 <= f <= MAX_FRAME:
            raise ValueError(f"{path}.{key}: expected a frame index 0..{MAX_FRAME}"
                             f"{' or null (the last frame)' if key == 'end' else ''}, got {_short(f)}")
        out[key] = f
    if out["end"] is not None and out["end"] <= out["start"]:
        raise ValueError(f"{path}: end frame {out['end']} must come after start frame {out['start']}")
    for key in ("ease_in", "ease_out"):
        e = v.get(key, False)
        if not isinstance(e, bool):
            raise ValueError(f"{path}.{key}: expected true or false, got {_short(e)}")
        out[key] = e
    return out


def parse_widget_json(value, rasterize: bool = True) -> MotionHints:
    """Parse the editor widget value (format v2 or v1; a JSON string or an already decoded dict).

    v2 adds an optional ``timing`` list parallel to ``tracks`` (null or
    ``{start, end, ease_in, ease_out}`` per track); v1 has no timing and means exactly what it did.

    ``""``, ``"{}"``, ``None`` and ``{}`` mean "no hints". Every error is a ValueError naming the
    field path (e.g. ``tracks[1][2]``) and what was expected, or the limit that was exceeded.
    :param rasterize: also rasterise the brush at the hint size into ``movable_mask``; False only
        parses and checks (strokes in ``brush_strokes``, ``movable_mask`` None), for validation and
        for callers that rasterise at another size (:func:`build_motion_hints`).
    """
    if value is None:
        return MotionHints()
    if isinstance(value, str):
        if not value.strip():
            return MotionHints()
        value = load_json_bounded(value, "motion hints")
    if not isinstance(value, dict):
        raise ValueError(f"motion hints: expected a JSON object, got {type(value).__name__}")
    if not value:
        return MotionHints()
    version = value.get("version")
    if version not in READ_FORMAT_VERSIONS or isinstance(version, bool):
        raise ValueError(f"version: expected one of {READ_FORMAT_VERSIONS}, got {_short(version)} "
                         f"(unknown motion-hints format)")
    width = _size(value, "width")
    height = _size(value, "height")
    area, budget = _Range(width, height), _Budget()

    brush = _list_field(value, "brush", "strokes")
    _count(brush, MAX_STROKES, "brush", "strokes")
    strokes = [_stroke(s, f"brush[{i}]", area, budget, max(width, height)) for i, s in enumerate(brush)]
    check_brush_work(strokes, width, height)

    tracks_in = _list_field(value, "tracks", "tracks")
    _count(tracks_in, MAX_TRACKS, "tracks", "tracks")
    tracks = [np.asarray(_points(t, f"tracks[{i}]", "a track", area, budget, MAX_TRACK_POINTS), np.float64)
              for i, t in enumerate(tracks_in)]
    timing_in = _list_field(value, "timing", "track timings") if version >= 2 else []
    if version < 2 and "timing" in value:
        raise ValueError("timing: per-track timing needs format version 2 (this value says version 1)")
    if len(timing_in) > len(tracks):
        raise ValueError(f"timing: {len(timing_in)} entries for {len(tracks)} tracks (expected one per track)")
    timing = [_timing(t, f"timing[{i}]") for i, t in enumerate(timing_in)]

    movable = None
    if strokes and rasterize:
        m = rasterize_brush(strokes, width, height)
        if bool(m.any()):
            movable = m
    return MotionHints(tracks, movable, width, height, [], strokes, timing)


# --------------------------------------------------------------------------------------------
# KJNodes coord_str
# --------------------------------------------------------------------------------------------

def _coord_point(p, path: str, area: _Range) -> list[float]:
    if not isinstance(p, dict) or "x" not in p or "y" not in p:
        raise ValueError(f"{path}: expected an object {{\"x\": .., \"y\": ..}}, got {_short(p)}")
    x, y = p["x"], p["y"]
    if not (_is_number(x) and _is_number(y)):
        raise ValueError(f"{path}: x and y must be finite numbers, got {_short(p)}")
    area.check(float(x), float(y), path)
    return [float(x), float(y)]


def parse_coord_str(coord_str: str, width: int | None = None, height: int | None = None) -> list[np.ndarray]:
    """Tracks from KJNodes' spline-editor ``coord_str``.

    Accepts a JSON list of ``{"x": .., "y": ..}`` (one track) or a list of such lists (several
    tracks). Coordinates are in the editor's pixel space (``width x height``: with a size, points
    may lie up to one image size outside it). Returns a list of (n, 2) float64 arrays.
    """
    if width is not None and (not isinstance(width, int) or width <= 0):
        raise ValueError(f"width: expected a positive integer, got {width!r}")
    if height is not None and (not isinstance(height, int) or height <= 0):
        raise ValueError(f"height: expected a positive integer, got {height!r}")
    if coord_str is None or not str(coord_str).strip():
        return []
    text = str(coord_str)
    try:
        data = load_json_bounded(text, "coord_str")
    except ValueError as first:
        if "not valid JSON" not in str(first):
            raise
        # Some workflows carry a Python repr (single quotes) instead of JSON.
        try:
            data = load_json_bounded(text.replace("'", '"'), "coord_str")
        except ValueError:
            raise first from None
    if not isinstance(data, list):
        raise ValueError(f"coord_str: expected a list of {{x, y}} points or a list of such lists, got {type(data).__name__}")
    if not data:
        return []
    if all(isinstance(p, dict) for p in data):
        data = [data]
    _count(data, MAX_TRACKS, "coord_str", "tracks")
    area, budget = _Range(width, height), _Budget()
    tracks = []
    for i, t in enumerate(data):
        path = f"coord_str[{i}]"
        if not isinstance(t, list) or not t:
            raise ValueError(f"{path}: expected a non-empty list of {{x, y}} points, got {_short(t)}")
        _count(t, MAX_TRACK_POINTS, path, "points")
        budget.take(len(t), path)
        tracks.append(np.asarray([_coord_point(p, f"{path}[{j}]", area) for j, p in enumerate(t)], np.float64))
    return tracks


# --------------------------------------------------------------------------------------------
# Drawn hints at the image size (Draw Motion Brush)
# --------------------------------------------------------------------------------------------

def build_motion_hints(hints_json, width: int, height: int, mask=None, coord_str=None) -> MotionHints:
    """MotionHints at the image size from the widget JSON, a starting mask and KJNodes tracks.

    The widget's coordinates are scaled from its recorded image size to ``width x height``. The
    brush is rasterised once, at the image size, stroke by stroke on top of ``mask`` (paint -> 1,
    erase -> 0), so the result is the same whatever size the editor drew at.
    :param mask: (h, w) float, 1 = may move, any size (resized to the image), or None
    """
    hints = parse_widget_json(hints_json, rasterize=False)
    if hints.width and hints.height and (hints.width, hints.height) != (width, height):
        hints = hints.resized(width, height)
    tracks = list(hints.tracks)
    if coord_str is not None and str(coord_str).strip():
        extra = parse_coord_str(coord_str, width, height)
        _count(tracks + extra, MAX_TRACKS, "tracks + coord_str", "tracks")
        tracks += extra
    base = None if mask is None else _mask_at(mask, width, height)
    if hints.brush_strokes:
        movable = rasterize_brush(hints.brush_strokes, width, height, base=base)
    else:
        movable = base if base is not None else torch.zeros(height, width)
    warnings = list(hints.warnings) + _outside_warnings(tracks, width, height)
    return MotionHints(
        tracks=tracks,
        movable_mask=movable if bool(movable.any()) else None,
        width=width,
        height=height,
        warnings=warnings,
        brush_strokes=hints.brush_strokes,
        timing=list(hints.timing),
    )


def _mask_at(mask: torch.Tensor, width: int, height: int) -> torch.Tensor:
    m = torch.as_tensor(mask).float()
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if tuple(m.shape) != (height, width):
        m = torch.nn.functional.interpolate(m[None, None], size=(height, width), mode="bilinear",
                                            align_corners=False)[0, 0]
    return (m > 0.5).float()


def _outside(track, width: int, height: int) -> np.ndarray:
    p = np.asarray(track).reshape(-1, 2)
    return (p[:, 0] < 0) | (p[:, 0] > width) | (p[:, 1] < 0) | (p[:, 1] > height)


def _outside_warnings(tracks, width: int, height: int) -> list[str]:
    return [f"track {i} has points outside the {width}x{height} image; they will be clamped to the border"
            for i, t in enumerate(tracks) if _outside(t, width, height).any()]


def clamped_point_count(tracks, width: int, height: int) -> int:
    """How many track points lie outside the image (and will be clamped to its border)."""
    return int(sum(_outside(t, width, height).sum() for t in tracks))


MAX_SUMMARY_WARNINGS = 5


def hints_summary(hints: MotionHints) -> dict:
    """What the backend made of the hints, for the editor and for tests: counts, track ends and
    clamps, never every point (the value goes to the browser over the websocket; JSON-safe, small:
    at most MAX_TRACKS tracks and MAX_SUMMARY_WARNINGS warnings)."""
    movable = hints.movable_mask
    tracks = [np.asarray(t).reshape(-1, 2) for t in hints.tracks]
    warnings = list(hints.warnings)
    if len(warnings) > MAX_SUMMARY_WARNINGS:
        warnings = warnings[:MAX_SUMMARY_WARNINGS] + [f"... and {len(warnings) - MAX_SUMMARY_WARNINGS} more"]
    return {
        "width": hints.width,
        "height": hints.height,
        "track_count": len(tracks),
        "track_points": [len(t) for t in tracks],
        "track_ends": [[[round(float(x), 2), round(float(y), 2)] for x, y in (t[0], t[-1])] for t in tracks],
        "stroke_count": len(hints.brush_strokes),
        "brush_points": sum(len(s["points"]) for s in hints.brush_strokes),
        "clamped_points": clamped_point_count(tracks, hints.width, hints.height) if hints.width else 0,
        "movable_fraction": 1.0 if movable is None else round(float(movable.mean()), 5),
        "warnings": warnings,
    }
