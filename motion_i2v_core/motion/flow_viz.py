"""Flow visualisation for previews: colour-wheel images, arrow overlays and trajectory overlays.

Flow is in pixels, ch0 = dx (+right), ch1 = dy (+down). Images are float RGB in [0, 1], laid out
(H, W, 3) as ComfyUI IMAGE frames. Functions accept torch tensors or numpy arrays and return float32
torch tensors on the CPU.

Colour convention (Middlebury / Baker et al. colour wheel): hue = direction, saturation = magnitude
relative to the normalising radius, zero flow = white. Going clockwise on screen, right (red) ->
down (orange/yellow) -> left (cyan/blue) -> up (blue/magenta). Flow beyond the normalising radius is
drawn at full saturation and darkened; non-finite flow is black.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence, Union

import cv2
import numpy as np
import torch

__all__ = ["color_wheel", "flow_to_color", "draw_flow_arrows", "draw_tracks", "track_color"]

ArrayLike = Union[torch.Tensor, np.ndarray]

# Number of hue steps between the six primary/secondary colours of the wheel (Baker et al. 2011):
# red->yellow, yellow->green, green->cyan, cyan->blue, blue->magenta, magenta->red. Unequal steps
# make perceived hue changes roughly uniform.
_WHEEL_SEGMENTS = (15, 6, 4, 11, 13, 6)


def color_wheel() -> np.ndarray:
    """The (55, 3) float32 colour table in [0, 1], starting at red and going through yellow, green,
    cyan, blue and magenta back towards red."""
    anchors = np.array(
        [[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1], [1, 0, 0]], dtype=np.float64
    )
    rows = []
    for i, steps in enumerate(_WHEEL_SEGMENTS):
        t = np.arange(steps, dtype=np.float64)[:, None] / steps
        rows.append(anchors[i] * (1 - t) + anchors[i + 1] * t)
    return np.concatenate(rows).astype(np.float32)


_FINE_STEPS = 32  # LUT entries per wheel colour: nearest lookup differs from linear by < 1/255


@functools.lru_cache(maxsize=1)
def _fine_wheel() -> torch.Tensor:
    """The colour wheel linearly interpolated to a fine table over one full turn, (K, 3) float32.

    Entry 0 is the wheel's first colour (red, angle 'right'); the last entry is the wheel's last
    colour, as the original positions run from 0 to ncols - 1 (ending just short of red).
    """
    wheel = torch.from_numpy(color_wheel()).double()
    ncols = wheel.shape[0]
    pos = torch.linspace(0, ncols - 1, (ncols - 1) * _FINE_STEPS + 1, dtype=torch.float64)
    k0 = pos.floor().long().clamp_(max=ncols - 2)
    frac = (pos - k0).unsqueeze(1)
    return (wheel[k0] * (1 - frac) + wheel[k0 + 1] * frac).float()


def _to_numpy(a: ArrayLike, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().to("cpu", torch.float32).numpy()
    if isinstance(a, np.ndarray):
        return a.astype(np.float32, copy=False)
    raise ValueError(f"{name} must be a torch tensor or numpy array, got {type(a).__name__}")


def flow_to_color(flow: ArrayLike, max_radius: Optional[float] = None) -> torch.Tensor:
    """Colour-code flow with the Middlebury colour wheel.

    :param flow: (F, 2, H, W) or (2, H, W) displacement in pixels.
    :param max_radius: magnitude (pixels) that maps to full saturation. ``None``: the largest finite
        magnitude over all frames, so every frame shares one scale; pass a fixed value to compare
        different flows.
    :return: (F, H, W, 3) (or (H, W, 3)) float32 RGB in [0, 1]; zero flow is white.
    """
    if isinstance(flow, np.ndarray):
        flow = torch.from_numpy(flow)
    if not isinstance(flow, torch.Tensor):
        raise ValueError(f"flow must be a torch tensor or numpy array, got {type(flow).__name__}")
    fl = flow.detach().to("cpu", torch.float32)
    single = fl.dim() == 3
    if single:
        fl = fl[None]
    if fl.dim() != 4 or fl.shape[1] != 2:
        raise ValueError(f"flow must have shape (F, 2, H, W) or (2, H, W), got {tuple(fl.shape)}")
    finite = torch.isfinite(fl).all(dim=1)
    u = torch.where(finite, fl[:, 0], 0.0)
    v = torch.where(finite, fl[:, 1], 0.0)
    mag = torch.hypot(u, v)
    if max_radius is None:
        max_radius = float(mag.max()) if mag.numel() else 0.0
    elif not (np.isfinite(max_radius) and max_radius > 0):
        raise ValueError(f"max_radius must be a positive number of pixels, got {max_radius!r}")
    rad = (mag / (max_radius if max_radius > 0 else 1.0)).unsqueeze(-1)

    lut = _fine_wheel()
    # Angle measured so that +x (right) lands on red and the hue runs through yellow for +y (down):
    # atan2(-v, -u)/pi is 1 for right, -0.5 for down, 0 for left, 0.5 for up; mapped to [0, 1].
    pos = torch.atan2(-v, -u).div_(2 * np.pi).add_(0.5)
    idx = pos.mul_(lut.shape[0] - 1).round_().long().clamp_(0, lut.shape[0] - 1)
    col = lut.index_select(0, idx.reshape(-1)).view(*idx.shape, 3)
    # Inside the radius: blend from white (no motion) to the full hue (1 - r*(1 - c));
    # outside: full hue, darkened.
    inside = rad <= 1
    col = torch.where(inside, (col - 1).mul_(rad).add_(1), col * 0.75)
    out = col.mul_(finite.unsqueeze(-1)).clamp_(0, 1)
    return out[0] if single else out


class _Canvas:
    """A uint8 copy of a float image for cv2 drawing; ``result()`` replaces only the pixels the
    drawing changed, so untouched pixels keep their exact float values."""

    def __init__(self, image: ArrayLike):
        img = _to_numpy(image, "image")
        self.chw = img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3
        if self.chw:
            img = img.transpose(1, 2, 0)
        if img.ndim != 3 or img.shape[-1] != 3:
            raise ValueError(
                f"image must have shape (H, W, 3) or (3, H, W) with values in [0, 1], got {tuple(img.shape)}"
            )
        self.original = np.array(img, dtype=np.float32)
        self.before = (np.clip(np.nan_to_num(self.original), 0, 1) * 255 + 0.5).astype(np.uint8)
        self.pixels = self.before.copy()  # draw on this

    def result(self) -> torch.Tensor:
        changed = (self.pixels != self.before).any(axis=-1, keepdims=True)
        out = np.where(changed, self.pixels.astype(np.float32) / 255.0, self.original)
        t = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))
        return t.permute(2, 0, 1).contiguous() if self.chw else t


def _color255(color: Sequence[float]) -> tuple[int, int, int]:
    if len(color) != 3:
        raise ValueError(f"colour must be an (r, g, b) triple in [0, 1], got {color!r}")
    return tuple(int(round(float(np.clip(c, 0, 1)) * 255)) for c in color)


def draw_flow_arrows(
    image: ArrayLike,
    flow: ArrayLike,
    step: int = 16,
    scale: float = 1.0,
    color: Sequence[float] = (1.0, 1.0, 0.0),
    thickness: int = 1,
    min_magnitude: float = 0.5,
    tip_length: float = 0.3,
) -> torch.Tensor:
    """Draw one arrow per ``step`` x ``step`` cell: from the cell centre along the cell's mean flow.

    :param image: (H, W, 3) (or (3, H, W)) float RGB in [0, 1]; not modified.
    :param flow: (2, H, W) displacement in pixels for this image.
    :param scale: arrow length per pixel of flow.
    :param min_magnitude: cells whose mean flow (in pixels, before ``scale``) is shorter get no arrow.
    :return: a new float32 image in the input layout; pixels not drawn on keep their values.
    """
    canvas = _Canvas(image)
    img = canvas.pixels
    fl = _to_numpy(flow, "flow")
    h, w = img.shape[:2]
    if fl.shape != (2, h, w):
        raise ValueError(f"flow must have shape (2, {h}, {w}) to match the image, got {tuple(fl.shape)}")
    if step < 1:
        raise ValueError(f"arrow step must be >= 1 pixel, got {step}")
    fl = np.where(np.isfinite(fl), fl, 0.0)
    rgb = _color255(color)
    thickness = max(1, int(thickness))
    for y0 in range(0, h, step):
        for x0 in range(0, w, step):
            cell = fl[:, y0 : y0 + step, x0 : x0 + step]
            dx, dy = float(cell[0].mean()), float(cell[1].mean())
            if np.hypot(dx, dy) < min_magnitude:
                continue
            cx = x0 + (min(step, w - x0) - 1) / 2
            cy = y0 + (min(step, h - y0) - 1) / 2
            start = (int(round(cx)), int(round(cy)))
            end = (int(round(cx + dx * scale)), int(round(cy + dy * scale)))
            if start == end:
                continue
            cv2.arrowedLine(img, start, end, rgb, thickness, cv2.LINE_AA, 0, tip_length)
    return canvas.result()


def track_color(index: int) -> tuple[float, float, float]:
    """A distinct, saturated colour for track ``index`` (golden-ratio hue steps)."""
    hue = (index * 0.618033988749895) % 1.0
    r, g, b = cv2.cvtColor(np.array([[[hue * 180, 230, 255]]], dtype=np.uint8), cv2.COLOR_HSV2RGB)[0, 0]
    return (r / 255.0, g / 255.0, b / 255.0)


def draw_tracks(
    image: ArrayLike,
    tracks: Sequence[ArrayLike],
    colors: Optional[Sequence[Sequence[float]]] = None,
    thickness: int = 2,
    point_radius: int = 3,
    numbered: bool = True,
    arrow: bool = True,
) -> torch.Tensor:
    """Overlay drag trajectories: a polyline per track, an arrow head on its last segment, a dot on
    every point, and the track number next to its start point.

    :param tracks: list of (n, 2) point arrays in image pixels (x, y); a single point (a static
        anchor) is drawn as a ringed dot.
    :param colors: one (r, g, b) in [0, 1] per track; default ``track_color(i)``.
    :return: a new float32 image in the input layout; pixels not drawn on keep their values.
    """
    canvas = _Canvas(image)
    img = canvas.pixels
    if colors is not None and len(colors) < len(tracks):
        raise ValueError(f"got {len(colors)} colours for {len(tracks)} tracks; give one colour per track")
    thickness = max(1, int(thickness))
    font_scale = max(0.35, min(img.shape[:2]) / 800)
    for i, track in enumerate(tracks):
        pts = _to_numpy(track, f"track {i}").reshape(-1, 2)
        if pts.shape[0] == 0:
            continue
        if not np.isfinite(pts).all():
            raise ValueError(f"track {i} contains non-finite coordinates")
        rgb = _color255(colors[i] if colors is not None else track_color(i))
        ipts = np.round(pts).astype(np.int32)
        if len(ipts) > 1:
            cv2.polylines(img, [ipts.reshape(-1, 1, 2)], False, rgb, thickness, cv2.LINE_AA)
            if arrow:
                # Arrow head on the last segment that has non-zero length.
                for j in range(len(ipts) - 1, 0, -1):
                    if tuple(ipts[j]) != tuple(ipts[j - 1]):
                        seg = float(np.hypot(*(ipts[j] - ipts[j - 1])))
                        tip = min(0.9, 4.0 * (thickness + 2) / max(seg, 1.0))
                        cv2.arrowedLine(img, tuple(map(int, ipts[j - 1])), tuple(map(int, ipts[j])), rgb,
                                        thickness, cv2.LINE_AA, 0, tip)
                        break
        else:
            cv2.circle(img, tuple(map(int, ipts[0])), point_radius + 3, rgb, max(1, thickness // 2), cv2.LINE_AA)
        for p in ipts:
            cv2.circle(img, tuple(map(int, p)), point_radius, rgb, -1, cv2.LINE_AA)
        if numbered:
            org = (int(ipts[0][0]) + point_radius + 2, int(ipts[0][1]) - point_radius - 2)
            label = str(i + 1)
            # Dark outline first so the number stays readable on any background.
            cv2.putText(img, label, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(img, label, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, rgb, 1, cv2.LINE_AA)
    return canvas.result()
