"""Camera moves -> dense pixel flow, by reprojecting every pixel through a pinhole camera.

Camera semantics throughout (the names of ComfyUI's camera presets): the *camera* pans, rolls or
moves; the picture moves the other way. Coordinates are pixel indices (x right, y down), the optical
centre is the image centre ``((W - 1) / 2, (H - 1) / 2)``, the focal length comes from the
horizontal field of view: ``f = (W / 2) / tan(fov / 2)``.

Each pixel ``p`` with distance ``Z`` (1 = the nearest thing; a flat scene when no depth map is
given) is lifted to ``X = Z * ((p - c) / f, 1)``. At progress ``t`` (eased, 0..1) the camera sits at
``C = t * (pan_right * W / f, pan_down * H / f, dolly)``, is rolled by ``t * rotate`` degrees
clockwise and its focal length is scaled by ``zoom(t)``; the pixel lands at

    p' = c + s * f * R(-theta) (X - C)_xy / (X - C)_z

and the flow is ``p' - p``. Consequences (tested): a pan moves content at distance Z by
``pan * W / Z`` pixels (the whole width times ``pan`` for the nearest content, or for everything
when no depth is given), a zoom is radial and linear in the distance from the centre whatever the
depth, a roll keeps distances from the centre, and a dolly magnifies near things more than far ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from motion_i2v_core.motion.easing import progress

MAX_DOLLY = 0.9  # the camera must stay in front of the nearest content (distance 1)


@dataclass(frozen=True)
class CameraMove:
    """The whole move, reached at the last frame.

    :param pan_right: sideways camera move; the nearest content shifts left by this fraction of the
        width (negative = pan left).
    :param pan_down: vertical camera move, fraction of the height (negative = pan up).
    :param zoom_in: focal-length change; 0.5 = magnify 1.5x, -0.5 = zoom out to 1 / 1.5.
    :param rotate_clockwise: camera roll in degrees (negative = anticlockwise); the picture turns
        the other way.
    :param dolly_in: camera moves forward by this fraction of the nearest distance (negative = back).
    """

    pan_right: float = 0.0
    pan_down: float = 0.0
    zoom_in: float = 0.0
    rotate_clockwise: float = 0.0
    dolly_in: float = 0.0

    def check(self) -> None:
        for name in ("pan_right", "pan_down", "zoom_in", "rotate_clockwise", "dolly_in"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"camera {name} must be a finite number, got {getattr(self, name)}")
        for name in ("pan_right", "pan_down"):
            if abs(getattr(self, name)) > 2:
                raise ValueError(f"camera {name} {getattr(self, name)} is out of range; use -2 to 2 (image sizes)")
        if not -0.9 <= self.zoom_in <= 9:
            raise ValueError(f"camera zoom_in {self.zoom_in} is out of range; use -0.9 (far out) to 9 (10x in)")
        if abs(self.rotate_clockwise) > 360:
            raise ValueError(f"camera rotation {self.rotate_clockwise} degrees is out of range; use -360 to 360")
        if not -4 <= self.dolly_in <= MAX_DOLLY:
            raise ValueError(
                f"camera dolly_in {self.dolly_in} is out of range; use -4 to {MAX_DOLLY} (the camera must stay in "
                "front of the nearest content, at distance 1)"
            )

    def zoom_factor(self, t: torch.Tensor) -> torch.Tensor:
        """Magnification at progress t: geometric, so a zoom keeps an even pace."""
        end = 1 + self.zoom_in if self.zoom_in >= 0 else 1 / (1 - self.zoom_in)
        return torch.as_tensor(end, dtype=torch.float64) ** t


# ComfyUI's camera preset names (WanCameraEmbedding) with a default amount each.
PRESETS = {
    "Static": CameraMove(),
    "Pan Up": CameraMove(pan_down=-0.15),
    "Pan Down": CameraMove(pan_down=0.15),
    "Pan Left": CameraMove(pan_right=-0.15),
    "Pan Right": CameraMove(pan_right=0.15),
    "Zoom In": CameraMove(zoom_in=0.3),
    "Zoom Out": CameraMove(zoom_in=-0.3),
    "Anti Clockwise (ACW)": CameraMove(rotate_clockwise=-15.0),
    "ClockWise (CW)": CameraMove(rotate_clockwise=15.0),
}


def focal_length(width: int, fov_degrees: float) -> float:
    if not 1 <= fov_degrees <= 170:
        raise ValueError(f"field of view {fov_degrees} degrees is out of range; use 1 to 170")
    return (width / 2) / math.tan(math.radians(fov_degrees) / 2)


def camera_flow(
    move: CameraMove,
    height: int,
    width: int,
    num_frames: int,
    distance: torch.Tensor | None = None,
    fov_degrees: float = 60.0,
    easing: str = "linear",
) -> torch.Tensor:
    """Flow f(0 -> i) of every frame for a camera move (see the module docstring for the model).

    :param distance: (height, width) camera distances >= 1 (``depth.depth_to_distance``); None = a
        flat scene at distance 1.
    :return: (num_frames, 2, height, width) float32 pixels, frame 0 zero.
    """
    move.check()
    f = focal_length(width, fov_degrees)
    t = progress(num_frames, easing)
    if distance is None:
        z = torch.ones(height, width, dtype=torch.float64)
    else:
        z = torch.as_tensor(distance, dtype=torch.float64)
        if tuple(z.shape) != (height, width):
            raise ValueError(f"distance map is {tuple(z.shape)}, expected ({height}, {width})")
        if not bool(torch.isfinite(z).all()) or float(z.min()) < 1 - 1e-9:
            raise ValueError("distances must be finite and >= 1 (1 = the nearest content)")
    cx, cy = (width - 1) / 2, (height - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    # Normalised image coordinates n = (p - c) / f; the pixel's point is X = z * (n, 1).
    nx, ny = (xs - cx) / f, (ys - cy) / f
    flows = []
    for ti in t.tolist():
        tx, ty, tz = ti * move.pan_right * width / f, ti * move.pan_down * height / f, ti * move.dolly_in
        # (X - C)_xy / (X - C)_z = n + e, written so that e is exactly 0 when the camera does not move.
        ex, ey = (nx * tz - tx) / (z - tz), (ny * tz - ty) / (z - tz)
        # Camera rolled clockwise by theta: world points turn by -theta in its image.
        theta = -math.radians(ti * move.rotate_clockwise)
        s = float(move.zoom_factor(torch.tensor(ti, dtype=torch.float64)))
        a, b = s * math.cos(theta), s * math.sin(theta)
        # p' - p = f * ((s R - I) n + s R e)
        flows.append(f * torch.stack([(a - 1) * nx - b * ny + a * ex - b * ey,
                                      b * nx + (a - 1) * ny + b * ex + a * ey]))
    return torch.stack(flows).float()
