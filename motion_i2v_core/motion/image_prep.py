"""Fit a reference image (and its hints) to the generation size: resize to cover, centre crop.

Follows the official app (stage1_spec.md section 7): scale by ``s = max(W / w0, H / h0)``, resize
bilinearly to ``(int(w0 * s), int(h0 * s))``, then centre-crop to ``H x W`` (torchvision's
CenterCrop offsets: ``round((size - crop) / 2)``). The same affine map is returned so that
motion hints drawn on the original image land on the same content.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

SIZE_MULTIPLE = 64
MAX_SIZE = 16384


def check_size(height: int, width: int) -> None:
    """Raise ValueError unless height and width are positive multiples of 64."""
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer number of pixels, got {value!r}")
        if value < SIZE_MULTIPLE:
            raise ValueError(f"{name} {value} is too small; use at least {SIZE_MULTIPLE}")
        if value > MAX_SIZE:
            raise ValueError(f"{name} {value} is too large; use at most {MAX_SIZE}")
        if value % SIZE_MULTIPLE:
            lower = (value // SIZE_MULTIPLE) * SIZE_MULTIPLE
            upper = lower + SIZE_MULTIPLE
            raise ValueError(
                f"{name} {value} is not a multiple of {SIZE_MULTIPLE}; use {lower} or {upper}"
            )


@dataclass(frozen=True)
class FitTransform:
    """Affine map from source-image pixels to target pixels: ``x' = x * scale_x - offset_x``.

    Coordinates are continuous pixel positions with the origin at the top-left corner.
    ``resized_width/height`` is the intermediate (uncropped) resize size.
    """

    src_width: int
    src_height: int
    width: int
    height: int
    resized_width: int
    resized_height: int
    offset_x: int
    offset_y: int

    @property
    def scale_x(self) -> float:
        return self.resized_width / self.src_width

    @property
    def scale_y(self) -> float:
        return self.resized_height / self.src_height

    def apply_points(self, points) -> np.ndarray:
        """Map (n, 2) (x, y) points; the result may fall outside the target (cropped away)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return np.stack([p[:, 0] * self.scale_x - self.offset_x, p[:, 1] * self.scale_y - self.offset_y], axis=1)


def fit_transform(src_height: int, src_width: int, height: int, width: int) -> FitTransform:
    """The resize + centre-crop geometry for a ``src`` image fitted to ``height x width``."""
    if src_height <= 0 or src_width <= 0:
        raise ValueError(f"source size must be positive, got {src_width}x{src_height}")
    s = max(width / src_width, height / src_height)
    # int() like the app; max() guards float round-off (e.g. 511.99999 -> 511 < 512).
    rw = max(int(src_width * s), width)
    rh = max(int(src_height * s), height)
    # Python's round (half to even) is what torchvision's CenterCrop uses.
    off_x = int(round((rw - width) / 2.0))
    off_y = int(round((rh - height) / 2.0))
    return FitTransform(src_width, src_height, width, height, rw, rh, off_x, off_y)


def _to_chw(image: torch.Tensor) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        image = torch.as_tensor(np.asarray(image))
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"fit_image takes one image, got a batch of {image.shape[0]}")
        image = image[0]
    if image.ndim != 3:
        raise ValueError(f"expected an image (H,W,3) or (3,H,W), got shape {tuple(image.shape)}")
    if image.shape[0] == 3 and image.shape[-1] != 3:
        return image
    if image.shape[-1] == 3:
        return image.permute(2, 0, 1)
    if image.shape[0] == 3:
        return image
    raise ValueError(f"expected 3 colour channels, got shape {tuple(image.shape)}")


def fit_image(image: torch.Tensor, height: int, width: int):
    """Resize (bilinear, antialiased like PIL) to cover ``height x width`` and centre-crop.

    :param image: (H0, W0, 3), (1, H0, W0, 3) or (3, H0, W0) float in [0, 1]
    :return: ``(image (3, H, W) float32 in [0, 1], FitTransform)``
    """
    chw = _to_chw(image).float()
    _, h0, w0 = chw.shape
    tf = fit_transform(h0, w0, height, width)
    if (tf.resized_height, tf.resized_width) != (h0, w0):
        chw = F.interpolate(
            chw[None], size=(tf.resized_height, tf.resized_width), mode="bilinear",
            align_corners=False, antialias=True,
        )[0]
    out = chw[:, tf.offset_y:tf.offset_y + height, tf.offset_x:tf.offset_x + width]
    return out.clamp(0.0, 1.0).contiguous(), tf


def fit_mask(mask, tf: FitTransform) -> torch.Tensor:
    """Apply the same resize (cv2 INTER_LINEAR, as the app resizes the brush) + crop to a mask.

    :param mask: (src_height, src_width) float tensor/array
    :return: (H, W) float32 tensor (not thresholded)
    """
    m = mask.detach().cpu().float().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask, np.float32)
    if m.shape != (tf.src_height, tf.src_width):
        raise ValueError(f"mask shape {m.shape} does not match the source size {(tf.src_height, tf.src_width)}")
    if m.shape != (tf.resized_height, tf.resized_width):
        m = cv2.resize(m, (tf.resized_width, tf.resized_height), interpolation=cv2.INTER_LINEAR)
    m = m[tf.offset_y:tf.offset_y + tf.height, tf.offset_x:tf.offset_x + tf.width]
    return torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))


def to_pm1(image01: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1] (stage-2 VAE input)."""
    return image01 * 2.0 - 1.0


def to_01(image_pm1: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return (image_pm1 / 2.0 + 0.5).clamp(0.0, 1.0)
