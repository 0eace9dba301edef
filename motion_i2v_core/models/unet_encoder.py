"""The down half of the inflated UNet: ``conv_in``, the embeddings, the down blocks and the mid block.

Both UNets are built on it, and so is the stage-1 ControlNet, which is this half with its own weights plus a
condition stem and zero convs: one implementation of the down path, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from motion_i2v_core.models.config import UNetConfig
from motion_i2v_core.models.embeddings import (
    TimestepEmbedding, batch_stride, batch_timesteps, time_and_stride_embedding, timestep_sinusoid,
)
from motion_i2v_core.models.motion_module import FlowWarpContext
from motion_i2v_core.models.operations import resolve_compute_dtype, torch_ops
from motion_i2v_core.models.unet_blocks import UNetMidBlock3DCrossAttn, build_down_blocks


class UNetEncoder(nn.Module):
    """``conv_in``, ``time_embedding`` (+ ``stride_embedding`` when the config has one), ``down_blocks``,
    ``mid_block``.

    ``dtype``/``device``/``operations`` build the layers (see ``models.operations``); ``compute_dtype`` is the
    dtype inputs are cast to and activations use (default: that of the weights; required for float8
    weights). Setting ``compute_dtype`` also sets it on child encoders (the ControlNet of the flow UNet).
    """

    def __init__(self, cfg: UNetConfig, dtype=None, device=None, operations=torch_ops, compute_dtype=None):
        super().__init__()
        kw = dict(dtype=dtype, device=device, operations=operations)
        self.config = cfg
        self.compute_dtype = compute_dtype
        c0 = cfg.block_out_channels[0]
        self.conv_in = operations.Conv2d(cfg.in_channels, c0, 3, padding=1, dtype=dtype, device=device)
        self.time_embedding = TimestepEmbedding(c0, cfg.time_embed_dim, **kw)
        self.stride_embedding = TimestepEmbedding(c0, cfg.time_embed_dim, **kw) if cfg.stride_embedding else None
        self.down_blocks = build_down_blocks(cfg, **kw)
        self.mid_block = UNetMidBlock3DCrossAttn(cfg, cfg.block_out_channels[-1], **kw)

    @property
    def compute_dtype(self) -> Optional[torch.dtype]:
        return self._compute_dtype

    @compute_dtype.setter
    def compute_dtype(self, value: Optional[torch.dtype]) -> None:
        self._compute_dtype = value
        for child in self.children():
            if isinstance(child, UNetEncoder):
                child.compute_dtype = value

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (inputs are cast to it)."""
        return resolve_compute_dtype(self.conv_in.weight.dtype, self.compute_dtype)

    def sinusoid(self, values: torch.Tensor) -> torch.Tensor:
        """Timestep sinusoid of 1-D ``values`` in the compute dtype."""
        cfg = self.config
        emb = timestep_sinusoid(values, cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift)
        return emb.to(self.dtype)

    def frame_embedding(self, timestep, stride, batch: int, frames: int, device) -> torch.Tensor:
        """Per-frame embedding ``(B*F, D)``: time (+ stride of each frame's offset) MLPs.

        ``timestep``: a 0-d or ``(1,)`` / ``(B,)`` tensor (ideally already on ``device``) or a number;
        ``stride``: ``(B0, F)`` frame offsets, needed with a stride embedding and ignored without.
        """
        cfg = self.config
        timesteps = batch_timesteps(timestep, batch, device)
        if self.stride_embedding is None:
            emb = self.time_embedding(self.sinusoid(timesteps))[:, None].expand(batch, frames, -1)
        else:
            if stride is None:
                raise ValueError("this network has a stride embedding: pass stride (B0, F)")
            emb = time_and_stride_embedding(
                self.time_embedding, self.stride_embedding, timesteps, batch_stride(stride, batch, frames, device),
                cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift, self.dtype,
            )
        return emb.reshape(batch * frames, -1)

    def encode(self, x, temb, context, frames: int, warp: Optional[FlowWarpContext] = None):
        """``x`` = the ``conv_in`` output (plus any stem) -> (mid-block output, skips: ``x`` then every down
        layer / downsampler output)."""
        skips = [x]
        for block in self.down_blocks:
            x, block_skips = block(x, temb, context, frames, warp)
            skips.extend(block_skips)
        return self.mid_block(x, temb, context, frames, warp), skips
