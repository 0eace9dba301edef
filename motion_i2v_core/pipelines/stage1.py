"""Stage 1: predict the dense motion field f(0->i) from a still image, text and motion hints.

Follows the official FlowGenPipeline (stage1_spec.md sections 4, 6, 7): the flow latent is
denoised by the flow UNet whose input is [image latent, noisy flow latent] on channels, with the
ControlNet fed the sparse-hint control, then decoded by the flow VAE and turned into pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import torch

from motion_i2v_core.motion.control import encode_control, sparse_flow_from_hints
from motion_i2v_core.schedulers import DDIMSchedule, get_sampler
from motion_i2v_core.pipelines.common import (
    LATENT_SCALE,
    NoiseSource,
    StepReporter,
    check_guidance,
    check_noise,
    check_text,
    guided,
    module_device_dtype,
    vae_decode_frames,
    vae_encode_frames,
)

MAX_FRAMES = 16  # stage 2's position table (32 rows) holds 2F-1 tokens


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


def default_stride(num_flow_frames: int, motion_speed: float = 1.0) -> List[float]:
    """Temporal offsets (source-video frames) of each predicted frame: 8, 16, ... scaled by speed.

    Training saw offsets of 8*k (a clip sampled every 8 frames); `motion_speed` scales them,
    so 2.0 asks for twice the displacement per output frame.
    """
    if not motion_speed > 0:
        raise ValueError(f"motion speed {motion_speed} must be > 0 (1.0 = the official 8..120 stride)")
    return [8.0 * k * float(motion_speed) for k in range(1, num_flow_frames + 1)]


def check_frames(num_frames: int) -> None:
    if not 2 <= int(num_frames) <= MAX_FRAMES:
        raise ValueError(
            f"{num_frames} frames requested; Motion-I2V renders 2 to {MAX_FRAMES} frames "
            f"(its temporal position table has 32 rows for the 2F-1 tokens). Use at most {MAX_FRAMES}."
        )


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


def encode_reference(vae, image01: torch.Tensor, noise: Optional[torch.Tensor]) -> torch.Tensor:
    """0.18215 * posterior of the [0,1] reference image: the mean, or mean + std*noise."""
    mean, std = vae_encode_frames(vae, image01[None])
    latent = mean if noise is None else mean + std * noise.to(mean)
    return latent * LATENT_SCALE


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
    decode_batch: int = 1,
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
    decode_batch: flow frames decoded per VAE call (1 = frame by frame, as the official code; more is
        faster on a GPU with memory to spare).
    progress(step, total, latent) and cancel() are called once per step.
    """
    check_frames(num_frames)
    flow_frames = num_frames - 1
    unet, flow_vae, image_vae = models.unet, models.flow_vae, models.image_vae
    device, dtype = module_device_dtype(unet)
    _, height, width = image01.shape
    if height % 8 or width % 8:
        raise ValueError(f"image size {width}x{height} must be a multiple of 8 (of 64 for the official models)")
    h, w = height // 8, width // 8
    use_cfg = check_guidance(guidance)
    if use_cfg and uncond is None:
        raise ValueError("guidance != 1 needs a negative (unconditional) text embedding")
    cond, uncond = check_text(cond, uncond if use_cfg else None, unet.config.cross_attention_dim, "predict_flow")

    if static_mask is None:
        static_mask = torch.zeros(height, width)
    if tuple(static_mask.shape) != (height, width):
        raise ValueError(f"static mask is {tuple(static_mask.shape)}, expected ({height}, {width}) like the image")

    stride = list(stride) if stride is not None else default_stride(flow_frames, motion_speed)
    if len(stride) != flow_frames:
        raise ValueError(f"stride has {len(stride)} values, expected {flow_frames} (one per predicted frame)")

    rng = NoiseSource(seed)
    if control is None:
        control = neutral_control(flow_vae, flow_frames, height, width)
    expected = (1, 5, flow_frames, h, w)
    if tuple(control.shape) != expected:
        raise ValueError(
            f"control has shape {tuple(control.shape)} but this generation needs {expected} "
            f"({flow_frames} flow frames at {width}x{height}); encode the motion hints at the same size and frame count"
        )

    # Random draws, in the official order when official_compat (8 channels drawn, 4 kept).
    if noise is None:
        if official_compat:
            noise = rng.randn((1, 8, flow_frames, h, w), device)[:, :4]
        else:
            noise = rng.randn((1, 4, flow_frames, h, w), device)
    noise = check_noise(noise, (1, 4, flow_frames, h, w), "initial flow noise").to(device, torch.float32)
    if official_compat and image_noise is None:
        image_noise = rng.randn((1, 4, h, w), device)
    ref_latent = encode_reference(image_vae, image01.to(device, dtype), image_noise if official_compat else None)
    ref_latent = ref_latent[:, :, None].expand(-1, -1, flow_frames, -1, -1)  # (1,4,F-1,h,w)

    stride_t = torch.tensor([stride], dtype=torch.float32, device=device)
    context = torch.cat([uncond, cond]) if use_cfg else cond
    context = context.to(device, dtype)
    batch = 2 if use_cfg else 1
    control_b = control.to(device, dtype).expand(batch, -1, -1, -1, -1)
    ref_b = ref_latent.to(dtype).expand(batch, -1, -1, -1, -1)

    def eps_fn(x: torch.Tensor, t: int, i: int) -> torch.Tensor:
        sample = torch.cat([ref_b, x.to(dtype).expand(batch, -1, -1, -1, -1)], dim=1)
        eps = unet(sample, t, stride_t, context, control=control_b).float()
        return guided(eps, guidance) if use_cfg else eps

    schedule = DDIMSchedule()
    timesteps = schedule.timesteps(steps)
    reporter = StepReporter(len(timesteps), progress, cancel)
    step_latents: List[torch.Tensor] = []

    def on_step(i: int, x: torch.Tensor) -> torch.Tensor:
        if keep_step_latents:
            step_latents.append(x.detach().clone())
        reporter.step_done(i, x)
        return x

    x = get_sampler(sampler)(
        eps_fn, noise, schedule, timesteps, cancel=reporter.check_cancel, after_step=on_step
    )

    flow01 = vae_decode_frames(flow_vae, (x[0].transpose(0, 1) / LATENT_SCALE).to(dtype), decode_batch).float()
    flow = flow01_to_pixels(flow01, static_mask.to(flow01.device)).cpu()
    return FlowPrediction(
        flow=flow,
        static_mask=static_mask.float().cpu(),
        stride=stride,
        latents=x.cpu(),
        step_latents=step_latents,
    )
