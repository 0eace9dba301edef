"""Trajectory interchange with KJNodes' spline editor and ComfyUI's WanTrackToVideo (``coord_str``).

``coord_str`` is JSON: a list of ``{"x": .., "y": ..}`` points (one track) or a list of such lists,
in the pixels of the canvas it was drawn on. KJNodes' canvas is often not the image size (a 512x512
canvas over a 512x320 image), and the canvas shows the image stretched to fill it, so coordinates
map to the image by per-axis scaling. Every rescale and every point that falls outside is reported
as a note, for the node's UI.
"""

from __future__ import annotations

import json

import numpy as np

from motion_i2v_core.motion.hints import parse_coord_str
from motion_i2v_core.motion.trajectories import resample_track


def canvas_tracks(coord_str: str, width: int, height: int, canvas_width: int = 0,
                  canvas_height: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """Tracks of ``coord_str`` drawn on a ``canvas_width x canvas_height`` canvas (0 = the image
    size), in ``width x height`` image pixels. :return: (tracks, notes)."""
    cw, ch = canvas_width or width, canvas_height or height
    if cw < 1 or ch < 1:
        raise ValueError(f"coord_str canvas size must be positive, got {cw}x{ch}")
    tracks = parse_coord_str(coord_str, cw, ch)
    notes = []
    sx, sy = width / cw, height / ch
    if tracks and (cw, ch) != (width, height):
        notes.append(f"coord_str: {len(tracks)} track(s) scaled from the {cw}x{ch} canvas to the {width}x{height} "
                     f"image (x * {sx:.4g}, y * {sy:.4g})")
    scaled = []
    for i, t in enumerate(tracks):
        p = t * np.array([sx, sy])
        for j in np.nonzero((p[:, 0] < 0) | (p[:, 0] > width - 1) | (p[:, 1] < 0) | (p[:, 1] > height - 1))[0]:
            x, y = t[j]
            cx, cy = min(max(p[j, 0], 0.0), width - 1.0), min(max(p[j, 1], 0.0), height - 1.0)
            notes.append(f"coord_str track {i} point {int(j)} ({x:g}, {y:g}) is outside the {width}x{height} image; "
                         f"clamped to ({cx:.1f}, {cy:.1f})")
        scaled.append(p)
    return scaled, notes


def tracks_to_coord_str(tracks, width: int, height: int, out_width: int = 0, out_height: int = 0,
                        points_per_track: int = 0) -> str:
    """Our tracks (image pixels of ``width x height``) as a ``coord_str`` in ``out_width x out_height``
    pixels (0 = the same size), each track resampled to ``points_per_track`` points with the same
    PCHIP curve as the drags (0 = as drawn; single points stay single)."""
    ow, oh = out_width or width, out_height or height
    sx, sy = ow / width, oh / height
    out = []
    for t in tracks:
        p = np.asarray(t, np.float64).reshape(-1, 2)
        if points_per_track and len(p) >= 2:
            p = resample_track(p, points_per_track)
        elif points_per_track and len(p) == 1:
            p = np.repeat(p, points_per_track, axis=0)  # an anchor stays put in every frame
        out.append([{"x": round(float(x) * sx, 2), "y": round(float(y) * sy, 2)} for x, y in p])
    return json.dumps(out, separators=(",", ":"))
