"""Pieces both generation stages share: seeded noise, classifier-free guidance,
frame-by-frame VAE calls and the progress / cancel plumbing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from motion_i2v_core.schedulers import SamplingCancelled

LATENT_SCALE = 0.18215  # SD1.5 latent scaling (both stages; NOT used for the control latent)

ProgressFn = Callable[[int, int, Optional[torch.Tensor]], None]
CancelFn = Callable[[], Optional[bool]]


class NoiseSource:
    """Draws Gaussian noise from one seeded CPU generator, in call order.

    Drawing on the CPU makes a seed give the same numbers on every device; the
    draws are then moved to the working device and dtype.
    """

    def __init__(self, seed: int):
        self.generator = torch.Generator(device="cpu").manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)

    def randn(self, shape, device, dtype=torch.float32) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, dtype=torch.float32).to(device=device, dtype=dtype)


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


@dataclass
class StepReporter:
    """Calls the host's progress and cancel hooks once per sampling step."""

    total: int
    progress: Optional[ProgressFn] = None
    cancel: Optional[CancelFn] = None

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise SamplingCancelled("generation was cancelled")

    def step_done(self, step: int, latent: Optional[torch.Tensor]) -> None:
        if self.progress is not None:
            self.progress(step + 1, self.total, latent)


def vae_encode_frames(vae, frames: torch.Tensor):
    """Encode (N, C, H, W) one frame at a time (as the official pipelines do), in the VAE's own
    device and dtype (a VAE may run in another dtype than the UNets); returns (mean, std)."""
    device, dtype = module_device_dtype(vae)
    means, stds = [], []
    for frame in frames.to(device, dtype).split(1):
        posterior = vae.encode(frame)
        means.append(posterior.mean)
        stds.append(posterior.std)
    return torch.cat(means), torch.cat(stds)


def vae_decode_frames(vae, latents: torch.Tensor, batch: int = 1) -> torch.Tensor:
    """Decode (N, 4, h, w) in chunks of `batch` frames, in the VAE's own device and dtype; returns (N, C, H, W)."""
    device, dtype = module_device_dtype(vae)
    return torch.cat([vae.decode(chunk.to(device, dtype)) for chunk in latents.split(max(1, batch))])


def module_device_dtype(module: torch.nn.Module):
    """Where and in which dtype a module computes: its `compute_device` / `compute_dtype` attributes
    when the host sets them (ComfyUI may keep part of the weights on the CPU, or store them in fp8
    and cast them on the fly), otherwise its first parameter's."""
    p = next(module.parameters())
    return getattr(module, "compute_device", None) or p.device, getattr(module, "compute_dtype", None) or p.dtype
