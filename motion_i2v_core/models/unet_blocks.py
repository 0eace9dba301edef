"""Down / mid / up blocks of the inflated SD1.5 UNet, with a motion module after every layer.

Layer order inside a block: ResNet -> spatial transformer (cross-attention blocks only) -> motion module.
All blocks work on frame-batched ``(B*F, C, H, W)`` tensors; ``temb`` is ``(B*F, D)`` (one embedding per
frame), ``context`` the text ``(B, M, D_text)``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from motion_i2v_core.models.config import UNetConfig
from motion_i2v_core.models.motion_module import FlowWarpContext, VanillaTemporalModule
from motion_i2v_core.models.operations import torch_ops
from motion_i2v_core.models.resnet import Downsample3D, ResnetBlock3D, Upsample3D
from motion_i2v_core.models.spatial_attention import SpatialTransformer3D


def _motion_module(cfg: UNetConfig, channels: int, **kw) -> VanillaTemporalModule:
    return VanillaTemporalModule(
        channels, cfg.motion_module_heads, cfg.motion_module_norm_groups, cfg.motion_module_pe_max_len, **kw
    )


def _spatial_transformer(cfg: UNetConfig, channels: int, **kw) -> SpatialTransformer3D:
    return SpatialTransformer3D(channels, cfg.attention_heads, cfg.cross_attention_dim, cfg.norm_num_groups, **kw)


def _resnet(cfg: UNetConfig, cin: int, cout: int, **kw) -> ResnetBlock3D:
    return ResnetBlock3D(cin, cout, cfg.time_embed_dim, cfg.norm_num_groups, cfg.norm_eps, **kw)


class _LayerStack(nn.Module):
    """Layers ``i = 0..n-1`` of a block: ResNet (``in_channels[i]`` -> ``out_channels``), spatial transformer
    (cross-attention blocks only), motion module."""

    def __init__(self, cfg: UNetConfig, in_channels: list[int], out_channels: int, cross_attention: bool, **kw):
        super().__init__()
        n = len(in_channels)
        self.resnets = nn.ModuleList([_resnet(cfg, c, out_channels, **kw) for c in in_channels])
        if cross_attention:
            self.attentions = nn.ModuleList([_spatial_transformer(cfg, out_channels, **kw) for _ in range(n)])
        else:
            self.attentions = None
        self.motion_modules = nn.ModuleList([_motion_module(cfg, out_channels, **kw) for _ in range(n)])

    def layer(self, i: int, x, temb, context, num_frames: int, warp: Optional[FlowWarpContext]) -> torch.Tensor:
        x = self.resnets[i](x, temb)
        if self.attentions is not None:
            x = self.attentions[i](x, context, num_frames)
        return self.motion_modules[i](x, num_frames, warp)


class DownBlock3D(_LayerStack):
    """``num_layers`` x [ResNet, (spatial transformer), motion module] + optional stride-2 downsampler.

    Returns the block output and the skip tensors (every layer output, then the downsampler output).
    """

    def __init__(self, cfg: UNetConfig, in_channels: int, out_channels: int, num_layers: int, add_downsample: bool,
                 cross_attention: bool = False, dtype=None, device=None, operations=torch_ops):
        kw = dict(dtype=dtype, device=device, operations=operations)
        layer_inputs = [in_channels] + [out_channels] * (num_layers - 1)
        super().__init__(cfg, layer_inputs, out_channels, cross_attention, **kw)
        self.downsamplers = nn.ModuleList([Downsample3D(out_channels, **kw)]) if add_downsample else None

    def forward(self, x, temb, context, num_frames: int, warp: Optional[FlowWarpContext] = None):
        """-> (block output, skips)."""
        skips = []
        for i in range(len(self.resnets)):
            x = self.layer(i, x, temb, context, num_frames, warp)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class CrossAttnDownBlock3D(DownBlock3D):
    def __init__(self, cfg, in_channels, out_channels, num_layers, add_downsample, **kw):
        super().__init__(cfg, in_channels, out_channels, num_layers, add_downsample, True, **kw)


class UNetMidBlock3DCrossAttn(_LayerStack):
    """ResNet 0 -> spatial transformer 0 -> motion module 0 -> ResNet 1."""

    def __init__(self, cfg: UNetConfig, channels: int, dtype=None, device=None, operations=torch_ops):
        kw = dict(dtype=dtype, device=device, operations=operations)
        super().__init__(cfg, [channels], channels, True, **kw)
        self.resnets.append(_resnet(cfg, channels, channels, **kw))

    def forward(self, x, temb, context, num_frames, warp=None):
        return self.resnets[1](self.layer(0, x, temb, context, num_frames, warp), temb)


class UpBlock3D(_LayerStack):
    """``num_layers`` x [cat(x, skip), ResNet, (spatial transformer), motion module] + optional upsampler.

    ``skip_channels[i]`` is the channel count of the skip consumed by layer i.
    """

    def __init__(self, cfg: UNetConfig, prev_channels: int, out_channels: int, skip_channels: list[int],
                 add_upsample: bool, cross_attention: bool = False, dtype=None, device=None, operations=torch_ops):
        kw = dict(dtype=dtype, device=device, operations=operations)
        layer_inputs = [(prev_channels if i == 0 else out_channels) + c for i, c in enumerate(skip_channels)]
        super().__init__(cfg, layer_inputs, out_channels, cross_attention, **kw)
        self.upsamplers = nn.ModuleList([Upsample3D(out_channels, **kw)]) if add_upsample else None

    def forward(
        self,
        x: torch.Tensor,
        skips: list[torch.Tensor],
        temb: torch.Tensor,
        context: torch.Tensor,
        num_frames: int,
        warp: Optional[FlowWarpContext] = None,
        upsample_size: Optional[tuple[int, int]] = None,
    ) -> torch.Tensor:
        """``skips`` are consumed from the end (the most recent skip first)."""
        for i in range(len(self.resnets)):
            x = self.layer(i, torch.cat([x, skips.pop()], dim=1), temb, context, num_frames, warp)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, upsample_size)
        return x


class CrossAttnUpBlock3D(UpBlock3D):
    def __init__(self, cfg, prev_channels, out_channels, skip_channels, add_upsample, **kw):
        super().__init__(cfg, prev_channels, out_channels, skip_channels, add_upsample, True, **kw)


def skip_channels(cfg: UNetConfig) -> list[int]:
    """Channels of the skip tensors in push order: conv_in output, then each down layer / downsampler."""
    chans = [cfg.block_out_channels[0]]
    last = len(cfg.block_out_channels) - 1
    for i, c in enumerate(cfg.block_out_channels):
        chans += [c] * cfg.layers_per_block
        if i < last:
            chans.append(c)
    return chans


def build_down_blocks(cfg: UNetConfig, **kw) -> nn.ModuleList:
    """SD1.5 layout: cross-attention blocks with a downsampler, the last level a plain block without."""
    blocks = []
    last = len(cfg.block_out_channels) - 1
    prev = cfg.block_out_channels[0]
    for i, c in enumerate(cfg.block_out_channels):
        cls = CrossAttnDownBlock3D if i < last else DownBlock3D
        blocks.append(cls(cfg, prev, c, cfg.layers_per_block, i < last, **kw))
        prev = c
    return nn.ModuleList(blocks)


def build_up_blocks(cfg: UNetConfig, **kw) -> nn.ModuleList:
    """Mirror of the down path: a plain block first, then cross-attention blocks; layers_per_block + 1 layers."""
    skips = skip_channels(cfg)
    reversed_channels = list(reversed(cfg.block_out_channels))
    blocks = []
    prev = reversed_channels[0]
    last = len(reversed_channels) - 1
    for i, c in enumerate(reversed_channels):
        layer_skips = [skips.pop() for _ in range(cfg.layers_per_block + 1)]
        cls = UpBlock3D if i == 0 else CrossAttnUpBlock3D
        blocks.append(cls(cfg, prev, c, layer_skips, i < last, **kw))
        prev = c
    return nn.ModuleList(blocks)
