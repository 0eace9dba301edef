"""What both generation stages do alike: check the request, draw seeded noise, batch the text for
classifier-free guidance, encode the reference, run the sampler with progress / cancel, decode
the frames and check that they are finite."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch

from motion_i2v_core.models.vae_frames import decode_frames, encode_frames
from motion_i2v_core.schedulers import DDIMSchedule, SamplerStep, SamplingCancelled, get_sampler

LATENT_SCALE = 0.18215  # SD1.5 latent scaling (both stages; NOT used for the control latent)
MAX_FRAMES = 16  # stage 2's temporal position table (32 rows) holds the 2F-1 interleaved tokens

# progress(step, total, denoised): step counts from 1; denoised is the step's clean-latent estimate.
ProgressFn = Callable[[int, int, Optional[torch.Tensor]], None]
CancelFn = Callable[[], Optional[bool]]
ModelCall = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = ["LATENT_SCALE", "MAX_FRAMES", "NonFiniteError", "Run", "SamplingCancelled", "check_frames", "prepare_run"]


class NonFiniteError(RuntimeError):
    """A stage produced NaN or infinite values (usually half precision overflowing)."""


class NoiseSource:
    """Draws Gaussian noise from one seeded CPU generator, in call order.

    Drawing on the CPU makes a seed give the same numbers on every device; the
    draws are then moved to the working device and dtype.
    """

    def __init__(self, seed: int):
        self.generator = torch.Generator(device="cpu").manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)

    def randn(self, shape, device, dtype=torch.float32) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, dtype=torch.float32).to(device=device, dtype=dtype)


def check_frames(num_frames: int) -> None:
    if not 2 <= int(num_frames) <= MAX_FRAMES:
        raise ValueError(
            f"{num_frames} frames requested; Motion-I2V renders 2 to {MAX_FRAMES} frames "
            f"(its temporal position table has 32 rows for the 2F-1 tokens). Use at most {MAX_FRAMES}."
        )


def check_noise(noise: torch.Tensor, shape, what: str) -> torch.Tensor:
    if tuple(noise.shape) != tuple(shape):
        raise ValueError(f"{what} has shape {tuple(noise.shape)}, expected {tuple(shape)}")
    return noise


def check_guidance(guidance: float) -> bool:
    """True when classifier-free guidance needs the unconditional branch."""
    if not (guidance == guidance) or guidance < 0:  # NaN or negative
        raise ValueError(f"guidance {guidance} must be a number >= 0 (1 = no guidance, 7 = official)")
    return guidance != 1.0


def check_text(cond: torch.Tensor, uncond: Optional[torch.Tensor], cross_dim: int, what: str):
    """Text embeddings must be (1, L, D) (or (L, D)) with D the UNet's cross-attention width."""
    cond = cond[None] if cond.ndim == 2 else cond
    if uncond is not None and uncond.ndim == 2:
        uncond = uncond[None]
    for name, t in (("positive", cond), ("negative", uncond)):
        if t is None:
            continue
        if t.ndim != 3 or t.shape[0] != 1:
            raise ValueError(f"{what}: {name} text embedding has shape {tuple(t.shape)}, expected (1, tokens, {cross_dim})")
        if t.shape[-1] != cross_dim:
            raise ValueError(
                f"{what}: {name} text embedding width is {t.shape[-1]} but the model expects {cross_dim}; "
                "use an SD1.5 CLIP text encoder (768-wide) for the official weights"
            )
    if uncond is not None and cond.shape[-2] != uncond.shape[-2]:
        # Concatenating for a batched CFG call needs equal token counts; pad the shorter one
        # by repeating its last token, like ComfyUI does for long prompts.
        n = max(cond.shape[-2], uncond.shape[-2])
        cond, uncond = _pad_tokens(cond, n), _pad_tokens(uncond, n)
    return cond, uncond


def _pad_tokens(t: torch.Tensor, n: int) -> torch.Tensor:
    if t.shape[-2] == n:
        return t
    extra = t[:, -1:].expand(t.shape[0], n - t.shape[-2], t.shape[-1])
    return torch.cat([t, extra], dim=1)


def guided(eps: torch.Tensor, guidance: float) -> torch.Tensor:
    """Combine a [uncond, cond] batch: eps_u + g * (eps_c - eps_u)."""
    eps_u, eps_c = eps.chunk(2)
    return eps_u + guidance * (eps_c - eps_u)


def module_device_dtype(module: torch.nn.Module):
    """Where and in which dtype a module computes: its `compute_device` / `compute_dtype` attributes
    when the host sets them (ComfyUI may keep part of the weights on the CPU, or store them in fp8
    and cast them on the fly), otherwise its first parameter's."""
    p = next(module.parameters())
    return getattr(module, "compute_device", None) or p.device, getattr(module, "compute_dtype", None) or p.dtype


def _precision_advice(dtype: torch.dtype) -> str:
    if dtype == torch.float16:
        return "float16 overflowed: load the models in bf16 (same speed on recent GPUs) or fp32"
    if dtype != torch.float32:
        return f"{str(dtype).replace('torch.', '')} lost too much: load the models in fp32"
    return "this happens even in fp32, so the weights or the inputs are broken: check the model files"


def check_finite(t: torch.Tensor, stage: str, what: str, dtype: torch.dtype) -> torch.Tensor:
    """Raise a NonFiniteError naming the stage and the precision to try when ``t`` has NaN / inf."""
    if not bool(torch.isfinite(t).all()):  # one sync per stage, after sampling
        precision = str(dtype).replace("torch.", "")
        raise NonFiniteError(f"{stage}: {what} contains NaN or infinite values at {precision} precision; "
                             f"{_precision_advice(dtype)}.")
    return t


def reference_latent(vae, pixels: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """0.18215 x the posterior of one (C, H, W) frame: its mean, or mean + std * noise.
    Returns (1, 4, h, w) float32 on the VAE's device."""
    mean, std = encode_frames(vae, pixels[None].to(*module_device_dtype(vae)))
    latent = mean.float() if noise is None else mean.float() + std.float() * noise.to(mean.device, torch.float32)
    return latent * LATENT_SCALE


@dataclass
class Run:
    """The checked request and the state both stages set up the same way before sampling."""

    stage: str  # "stage 1 (Predict Flow)" etc., for error messages
    device: torch.device
    dtype: torch.dtype  # the UNet's
    height: int
    width: int
    guidance: float
    use_cfg: bool
    context: torch.Tensor  # (batch, L, D) on the device: [uncond, cond] with CFG
    static_mask: torch.Tensor  # (H, W) float32 on the CPU, 1 = keep still
    rng: NoiseSource
    schedule: DDIMSchedule
    timesteps: List[int]
    sample_fn: Callable

    @property
    def h(self) -> int:
        return self.height // 8

    @property
    def w(self) -> int:
        return self.width // 8

    @property
    def batch(self) -> int:
        return 2 if self.use_cfg else 1

    def initial_noise(self, noise: Optional[torch.Tensor], shape: Sequence[int], what: str,
                      draw_shape: Optional[Sequence[int]] = None) -> torch.Tensor:
        """The caller's noise (checked) or a seeded draw of ``draw_shape`` (sliced to ``shape``), float32."""
        if noise is None:
            noise = self.rng.randn(tuple(draw_shape or shape), self.device)[tuple(slice(0, s) for s in shape)]
        return check_noise(noise, shape, what).to(self.device, torch.float32)

    def reference_latent(self, vae, pixels: torch.Tensor, official_compat: bool,
                         image_noise: Optional[torch.Tensor]) -> torch.Tensor:
        """The reference latent: the posterior mean, or (official_compat) a sample with
        ``image_noise`` (drawn after the initial noise when None)."""
        if official_compat and image_noise is None:
            image_noise = self.rng.randn((1, 4, self.h, self.w), self.device)
        return reference_latent(vae, pixels, image_noise if official_compat else None)

    def sample(self, call: ModelCall, noise: torch.Tensor, *, progress: Optional[ProgressFn] = None,
               cancel: Optional[CancelFn] = None, keep_step_latents: bool = False,
               before_step=None, after_step=None):
        """Run the sampler from ``noise``; ``call(x_batch, t) -> eps_batch`` is the model on the CFG
        batch (x in the UNet's dtype, expanded to ``batch``). Returns (latents, per-step latents)."""
        step_latents: List[torch.Tensor] = []
        batch, dtype, guidance, use_cfg = self.batch, self.dtype, self.guidance, self.use_cfg

        def eps_fn(x: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
            eps = call(x.to(dtype).expand(batch, *x.shape[1:]), t).float()
            return guided(eps, guidance) if use_cfg else eps

        def callback(step: SamplerStep) -> None:
            if keep_step_latents:
                step_latents.append(step.x.detach().clone())
            if progress is not None:
                progress(step.index + 1, step.total, step.denoised)

        x = self.sample_fn(eps_fn, noise, self.schedule, self.timesteps, callback=callback, cancel=cancel,
                           before_step=before_step, after_step=after_step)
        return x, step_latents

    def decode(self, vae, latents: torch.Tensor, chunk: Optional[int], what: str,
               out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(1, 4, F, h, w) latents -> (F, C, H, W) float32 frames, in chunks; non-finite values raise."""
        check_finite(latents, self.stage, f"the sampled {what} latent", self.dtype)
        vae_device, vae_dtype = module_device_dtype(vae)
        frames = (latents[0].transpose(0, 1) / LATENT_SCALE).to(vae_device, vae_dtype)
        decoded = decode_frames(vae, frames, chunk, out_dtype=out_dtype)
        return check_finite(decoded, self.stage, f"the decoded {what}", vae_dtype)


def prepare_run(stage: str, unet, image01: torch.Tensor, cond: torch.Tensor, uncond: Optional[torch.Tensor], *,
                guidance: float, static_mask: Optional[torch.Tensor], seed: int, sampler: str, steps: int) -> Run:
    """Check what both stages take alike and set up the run (nothing is encoded yet)."""
    if image01.ndim != 3 or image01.shape[0] != 3:
        raise ValueError(f"{stage}: the image must be (3, H, W) in [0, 1], got shape {tuple(image01.shape)}")
    _, height, width = image01.shape
    if height % 8 or width % 8:
        raise ValueError(f"image size {width}x{height} must be a multiple of 8 (of 64 for the official models)")
    device, dtype = module_device_dtype(unet)
    use_cfg = check_guidance(guidance)
    if use_cfg and uncond is None:
        raise ValueError("guidance != 1 needs a negative (unconditional) text embedding")
    cond, uncond = check_text(cond, uncond if use_cfg else None, unet.config.cross_attention_dim, stage)
    if static_mask is None:
        static_mask = torch.zeros(height, width)
    if tuple(static_mask.shape) != (height, width):
        raise ValueError(f"static mask is {tuple(static_mask.shape)}, expected ({height}, {width}) like the image")
    sample_fn = get_sampler(sampler)
    schedule = DDIMSchedule()
    timesteps = schedule.timesteps(steps)
    context = (torch.cat([uncond, cond]) if use_cfg else cond).to(device, dtype)
    return Run(stage, device, dtype, height, width, float(guidance), use_cfg, context,
               static_mask.float().cpu(), NoiseSource(seed), schedule, timesteps, sample_fn)
