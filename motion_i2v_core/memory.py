"""How much device memory a generation needs beyond its weights: an estimate per stage and phase.

A host that manages memory (ComfyUI's `load_models_gpu(memory_required=...)`) frees room for this
much before a stage runs, as ComfyUI's own `memory_required` of its model_base does for its models.
Like that one, each estimate is linear in the activation elements of the phase: batch (2 with
classifier-free guidance) x frames x latent pixels for the UNets, frames x image pixels for the VAEs,
times the first block's channel width and the compute dtype's size, times a factor.

The factors are upper bounds of the activation peak measured on the real modules at SD-1.5 widths
(live tensor bytes under a fake-tensor run; 512x320, 16 frames, CFG, fp16):
  flow UNet + ControlNet forward  29.2 bytes per (element x channel x dtype byte)   1.34 GiB
  render UNet forward             24.5                                               1.20 GiB
  VAE encode                       5.0 per (image pixel x channel x dtype byte)      0.195 GiB per frame
  VAE decode                       6.05                                              0.236 GiB per frame
plus a 25 % margin, so allocator fragmentation and kernel workspaces fit too. The weights are not
included: the host knows their size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import torch

from motion_i2v_core.models.config import UNetConfig, VAEConfig

GIB = 1024 ** 3
MARGIN = 1.25
FLOW_UNET_FACTOR = 29.2 * MARGIN
RENDER_UNET_FACTOR = 24.5 * MARGIN
VAE_ENCODE_FACTOR = 5.0 * MARGIN
VAE_DECODE_FACTOR = 6.05 * MARGIN
LATENT_DOWNSCALE = 8


def dtype_size(dtype: torch.dtype) -> int:
    """Bytes per element of the compute dtype (fp8 weights compute in fp16/bf16: pass that)."""
    return torch.empty((), dtype=dtype).element_size()


@dataclass(frozen=True)
class MemoryEstimate:
    """Activation bytes of each phase of a run; `peak` is what the run needs at its worst moment."""

    phases: Mapping[str, int] = field(default_factory=dict)

    @property
    def peak(self) -> int:
        return max(self.phases.values(), default=0)

    @property
    def peak_phase(self) -> Optional[str]:
        return max(self.phases, key=self.phases.get) if self.phases else None

    def describe(self) -> str:
        parts = ", ".join(f"{name} {n / GIB:.2f}" for name, n in self.phases.items())
        return f"peak {self.peak / GIB:.2f} GiB ({parts} GiB)"


def unet_forward_bytes(channels: int, batch: int, frames: int, height: int, width: int,
                       dtype: torch.dtype, factor: float) -> int:
    """One UNet call on (batch, C, frames, height/8, width/8); `channels` = block_out_channels[0]."""
    elements = batch * frames * (height // LATENT_DOWNSCALE) * (width // LATENT_DOWNSCALE)
    return int(elements * channels * dtype_size(dtype) * factor)


def vae_bytes(channels: int, frames: int, height: int, width: int, dtype: torch.dtype, factor: float) -> int:
    """One VAE encode or decode call on `frames` frames at height x width pixels."""
    return int(max(1, frames) * height * width * channels * dtype_size(dtype) * factor)


def classifier_free_batch(guidance: float) -> int:
    """The UNet batch: guidance 1 runs the conditional branch only, otherwise both."""
    return 1 if guidance == 1.0 else 2


def control_encode_estimate(flow_vae: VAEConfig, num_frames: int, height: int, width: int,
                            vae_dtype: torch.dtype, chunk: Optional[int] = None) -> int:
    """Flow-VAE encode of the num_frames-1 control frames, `chunk` frames per call (None = all at once)."""
    frames = num_frames - 1 if chunk is None else min(chunk, num_frames - 1)
    return vae_bytes(flow_vae.block_out_channels[0], frames, height, width, vae_dtype, VAE_ENCODE_FACTOR)


def stage1_estimate(unet: UNetConfig, flow_vae: VAEConfig, image_vae: VAEConfig, *, num_frames: int, height: int, width: int, guidance: float,
                    unet_dtype: torch.dtype, vae_dtype: torch.dtype, flow_vae_dtype: Optional[torch.dtype] = None,
                    encode_control: bool = True, control_chunk: Optional[int] = None,
                    decode_batch: int = 1) -> MemoryEstimate:
    """Predict Flow: reference encode, (neutral) control encode, the flow UNet steps, the flow decode."""
    flow_vae_dtype = flow_vae_dtype or vae_dtype
    unet_channels = unet.block_out_channels[0]
    flow_vae_channels, image_vae_channels = flow_vae.block_out_channels[0], image_vae.block_out_channels[0]
    phases = {
        "reference_encode": vae_bytes(image_vae_channels, 1, height, width, vae_dtype, VAE_ENCODE_FACTOR),
        "flow_unet": unet_forward_bytes(unet_channels, classifier_free_batch(guidance), num_frames - 1,
                                        height, width, unet_dtype, FLOW_UNET_FACTOR),
        # The flow is decoded in float32 whatever the flow VAE's dtype (pipelines keep flows exact).
        "flow_decode": vae_bytes(flow_vae_channels, min(decode_batch, num_frames - 1), height, width,
                                 torch.float32, VAE_DECODE_FACTOR),
    }
    if encode_control:
        phases["control_encode"] = control_encode_estimate(flow_vae, num_frames, height, width,
                                                           flow_vae_dtype, control_chunk)
    return MemoryEstimate(phases)


TEMPORAL_ATTENTIONS_PER_MODULE = 2  # the official "Vanilla" motion module: two temporal self-attentions


def kept_kv_bytes(unet: UNetConfig, dtype: torch.dtype) -> int:
    """What the render UNet keeps after its first call: one stacked K/V projection weight (2 C x C) per
    temporal attention, for the fast backends (ops/, TemporalAttention.stacked_kv_weight). A motion
    module follows every resnet: layers_per_block per level down, one more up, one in the mid block.
    Counted whatever the backend, so the bound holds on every device (0.15 GiB at SD-1.5 size in fp16)."""
    modules_per_level = 2 * unet.layers_per_block + 1
    squares = sum(modules_per_level * c * c for c in unet.block_out_channels) + unet.block_out_channels[-1] ** 2
    return TEMPORAL_ATTENTIONS_PER_MODULE * 2 * squares * dtype_size(dtype)


def stage2_estimate(unet: UNetConfig, vae: VAEConfig, *, num_frames: int, height: int, width: int,
                    guidance: float, unet_dtype: torch.dtype, vae_dtype: torch.dtype,
                    decode_batch: int = 1) -> MemoryEstimate:
    """Render Video: reference encode, the render UNet steps, the video decode."""
    unet_channels, vae_channels = unet.block_out_channels[0], vae.block_out_channels[0]
    return MemoryEstimate({
        "reference_encode": vae_bytes(vae_channels, 1, height, width, vae_dtype, VAE_ENCODE_FACTOR),
        "render_unet": unet_forward_bytes(unet_channels, classifier_free_batch(guidance), num_frames,
                                          height, width, unet_dtype, RENDER_UNET_FACTOR)
        + kept_kv_bytes(unet, unet_dtype),
        "video_decode": vae_bytes(vae_channels, min(decode_batch, num_frames), height, width, vae_dtype,
                                  VAE_DECODE_FACTOR),
    })
