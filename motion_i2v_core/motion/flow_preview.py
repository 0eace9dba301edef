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


# How far (as a fraction of the long side) a drag's pull reaches past its square when nothing is
# painted, and how wide (fraction of the short side) the soft edge just inside a painted region is.
FALLOFF_FRACTION = 0.25
EDGE_FRACTION = 1 / 48


def _smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return x * x * (3 - 2 * x)


def _square_distances(starts, height: int, width: int, u: int) -> torch.Tensor:
    """(K, H, W) distance in pixels from each pixel to each drag square (0 inside it).

    The square of a track starting at (x0, y0) covers columns int(x0)-u .. int(x0)+u-1 and rows
    int(y0)-u .. int(y0)+u-1, the pixels ``trajectories.tracks_to_drag`` writes.
    """
    ys = torch.arange(height, dtype=torch.float32).view(1, -1, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, 1, -1)
    x0 = torch.tensor([int(x) for x, _ in starts], dtype=torch.float32).view(-1, 1, 1)
    y0 = torch.tensor([int(y) for _, y in starts], dtype=torch.float32).view(-1, 1, 1)
    dx = torch.clamp(torch.maximum(x0 - u - xs, xs - (x0 + u - 1)), min=0)
    dy = torch.clamp(torch.maximum(y0 - u - ys, ys - (y0 + u - 1)), min=0)
    return torch.hypot(dx, dy)


def _track_weights(dist: torch.Tensor) -> torch.Tensor:
    """(K, H, W) -> weights summing to 1 per pixel: inside a square its own track alone (the last
    one where squares overlap, as the rasteriser overwrites), elsewhere inverse-square-distance
    (Shepard) weights, which tend to the inside value at the square's border."""
    inside = dist == 0
    owner = torch.where(inside, torch.arange(dist.shape[0]).view(-1, 1, 1), -1).amax(dim=0)
    shepard = dist.clamp_min(1e-3).pow(-2)
    weights = shepard / shepard.sum(dim=0, keepdim=True)
    one_hot = (torch.arange(dist.shape[0]).view(-1, 1, 1) == owner).float()
    return torch.where(owner >= 0, one_hot, weights)


def painted_edge_ramp(painted: torch.Tensor, ramp: int) -> torch.Tensor:
    """(H, W) {0, 1} painted mask -> weight 1 inside, 0 outside, rising smoothly over ``ramp``
    pixels just inside the border (unpainted pixels stay exactly 0)."""
    k = 2 * ramp + 1
    near = F.avg_pool2d(painted[None, None], k, stride=1, padding=ramp, count_include_pad=False)[0, 0]
    return painted * _smoothstep(2 * near - 1)


@torch.no_grad()
def drags_to_flow(hints, height: int, width: int, num_frames: int, flow_unit: int | None = None):
    """A rough dense flow straight from motion hints, with no model (for instant previews).

    Each track moves its drag square (half-size ``flow_unit``, as in the stage-1 sparse control)
    exactly along the track, so the content at a track's start goes where the artist drew it.
    Between squares every pixel takes the inverse-square-distance mean of the tracks'
    displacements. How much of it a pixel gets:

    * nothing painted: all of it inside the squares, fading smoothly to none at
      ``FALLOFF_FRACTION`` of the long side past the nearest square;
    * a brush painted: all of it inside the painted region (only tracks that start there count;
      unpainted pixels are not samples of zero motion), none outside, with a smooth edge
      ``EDGE_FRACTION`` of the short side wide just inside the painted border.

    web/motion_preview.js computes the same field for the editor's Play. It is not what the flow
    model predicts, only enough to see where things will go.

    :param hints: MotionHints (coordinates in hint-image pixels, mapped like the image) or None
    :param height, width: target size in pixels (multiples of 8)
    :param num_frames: frames including the reference frame (>= 2)
    :param flow_unit: drag square half-size in target pixels; None -> scaled default (64 at 512x320)
    :return: ``(flow (F, 2, H, W) float32 pixels, frame 0 zero; static (H, W) float32, 1 = still)``
    """
    from motion_i2v_core.motion.brush import static_mask  # the brush stack is only needed here
    from motion_i2v_core.motion.control import hints_to_target
    from motion_i2v_core.motion.hints import MotionHints
    from motion_i2v_core.motion.trajectories import default_flow_unit, track_path

    if height % 8 or width % 8 or height <= 0 or width <= 0:
        raise ValueError(f"size {width}x{height} must be positive multiples of 8")
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2 (the reference frame and one more), got {num_frames}")
    u = int(flow_unit or default_flow_unit(height, width))
    tracks, movable, _ = hints_to_target(hints if hints is not None else MotionHints(), height, width)
    static = static_mask(movable, height, width)
    painted = 1 - static if static.any() else None
    paths = []
    timing = hints.timing if hints is not None else []
    for index, track in enumerate(tracks):
        p = np.clip(np.asarray(track, np.float64).reshape(-1, 2), 0, [width - 1, height - 1])
        if p.shape[0] == 1:
            p = np.concatenate([p, p + 1.0])  # a single click: the app's 1 px anchor drift
        if painted is None or painted[int(p[0, 1]), int(p[0, 0])] > 0:
            paths.append(track_path(p, num_frames, timing[index] if index < len(timing) else None))
    flow = torch.zeros(num_frames, 2, height, width)
    if not paths:
        return flow, static
    moves = torch.from_numpy(np.stack([q - q[0] for q in paths], axis=1)).float()  # (F, K, 2)
    dist = _square_distances([q[0] for q in paths], height, width, u)
    if painted is None:
        reach = FALLOFF_FRACTION * max(height, width)
        amount = _smoothstep(1 - dist.amin(dim=0) / reach)
    else:
        amount = painted_edge_ramp(painted, max(2, round(EDGE_FRACTION * min(height, width))))
    weights = _track_weights(dist) * amount
    flow[1:] = torch.einsum("fkc,khw->fchw", moves[1:], weights)
    return flow, static
