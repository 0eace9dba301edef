"""Warp-based motion preview: push the reference image along the flow and fill the holes.

No model is involved, so artists see the motion before paying for diffusion. Each frame i is the
reference image forward-splatted (avg mode, the op the stage-2 UNet uses on its features) with
f(0 -> i), then pixels that the splat did not reach (or reached only weakly) are filled from their
surroundings.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

from motion_i2v_core.ops.splat import splat_corners, splat_normaliser, splat_sum

__all__ = ["warp_preview", "fill_holes_push_pull", "drags_to_flow", "FILL_METHODS"]

FILL_METHODS = ("push_pull", "telea", "none")


def _image_chw(image: Union[torch.Tensor, np.ndarray]) -> torch.Tensor:
    img = torch.from_numpy(np.asarray(image)) if isinstance(image, np.ndarray) else image
    if not isinstance(img, torch.Tensor) or img.dim() != 3:
        raise ValueError(
            f"image must have shape (3, H, W) or (H, W, 3) with values in [0, 1], got {getattr(img, 'shape', img)}"
        )
    if img.shape[-1] == 3 and img.shape[0] != 3:
        img = img.permute(2, 0, 1)
    elif img.shape[0] != 3:
        raise ValueError(f"image must have 3 colour channels, (3, H, W) or (H, W, 3), got {tuple(img.shape)}")
    return img.float()


def fill_holes_push_pull(values: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
    """Fill low-confidence pixels by push-pull interpolation (a confidence-weighted image pyramid).

    :param values: [B x C x H x W] colours; only trusted where confidence > 0.
    :param confidence: [B x 1 x H x W] in [0, 1]; 1 keeps the value, 0 is a hole, in between blends.
    :return: [B x C x H x W]: values * confidence + fill * (1 - confidence), where the fill comes
        from the trusted surroundings, smoothly, at the scale of the hole. A frame with no trusted
        pixel at all becomes 0.
    """
    return _push_pull_(values.clone(), confidence.clamp(0, 1))


def _push_pull_(values: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """``fill_holes_push_pull`` that overwrites ``values`` (saves a full-size buffer)."""
    premult = [values.mul_(conf)]
    confs = [conf]
    # Push: average down to 1 pixel; premultiplied sums keep holes out of the averages.
    while premult[-1].shape[-1] > 1 or premult[-1].shape[-2] > 1:
        premult.append(F.avg_pool2d(premult[-1], 2, ceil_mode=True))
        confs.append(F.avg_pool2d(confs[-1], 2, ceil_mode=True))
    c = confs[-1]
    filled = torch.where(c > 0, premult[-1] / c.clamp(min=1e-12), torch.zeros_like(premult[-1]))
    # Pull: from coarse to fine, each level keeps its own colour in proportion to its coverage c
    # and takes the rest from the level above: colour*c + up*(1 - c) = premult + up*(1 - c).
    for level in range(len(premult) - 2, -1, -1):
        up = F.interpolate(filled, size=premult[level].shape[-2:], mode="bilinear", align_corners=False)
        filled = premult[level].addcmul_(up, 1 - confs[level])
    return filled


def _fill_telea(values: torch.Tensor, confidence: torch.Tensor, radius: int = 3) -> torch.Tensor:
    import cv2

    out = values.clone()
    for i in range(values.shape[0]):
        hole = (confidence[i, 0] < 1).cpu().numpy().astype(np.uint8)
        if not hole.any():
            continue
        img = (values[i].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        filled = cv2.inpaint(img, hole, radius, cv2.INPAINT_TELEA).astype(np.float32) / 255.0
        mask = torch.from_numpy(hole.astype(bool)).to(values.device)
        out[i] = torch.where(mask, torch.from_numpy(filled).permute(2, 0, 1).to(values), values[i])
    return out


@torch.no_grad()
def warp_preview(
    image: Union[torch.Tensor, np.ndarray],
    flow: torch.Tensor,
    fill: str = "push_pull",
    hole_threshold: float = 0.5,
) -> torch.Tensor:
    """Forward-warp ``image`` along each frame's flow and fill holes.

    :param image: (3, H, W) or (H, W, 3) RGB in [0, 1] (torch or numpy).
    :param flow: (F, 2, H, W) pixel flow f(0 -> i), ch0 = dx, ch1 = dy; frame 0 is normally zero.
    :param fill: "push_pull" (default, fast), "telea" (cv2.inpaint, slower) or "none" (holes stay 0).
    :param hole_threshold: splat weight at and above which a pixel is kept as splatted; below it the
        pixel is blended towards the fill (weight 0 = a hole, filled completely).
    :return: (F, H, W, 3) float32 in [0, 1] on the flow's device. Frames whose flow is exactly zero
        (frame 0) are the input image itself.
    """
    if fill not in FILL_METHODS:
        raise ValueError(f"unknown hole fill {fill!r}: use one of {', '.join(FILL_METHODS)}")
    if not hole_threshold > 0:
        raise ValueError(f"hole_threshold must be > 0, got {hole_threshold}")
    img = _image_chw(image).to(flow.device if isinstance(flow, torch.Tensor) else "cpu")
    if not isinstance(flow, torch.Tensor) or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be a tensor of shape (F, 2, H, W) in pixels, got {getattr(flow, 'shape', flow)}")
    if flow.shape[2:] != img.shape[1:]:
        raise ValueError(
            f"flow size {tuple(flow.shape[2:])} (H, W) differs from the image size {tuple(img.shape[1:])}; "
            "resize the image (or the flow, scaling its values) to the same size first"
        )
    corners = splat_corners(flow.float())
    weight = splat_normaliser(corners)  # (F, 1, H, W)
    warped = splat_sum(img.unsqueeze(0), corners)  # (F, 3, H, W), the image pushed by every flow
    confidence = (weight / hole_threshold).clamp_(0, 1)
    warped = warped.div_(weight.add_(1e-7))  # the 'avg' splat
    if fill == "push_pull":
        warped = _push_pull_(warped, confidence)
    elif fill == "telea":
        warped = _fill_telea(warped, confidence)
    frames = warped.clamp_(0, 1).permute(0, 2, 3, 1).contiguous()
    still = (flow == 0).flatten(1).all(dim=1)
    frames[still] = img.permute(1, 2, 0)
    return frames


def _box_smooth(x: torch.Tensor, radius: int, passes: int = 3) -> torch.Tensor:
    """Repeated box filter over the last two dims (three passes are close to a Gaussian, sigma ~ radius)."""
    k = 2 * radius + 1
    for _ in range(passes):
        x = F.avg_pool2d(x, k, stride=1, padding=radius, count_include_pad=False)
    return x


@torch.no_grad()
def drags_to_flow(hints, height: int, width: int, num_frames: int, flow_unit: int | None = None):
    """A rough dense flow straight from motion hints, with no model (for instant previews).

    The drag squares of the stage-1 sparse control (``control.sparse_flow_from_hints``: each
    track moves a square of half-size ``flow_unit``; brushed-out regions are known still) are
    spread over the image by normalised smoothing at 1/8 resolution: the masked flow and the mask
    are blurred alike and divided, so each pixel takes the weighted mean of the nearby drags. The
    result is upsampled and set to zero where the brush keeps the image still. It is not what the
    flow model predicts, only enough to see where things will go.

    :param hints: MotionHints (coordinates in hint-image pixels, mapped like the image) or None
    :param height, width: target size in pixels (multiples of 8)
    :param num_frames: frames including the reference frame (>= 2)
    :param flow_unit: drag square half-size in target pixels; None -> scaled default (64 at 512x320)
    :return: ``(flow (F, 2, H, W) float32 pixels, frame 0 zero; static (H, W) float32, 1 = still)``
    """
    from motion_i2v_core.motion.control import sparse_flow_from_hints  # control imports the hint/brush stack, only needed here

    if height % 8 or width % 8 or height <= 0 or width <= 0:
        raise ValueError(f"size {width}x{height} must be positive multiples of 8")
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2 (the reference frame and one more), got {num_frames}")
    sparse01, mask, static = sparse_flow_from_hints(hints, height, width, num_frames=num_frames - 1,
                                                    flow_unit=flow_unit or None)
    scale = torch.tensor([width, height], dtype=torch.float32).view(1, 2, 1, 1)
    flow = (sparse01[0].transpose(0, 1) * 2 - 1) * scale           # (F-1, 2, H, W) pixels
    weight = mask[0].transpose(0, 1).expand(-1, 1, -1, -1)          # (F-1, 1, H, W)
    small = (height // 8, width // 8)
    flow_s = F.interpolate(flow * weight, size=small, mode="area")
    weight_s = F.interpolate(weight, size=small, mode="area")
    radius = max(1, max(small) // 6)
    dense = _box_smooth(flow_s, radius) / _box_smooth(weight_s, radius).clamp_min(1e-6)
    dense = F.interpolate(dense, size=(height, width), mode="bilinear", align_corners=False)
    static2d = static.reshape(height, width).float()
    dense = dense * (1 - static2d)
    return torch.cat([torch.zeros_like(dense[:1]), dense]).float(), static2d
