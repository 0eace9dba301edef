"""Stage 2: render the video that follows a predicted (or hand-made) flow.

Follows the official AnimationPipeline (stage2_spec.md section 5): the clean reference latent
sits in frame slot 0 at every step ("selective noising"), the UNet's motion-augmented temporal
attention warps the reference features along the flow, and the motion brush pins static regions
to the re-noised reference latent between steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import torch

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
from motion_i2v_core.pipelines.stage1 import check_frames


@dataclass
class RenderResult:
    frames: torch.Tensor  # (F, H, W, 3) float32 in [0, 1]
    latents: Optional[torch.Tensor] = None  # final latents (1, 4, F, h, w), frame 0 = reference
    step_latents: List[torch.Tensor] = field(default_factory=list)


def latent_static_mask(static_mask: torch.Tensor) -> torch.Tensor:
    """Pixel mask (H, W) -> latent blend mask (1, 1, 1, h, w) by nearest [::8, ::8] sampling."""
    return static_mask[::8, ::8][None, None, None]


@torch.no_grad()
def render_video(
    models,
    image01: torch.Tensor,
    cond: torch.Tensor,
    uncond: Optional[torch.Tensor],
    flow: torch.Tensor,
    static_mask: Optional[torch.Tensor] = None,
    *,
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
) -> RenderResult:
    """Render F frames that follow `flow`.

    image01: (3, H, W) in [0, 1]; flow: (F, 2, H, W) pixels with frame 0 zero; static_mask (H, W),
    1 = keep still (None = everything may move). noise: optional explicit initial latents
    (1, 4, F, h, w), also the fixed noise of the brush blend. official_compat reproduces the
    official numbers: CFG-branch mixing in the warp (quirk Q1) and the posterior *sample* of the
    reference latent (drawn after the initial noise, or `image_noise`); off, each CFG branch warps
    its own features and the reference latent is the posterior mean.
    """
    num_frames = flow.shape[0]
    check_frames(num_frames)
    unet, vae = models.unet, models.vae
    device, dtype = module_device_dtype(unet)
    _, height, width = image01.shape
    if flow.ndim != 4 or flow.shape[1] != 2 or tuple(flow.shape[2:]) != (height, width):
        raise ValueError(
            f"flow has shape {tuple(flow.shape)}, expected ({num_frames}, 2, {height}, {width}) to match the "
            f"{width}x{height} image; predict the flow at the same size as the render"
        )
    if not torch.isfinite(flow).all():
        raise ValueError("flow contains NaN or infinite values")
    h, w = height // 8, width // 8
    use_cfg = check_guidance(guidance)
    if use_cfg and uncond is None:
        raise ValueError("guidance != 1 needs a negative (unconditional) text embedding")
    cond, uncond = check_text(cond, uncond if use_cfg else None, unet.config.cross_attention_dim, "render_video")
    if static_mask is None:
        static_mask = torch.zeros(height, width)
    if tuple(static_mask.shape) != (height, width):
        raise ValueError(f"static mask is {tuple(static_mask.shape)}, expected ({height}, {width}) like the image")

    rng = NoiseSource(seed)
    if noise is None:
        noise = rng.randn((1, 4, num_frames, h, w), device)
    check_noise(noise, (1, 4, num_frames, h, w), "initial video noise")
    noise = noise.to(device).float()

    mean, std = vae_encode_frames(vae, (image01 * 2 - 1)[None].to(device, dtype))
    if official_compat:
        if image_noise is None:
            image_noise = rng.randn((1, 4, h, w), device)
        ref = mean.float() + std.float() * image_noise.to(device).float()
    else:
        ref = mean.float()
    ref_latent = (ref * LATENT_SCALE)[:, :, None]  # (1, 4, 1, h, w)

    blend = latent_static_mask(static_mask.to(device).float())
    # The official blend noise aliases the initial latents, whose frame 0 becomes the reference
    # latent at step 0; do the same so intermediate latents match (frame 0 is reset anyway).
    blend_noise = noise.clone()
    blend_noise[:, :, :1] = ref_latent
    blend_active = bool(blend.any())
    batch = 2 if use_cfg else 1
    context = (torch.cat([uncond, cond]) if use_cfg else cond).to(device, dtype)
    flow_b = flow[None].to(device, torch.float32)  # one flow shared by every batch item

    schedule = DDIMSchedule()
    timesteps = schedule.timesteps(steps)
    reporter = StepReporter(len(timesteps), progress, cancel)
    step_latents: List[torch.Tensor] = []

    def with_reference(i: int, x: torch.Tensor) -> torch.Tensor:
        # Selective noising: frame 0 is always the clean reference latent.
        x = x.clone()
        x[:, :, :1] = ref_latent
        return x

    def eps_fn(x: torch.Tensor, t: int, i: int) -> torch.Tensor:
        sample = x.to(dtype).expand(batch, -1, -1, -1, -1)
        eps = unet(sample, t, context, flow=flow_b, official_compat=official_compat).float()
        return guided(eps, guidance) if use_cfg else eps

    def after_step(i: int, x: torch.Tensor) -> torch.Tensor:
        if blend_active and i + 1 < len(timesteps):
            # Static regions follow the reference, re-noised to the next step's level with the
            # same initial noise (official quirk Q8: not after the last step).
            pinned = schedule.add_noise(ref_latent, blend_noise, int(timesteps[i + 1]))
            x = pinned * blend + x * (1 - blend)
        if keep_step_latents:
            step_latents.append(x.detach().clone())
        reporter.step_done(i, x)
        return x

    x = get_sampler(sampler)(
        eps_fn,
        noise,
        schedule,
        timesteps,
        cancel=reporter.check_cancel,
        before_step=with_reference,
        after_step=after_step,
    )
    x = with_reference(len(timesteps), x)
    decoded = vae_decode_frames(vae, (x[0].transpose(0, 1) / LATENT_SCALE).to(dtype), decode_batch).float()
    frames = (decoded / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu()
    return RenderResult(frames=frames, latents=x.cpu(), step_latents=step_latents)
