"""Socket types shared by the Motion-I2V nodes, and conversions between ComfyUI and core tensors.

ComfyUI side: IMAGE (B, H, W, C) float [0, 1] on the CPU, MASK (B, H, W) or (H, W),
CONDITIONING [[cond (B, L, D), {extras}], ...].
Core side: images (3, H, W) [0, 1], text (1, L, D), frames (F, H, W, 3) [0, 1], flow (F, 2, H, W) px.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import torch
from comfy_api.latest import io

from motion_i2v_core.pipelines.common import LATENT_SCALE

CATEGORY = "Motion-I2V"
log = logging.getLogger("motion_i2v")

# Custom socket types. The values are plain Python objects passed by reference between nodes.
ModelType = io.Custom("MI2V_MODEL")      # nodes.motion_model.MotionI2VModel
MotionType = io.Custom("MI2V_MOTION")    # motion_i2v_core.motion.hints.MotionHints
ControlType = io.Custom("MI2V_CONTROL")  # MotionControl
FlowType = io.Custom("MI2V_FLOW")        # FlowField


@dataclass
class MotionControl:
    """Stage-1 control: the flow-VAE-encoded sparse hints and the brush's static mask.

    control: (1, 5, F-1, h, w); static_mask: (H, W), 1 = keep still; at width x height, num_frames.
    """

    control: torch.Tensor
    static_mask: torch.Tensor
    width: int
    height: int
    num_frames: int
    hints: Any = None  # the MotionHints it came from, to re-encode at another size
    flow_unit: int = 0
    seed: int = 0


@dataclass
class FlowField:
    """Dense pixel flow from the reference frame: flow (F, 2, H, W), frame 0 zero; static_mask (H, W)."""

    flow: torch.Tensor
    static_mask: torch.Tensor

    @property
    def num_frames(self) -> int:
        return int(self.flow.shape[0])

    @property
    def height(self) -> int:
        return int(self.flow.shape[2])

    @property
    def width(self) -> int:
        return int(self.flow.shape[3])


def image_to_core(image: torch.Tensor, what: str = "image") -> torch.Tensor:
    """ComfyUI IMAGE (B, H, W, C) -> (3, H, W) float32 in [0, 1]; the first image of a batch is used."""
    if not isinstance(image, torch.Tensor) or image.ndim not in (3, 4):
        raise ValueError(f"{what}: expected a ComfyUI IMAGE tensor (B, H, W, C), got {_describe(image)}")
    if image.ndim == 3:
        image = image[None]
    if image.shape[0] == 0 or image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"{what}: the IMAGE is empty ({tuple(image.shape)}); connect a node that outputs a picture")
    if image.shape[0] > 1:
        log.warning("%s: batch of %d images, using the first one as the reference frame", what, image.shape[0])
    channels = image.shape[-1]
    if channels == 1:
        image = image.expand(-1, -1, -1, 3)
    elif channels == 4:
        image = image[..., :3]  # drop alpha
    elif channels != 3:
        raise ValueError(f"{what}: expected 1, 3 or 4 colour channels, got {channels}")
    return image[0].permute(2, 0, 1).float().clamp(0, 1).contiguous().cpu()


def latents_to_comfy(latents: torch.Tensor) -> dict:
    """Core video latents (1, 4, F, h, w), scaled by SD-1.5's factor, -> a ComfyUI LATENT.

    ComfyUI keeps LATENT samples as the VAE gives them (its SD15 latent format scales them on the way
    into a model), so the factor is taken off: VAE Decode, KSampler (img2img), upscalers work as on
    any SD-1.5 latent, one batch item per frame."""
    if latents.ndim != 5 or latents.shape[0] != 1:
        raise ValueError(f"expected video latents (1, C, F, h, w), got {tuple(latents.shape)}")
    samples = latents[0].transpose(0, 1) / LATENT_SCALE
    return {"samples": samples.detach().float().contiguous().cpu()}


def frames_to_image(frames: torch.Tensor) -> torch.Tensor:
    """Core frames (F, H, W, 3) or (F, 3, H, W) in [0, 1] -> ComfyUI IMAGE batch on the CPU."""
    if frames.ndim != 4:
        raise ValueError(f"expected 4-D frames, got {tuple(frames.shape)}")
    if frames.shape[-1] != 3 and frames.shape[1] == 3:
        frames = frames.permute(0, 2, 3, 1)
    return frames.detach().float().clamp(0, 1).contiguous().cpu()


def mask_to_core(mask: Optional[torch.Tensor], what: str = "mask") -> Optional[torch.Tensor]:
    """ComfyUI MASK (B, H, W) or (H, W) -> (H, W) float32 in [0, 1] (first mask of a batch)."""
    if mask is None:
        return None
    if mask.ndim == 3:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f"{what}: expected a MASK (B, H, W), got shape {tuple(mask.shape)}")
    return mask.float().clamp(0, 1).cpu()


def conditioning_to_text(conditioning, what: str) -> torch.Tensor:
    """ComfyUI CONDITIONING -> (1, L, D) text embedding (first entry, first batch item)."""
    if not conditioning:
        raise ValueError(f"{what}: empty conditioning; connect a CLIP Text Encode node")
    try:
        cond = conditioning[0][0]
    except (TypeError, IndexError, KeyError):
        raise ValueError(f"{what}: not a ComfyUI CONDITIONING value ({_describe(conditioning)})") from None
    if not isinstance(cond, torch.Tensor) or cond.ndim != 3:
        raise ValueError(f"{what}: expected a (B, tokens, dim) text embedding, got {_describe(cond)}")
    if len(conditioning) > 1:
        log.warning("%s: %d conditioning entries (combined prompts); only the first is used", what, len(conditioning))
    return cond[:1].float().cpu()


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor {tuple(value.shape)}"
    return type(value).__name__
