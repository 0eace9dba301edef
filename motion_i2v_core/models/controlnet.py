"""Stage-1 sparse-motion ControlNet (``ControlNet3D``), attached to the flow UNet as child ``controlnet``.

The UNet's down half (``UNetEncoder``: embeddings, down path and mid block, motion modules included) with
its own weights; the 5-channel control (4 flow-VAE latent channels + the hint mask) enters through a
Conv3d stem added to the ``conv_in`` output. Outputs 12 down residuals (one per UNet skip) and one mid
residual, each through a 1x1 "zero conv".
"""

from __future__ import annotations

import torch
from torch import nn

from motion_i2v_core.models.config import UNetConfig
from motion_i2v_core.models.operations import torch_ops
from motion_i2v_core.models.resnet import from_frames, to_frames
from motion_i2v_core.models.unet_blocks import skip_channels
from motion_i2v_core.models.unet_encoder import UNetEncoder


class ControlNetConditioningEmbedding(nn.Module):
    """``layers.0`` Conv3d(cond, hidden, (1,3,3)) -> SiLU -> ``layers.2`` Conv3d(hidden, C0, (1,3,3))."""

    def __init__(
        self, cond_channels: int, hidden: int, out_channels: int, dtype=None, device=None, operations=torch_ops
    ):
        super().__init__()
        kw = dict(kernel_size=(1, 3, 3), padding=(0, 1, 1), dtype=dtype, device=device)
        self.layers = nn.Sequential(
            operations.Conv3d(cond_channels, hidden, **kw), nn.SiLU(), operations.Conv3d(hidden, out_channels, **kw)
        )

    def forward(self, control: torch.Tensor) -> torch.Tensor:
        return self.layers(control)


class ControlNet3D(UNetEncoder):
    def __init__(self, cfg: UNetConfig, dtype=None, device=None, operations=torch_ops, compute_dtype=None):
        super().__init__(cfg, dtype=dtype, device=device, operations=operations, compute_dtype=compute_dtype)
        kw = dict(dtype=dtype, device=device)
        c0 = cfg.block_out_channels[0]
        self.controlnet_cond_embedding = ControlNetConditioningEmbedding(
            cfg.controlnet_conditioning_channels, cfg.controlnet_conditioning_hidden, c0, operations=operations, **kw
        )
        self.controlnet_down_blocks = nn.ModuleList([operations.Conv2d(c, c, 1, **kw) for c in skip_channels(cfg)])
        last = cfg.block_out_channels[-1]
        self.controlnet_mid_block = operations.Conv2d(last, last, 1, **kw)

    def frame_residuals(
        self,
        sample: torch.Tensor,
        timestep,
        stride,
        context: torch.Tensor,
        control: torch.Tensor,
        scale: float = 1.0,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Residuals in frame-batched layout ``(B*F, C, h, w)`` (what the UNet adds to its skips)."""
        cfg = self.config
        batch, _, frames, height, width = sample.shape
        expected = (batch, cfg.controlnet_conditioning_channels, frames, height, width)
        if tuple(control.shape) != expected:
            raise ValueError(f"control must have shape {expected} (latent channels + mask), got {tuple(control.shape)}")
        dtype = self.dtype
        temb = self.frame_embedding(timestep, stride, batch, frames, sample.device)
        context = context.to(dtype)
        x = self.conv_in(to_frames(sample.to(dtype)))
        x = x + to_frames(self.controlnet_cond_embedding(control.to(dtype)))
        x, skips = self.encode(x, temb, context, frames)
        down = [conv(s) * scale for conv, s in zip(self.controlnet_down_blocks, skips)]
        return down, self.controlnet_mid_block(x) * scale

    def forward(self, sample, timestep, stride, context, control, scale: float = 1.0):
        """-> (12 down residuals, mid residual), each ``(B, C, F, h, w)``."""
        frames = sample.shape[2]
        down, mid = self.frame_residuals(sample, timestep, stride, context, control, scale)
        return [from_frames(r, frames) for r in down], from_frames(mid, frames)
