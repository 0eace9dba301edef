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

from motion_i2v_core.models.motion_module import FlowWarpContext
from motion_i2v_core.pipelines.common import check_frames, prepare_run
from motion_i2v_core.schedulers import noised

STAGE = "stage 2 (Render Video)"


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
    steps: int = 25, guidance: float = 7.0, seed: int = 0, sampler: str = "ddim",
    noise: Optional[torch.Tensor] = None, image_noise: Optional[torch.Tensor] = None, official_compat: bool = False,
    decode_batch: Optional[int] = None, progress=None, cancel=None, keep_step_latents: bool = False,
) -> RenderResult:
    """Render F frames that follow `flow`.

    image01: (3, H, W) in [0, 1]; flow: (F, 2, H, W) pixels with frame 0 zero; static_mask (H, W),
    1 = keep still (None = everything may move). noise: optional explicit initial latents
    (1, 4, F, h, w), also the fixed noise of the brush blend. official_compat reproduces the
    official numbers: CFG-branch mixing in the warp (quirk Q1) and the posterior *sample* of the
    reference latent (drawn after the initial noise, or `image_noise`); off, each CFG branch warps
    its own features and the reference latent is the posterior mean. decode_batch: frames per VAE
    decode call; None = as many as the free memory allows (a fixed chunk on the CPU), 0 = tiled.
    """
    num_frames = flow.shape[0]
    check_frames(num_frames)
    unet, vae = models.unet, models.vae
    run = prepare_run(STAGE, unet, image01, cond, uncond, guidance=guidance, static_mask=static_mask, seed=seed,
                      sampler=sampler, steps=steps)
    device, height, width = run.device, run.height, run.width
    if flow.ndim != 4 or flow.shape[1] != 2 or tuple(flow.shape[2:]) != (height, width):
        raise ValueError(
            f"flow has shape {tuple(flow.shape)}, expected ({num_frames}, 2, {height}, {width}) to match the "
            f"{width}x{height} image; predict the flow at the same size as the render"
        )
    if not torch.isfinite(flow).all():
        raise ValueError("flow contains NaN or infinite values")

    noise = run.initial_noise(noise, (1, 4, num_frames, run.h, run.w), "initial video noise")
    ref_latent = run.reference_latent(vae, image01 * 2 - 1, official_compat, image_noise)[:, :, None]  # (1,4,1,h,w)

    blend_active = bool(run.static_mask.any())  # decided on the CPU copy: no device sync
    blend = latent_static_mask(run.static_mask).to(device)
    # The official blend noise aliases the initial latents, whose frame 0 becomes the reference
    # latent at step 0; do the same so intermediate latents match (frame 0 is reset anyway).
    blend_noise = noise.clone()
    blend_noise[:, :, :1] = ref_latent
    # Levels the brush re-noises to after each step, put on the device before the loop.
    timesteps = run.timesteps
    blend_alphas = run.schedule.alphas(timesteps[1:] + [timesteps[-1]], device)
    # One flow shared by every batch item and every step: its per-level resized copies are made
    # once per run, not once per UNet call.
    warp = FlowWarpContext(flow[None].to(device, torch.float32), official_compat)

    def with_reference(i: int, x: torch.Tensor) -> torch.Tensor:
        # Selective noising: frame 0 is always the clean reference latent.
        x = x.clone()
        x[:, :, :1] = ref_latent
        return x

    def call(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(x, t, run.context, flow=warp, official_compat=official_compat)

    def after_step(i: int, x: torch.Tensor) -> torch.Tensor:
        if blend_active and i + 1 < len(timesteps):
            # Static regions follow the reference, re-noised to the next step's level with the
            # same initial noise (official quirk Q8: not after the last step).
            pinned = noised(ref_latent, blend_noise, blend_alphas[i])
            x = pinned * blend + x * (1 - blend)
        return x

    x, step_latents = run.sample(call, noise, progress=progress, cancel=cancel, keep_step_latents=keep_step_latents,
                                 before_step=with_reference, after_step=after_step)
    x = with_reference(len(timesteps), x)
    decoded = run.decode(vae, x, decode_batch, "video frames")
    frames = (decoded / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu()
    return RenderResult(frames=frames, latents=x.cpu(), step_latents=step_latents)
