"""Depth maps from depth-estimation nodes -> camera distances at the generation size.

Depth nodes (MiDaS, Depth Anything, ZoeDepth previews, ...) output relative *inverse* depth as an
image: near = bright. We normalise the map to [0, 1] and read it as inverse distance, with the
nearest value at distance 1 and the farthest at ``far``:

    1 / Z = 1 / far + d * (1 - 1 / far),   d in [0, 1]   ->   Z in [1, far]

so distances are in units of the nearest thing in the picture (camera moves are expressed in the
same units).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from motion_i2v_core.motion.image_prep import fit_transform

ASPECT_TOLERANCE = 0.02  # relative; depth nodes round sizes to multiples of 14 or 32


def _depth_2d(depth) -> np.ndarray:
    d = depth.detach().cpu().double().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth, np.float64)
    if d.ndim == 4:  # IMAGE batch (B, H, W, C): first image, mean of the colour channels
        d = d[0].mean(axis=-1)
    elif d.ndim == 3:  # MASK batch (B, H, W)
        d = d[0]
    if d.ndim != 2 or d.shape[0] < 2 or d.shape[1] < 2:
        raise ValueError(f"depth map: expected an IMAGE (B, H, W, C) or MASK (B, H, W), got shape {d.shape}")
    return d


def check_aspect(src_height: int, src_width: int, height: int, width: int, what: str, fix: str) -> None:
    """Raise unless ``src`` has the aspect ratio of ``height x width`` (within 2%)."""
    a, b = src_width / src_height, width / height
    if abs(a / b - 1) > ASPECT_TOLERANCE:
        raise ValueError(
            f"{what} is {src_width}x{src_height} (aspect {a:.3f}) but the image is {width}x{height} "
            f"(aspect {b:.3f}); {fix}"
        )


def depth_to_distance(depth, height: int, width: int, far: float = 4.0, invert: bool = False) -> torch.Tensor:
    """Camera distance per target pixel from a near-bright depth map.

    :param depth: IMAGE (B, H0, W0, C), MASK (B, H0, W0) or (H0, W0); fitted to the target with the
        same resize + centre crop as the reference image.
    :param far: distance of the darkest value, in units of the brightest (> 1).
    :param invert: the map is near = dark (e.g. a true distance map); flip it first.
    :return: (height, width) float64 distances in [1, far].
    """
    if not far > 1:
        raise ValueError(f"far distance must be > 1 (units of the nearest depth), got {far}")
    d = _depth_2d(depth)
    if not np.isfinite(d).all():
        raise ValueError("depth map has NaN or infinite values; fix the depth node's output (or disconnect it)")
    lo, hi = float(d.min()), float(d.max())
    if hi - lo < 1e-6:
        raise ValueError(
            "depth map is flat (every pixel has the same value), so it holds no parallax; disconnect it "
            "for a flat scene or check the depth node"
        )
    d = (d - lo) / (hi - lo)
    if invert:
        d = 1 - d
    tf = fit_transform(d.shape[0], d.shape[1], height, width)
    if (tf.resized_height, tf.resized_width) != d.shape:
        d = cv2.resize(d.astype(np.float32), (tf.resized_width, tf.resized_height), interpolation=cv2.INTER_LINEAR)
    d = np.clip(d[tf.offset_y:tf.offset_y + height, tf.offset_x:tf.offset_x + width].astype(np.float64), 0, 1)
    inverse = 1 / far + d * (1 - 1 / far)
    return torch.from_numpy(1 / inverse)
