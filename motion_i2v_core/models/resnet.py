"""Per-frame ("inflated") ResNet block, down- and upsampler.

Every module of the UNet works on frame-batched tensors ``(B*F, C, H, W)`` (frames of one video are
consecutive rows). The official "InflatedConv3d" / "InflatedGroupNorm" are a Conv2d / GroupNorm applied
per frame, which is exactly a plain Conv2d / GroupNorm on that layout, so their weights stay 4-D.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from motion_i2v_core.models.operations import torch_ops


def to_frames(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, F, H, W)`` -> ``(B*F, C, H, W)``."""
    return rearrange(x, "b c f h w -> (b f) c h w")


def from_frames(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(B*F, C, H, W)`` -> ``(B, C, F, H, W)``."""
    return rearrange(x, "(b f) c h w -> b c f h w", f=num_frames)


class ResnetBlock3D(nn.Module):
    """``out = shortcut(x) + conv2(SiLU(GN2(conv1(SiLU(GN1(x))) + temb_proj)))``, everything per frame.

    ``temb`` is the per-frame embedding ``(B*F, temb_channels)``. Activations and additions work in place
    on the fresh outputs of the norms and convs (same values, fewer full-size temporaries; autograd-safe).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        groups: int,
        eps: float,
        dtype=None,
        device=None,
        operations=torch_ops,
    ):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        ops = operations
        self.norm1 = ops.GroupNorm(groups, in_channels, eps=eps, affine=True, **kw)
        self.conv1 = ops.Conv2d(in_channels, out_channels, 3, padding=1, **kw)
        self.time_emb_proj = ops.Linear(temb_channels, out_channels, **kw)
        self.norm2 = ops.GroupNorm(groups, out_channels, eps=eps, affine=True, **kw)
        self.conv2 = ops.Conv2d(out_channels, out_channels, 3, padding=1, **kw)
        self.conv_shortcut = (
            ops.Conv2d(in_channels, out_channels, 1, **kw) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h += self.time_emb_proj(F.silu(temb)).to(h.dtype)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        shortcut = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        return h.add_(shortcut)  # == shortcut + h bitwise (addition commutes exactly)


class Downsample3D(nn.Module):
    """Per-frame 3x3 conv, stride 2, padding 1."""

    def __init__(self, channels: int, dtype=None, device=None, operations=torch_ops):
        super().__init__()
        self.conv = operations.Conv2d(channels, channels, 3, stride=2, padding=1, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample3D(nn.Module):
    """Nearest upsampling of H, W to ``size`` (default x2), then a per-frame 3x3 conv."""

    def __init__(self, channels: int, dtype=None, device=None, operations=torch_ops):
        super().__init__()
        self.conv = operations.Conv2d(channels, channels, 3, padding=1, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if size is None:
            size = (2 * x.shape[-2], 2 * x.shape[-1])
        dtype = x.dtype
        if dtype == torch.bfloat16:
            # Older torch builds lack bf16 nearest upsampling on some devices.
            x = x.float()
        x = F.interpolate(x, size=tuple(size), mode="nearest").to(dtype)
        return self.conv(x)
