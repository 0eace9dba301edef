"""Stage 1: predict the dense motion field f(0->i) from a still image, text and motion hints.

Follows the official FlowGenPipeline (stage1_spec.md sections 4, 6, 7): the flow latent is
denoised by the flow UNet whose input is [image latent, noisy flow latent] on channels, with the
ControlNet fed the sparse-hint control, then decoded by the flow VAE and turned into pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import torch

from motion_i2v_core.models.vae_frames import at_precision
from motion_i2v_core.motion.control import encode_control, sparse_flow_from_hints
from motion_i2v_core.pipelines.common import MAX_FRAMES, check_frames, module_device_dtype, prepare_run

__all__ = ["FlowPrediction", "MAX_FRAMES", "default_stride", "flow01_to_pixels", "predict_flow"]


@dataclass
class FlowPrediction:
    """Pixel flow from the reference frame to every frame, frame 0 being zero.

    flow: (F, 2, H, W) float32, ch0 = dx (+right), ch1 = dy (+down), in pixels.
    static_mask: (H, W) float32, 1 where the motion brush keeps the image still.
    """

    flow: torch.Tensor
    static_mask: torch.Tensor
    stride: List[float]
    latents: Optional[torch.Tensor] = None  # final flow latent (1, 4, F-1, h, w), for inspection
    step_latents: List[torch.Tensor] = field(default_factory=list)


STAGE = "stage 1 (Predict Flow)"


def default_stride(num_flow_frames: int, motion_speed: float = 1.0) -> List[float]:
    """Temporal offsets (source-video frames) of each predicted frame: 8, 16, ... scaled by speed.

    Training saw offsets of 8*k (a clip sampled every 8 frames); `motion_speed` scales them,
    so 2.0 asks for twice the displacement per output frame.
    """
    if not motion_speed > 0:
        raise ValueError(f"motion speed {motion_speed} must be > 0 (1.0 = the official 8..120 stride)")
    return [8.0 * k * float(motion_speed) for k in range(1, num_flow_frames + 1)]


def flow01_to_pixels(flow01: torch.Tensor, static_mask: torch.Tensor) -> torch.Tensor:
    """Decoded flow in [0,1] (F-1, 2, H, W) -> pixel flow (F, 2, H, W) with a zero frame 0.

    As the official app: clamp(2u-1, -1, 1), zeroed where the brush keeps still, scaled by W / H.
    """
    n, _, h, w = flow01.shape
    flow = (flow01 * 2 - 1).clamp(-1, 1) * (1 - static_mask.to(flow01))
    scale = torch.tensor([w, h], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
    flow = flow * scale
    return torch.cat([torch.zeros_like(flow[:1]), flow], dim=0)


def neutral_control(flow_vae, flow_frames: int, height: int, width: int) -> torch.Tensor:
    """Control for "no hints": all-0.5 (zero motion) sparse flow with an all-zero mask.

    The official app always runs the ControlNet, so leaving it out would change the results.
    """
    sparse01, sparse_mask, _ = sparse_flow_from_hints(None, height, width, num_frames=flow_frames)
    return encode_control(flow_vae, sparse01, sparse_mask, sample=False)


@torch.no_grad()
def predict_flow(
    models,
    image01: torch.Tensor,
    cond: torch.Tensor,
    uncond: Optional[torch.Tensor],
    control: Optional[torch.Tensor] = None,
    static_mask: Optional[torch.Tensor] = None,
    *,
    num_frames: int = 16,
    stride: Optional[Sequence[float]] = None,
    motion_speed: float = 1.0,
    steps: int = 25,
    guidance: float = 7.0,
    seed: int = 0,
    sampler: str = "ddim",
    noise: Optional[torch.Tensor] = None,
    image_noise: Optional[torch.Tensor] = None,
    official_compat: bool = False,
    decode_batch: Optional[int] = None,
    progress=None,
    cancel=None,
    keep_step_latents: bool = False,
) -> FlowPrediction:
    """Predict the pixel flow for `num_frames` frames (frame 0 = the reference).

    image01: (3, H, W) in [0, 1] at the generation size (multiple of 8 in the latent).
    cond / uncond: (1, L, D) text embeddings; uncond may be None when guidance == 1.
    control: (1, 5, F-1, h, w) from `control.encode_control`; None = no hints (a neutral control,
        as the official app always runs the ControlNet).
    static_mask: (H, W), 1 = static (motion brush not painted there); None = all movable.
    noise: optional explicit initial noise (1, 4, F-1, h, w); otherwise drawn from `seed`.
    image_noise: optional explicit posterior noise (1, 4, h, w) of the reference latent
        (only used when official_compat, which samples the posterior instead of taking its mean).
    official_compat: reproduce the official random draws (8-channel noise draw sliced to 4,
        posterior sample of the reference latent). Off: 4-channel draw, posterior mean.
    decode_batch: flow frames decoded per VAE call; None = as many as the free memory allows (a fixed
        chunk on the CPU), 0 = tiled decode. The result does not depend on it beyond rounding.
    progress(step, total, latent) and cancel() are called once per step.
    """
    check_frames(num_frames)
    flow_frames = num_frames - 1
    unet, flow_vae, image_vae = models.unet, models.flow_vae, models.image_vae
    run = prepare_run(STAGE, unet, image01, cond, uncond, guidance=guidance, static_mask=static_mask, seed=seed,
                      sampler=sampler, steps=steps)
    device, dtype, h, w = run.device, run.dtype, run.h, run.w

    stride = list(stride) if stride is not None else default_stride(flow_frames, motion_speed)
    if len(stride) != flow_frames:
        raise ValueError(f"stride has {len(stride)} values, expected {flow_frames} (one per predicted frame)")

    if control is None:
        control = neutral_control(flow_vae, flow_frames, run.height, run.width)
    expected = (1, 5, flow_frames, h, w)
    if tuple(control.shape) != expected:
        raise ValueError(
            f"control has shape {tuple(control.shape)} but this generation needs {expected} "
            f"({flow_frames} flow frames at {run.width}x{run.height}); encode the motion hints at the same size "
            "and frame count"
        )

    # Random draws, in the official order when official_compat (8 channels drawn, 4 kept).
    shape = (1, 4, flow_frames, h, w)
    noise = run.initial_noise(noise, shape, "initial flow noise", (1, 8, *shape[2:]) if official_compat else None)
    ref_latent = run.reference_latent(image_vae, image01, official_compat, image_noise)
    ref_b = ref_latent[:, :, None].expand(run.batch, -1, flow_frames, -1, -1).to(dtype)  # (B,4,F-1,h,w)
    stride_t = torch.tensor([stride], dtype=torch.float32).to(device)
    control_b = control.to(device, dtype).expand(run.batch, -1, -1, -1, -1)

    def call(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(torch.cat([ref_b, x], dim=1), t, stride_t, run.context, control=control_b)

    x, step_latents = run.sample(call, noise, progress=progress, cancel=cancel, keep_step_latents=keep_step_latents)

    # The flow is decoded and kept in float32: its [0, 1] values are scaled by the image size.
    flow01 = run.decode(at_precision(flow_vae, torch.float32, module_device_dtype(flow_vae)[0]), x, decode_batch, "flow")
    flow = flow01_to_pixels(flow01, run.static_mask.to(flow01.device)).cpu()
    return FlowPrediction(flow=flow, static_mask=run.static_mask, stride=stride, latents=x.cpu(),
                          step_latents=step_latents)
