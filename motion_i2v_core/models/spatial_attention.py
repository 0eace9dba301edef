"""Per-frame spatial transformer of the SD1.5 UNet (diffusers-0.11 names and semantics)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from motion_i2v_core.models.operations import torch_ops
from motion_i2v_core.ops import get_op


class CrossAttention(nn.Module):
    """Multi-head attention: bias-free ``to_q/to_k/to_v``, ``to_out.0`` Linear with bias, no mask.

    Self-attention when ``context_dim`` is None. ``heads`` is the number of heads (head dim = dim/heads).
    """

    def __init__(
        self, dim: int, heads: int, context_dim: Optional[int] = None, dtype=None, device=None, operations=torch_ops
    ):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        self.heads = heads
        self.to_q = operations.Linear(dim, dim, bias=False, **kw)
        self.to_k = operations.Linear(context_dim or dim, dim, bias=False, **kw)
        self.to_v = operations.Linear(context_dim or dim, dim, bias=False, **kw)
        self.to_out = nn.ModuleList([operations.Linear(dim, dim, **kw)])

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None, repeat: int = 1) -> torch.Tensor:
        """``x (N, L, C)``; ``context (N // repeat, M, D)``: each context row serves ``repeat`` consecutive
        rows of ``x`` (the text embedding of a video is shared by its frames; K/V are projected once)."""
        q = self.to_q(x)
        src = x if context is None else context.to(x.dtype)
        k = self.to_k(src)
        v = self.to_v(src)
        if context is not None and repeat > 1:
            k = k.repeat_interleave(repeat, dim=0)
            v = v.repeat_interleave(repeat, dim=0)
        out = get_op("multihead_attention")(q, k, v, self.heads)
        return self.to_out[0](out)


class GEGLU(nn.Module):
    """``proj`` to 2*inner, ``a * gelu(g)`` with the first half as value and exact (erf) GELU."""

    def __init__(self, dim: int, inner: int, dtype=None, device=None, operations=torch_ops):
        super().__init__()
        self.proj = operations.Linear(dim, 2 * inner, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return F.gelu(gate).mul_(a)


class FeedForward(nn.Module):
    """GEGLU feed-forward ``net.0`` (C -> 8C -> split) and ``net.2`` (4C -> C); ``net.1`` is dropout(0)."""

    def __init__(self, dim: int, mult: int = 4, dtype=None, device=None, operations=torch_ops):
        super().__init__()
        inner = dim * mult
        kw = dict(dtype=dtype, device=device)
        self.net = nn.ModuleList(
            [GEGLU(dim, inner, operations=operations, **kw), nn.Identity(), operations.Linear(inner, dim, **kw)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class BasicTransformerBlock(nn.Module):
    """Pre-LN block: self-attention, cross-attention to the text, GEGLU feed-forward (LayerNorm eps 1e-5)."""

    def __init__(self, dim: int, heads: int, context_dim: int, dtype=None, device=None, operations=torch_ops):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        self.attn1 = CrossAttention(dim, heads, operations=operations, **kw)
        self.ff = FeedForward(dim, operations=operations, **kw)
        self.attn2 = CrossAttention(dim, heads, context_dim=context_dim, operations=operations, **kw)
        self.norm1 = operations.LayerNorm(dim, eps=1e-5, **kw)
        self.norm2 = operations.LayerNorm(dim, eps=1e-5, **kw)
        self.norm3 = operations.LayerNorm(dim, eps=1e-5, **kw)

    def forward(self, x: torch.Tensor, context: torch.Tensor, repeat: int) -> torch.Tensor:
        # residuals added in place to each fresh sub-layer output (x + y == y + x bitwise)
        x = self.attn1(self.norm1(x)).add_(x)
        x = self.attn2(self.norm2(x), context, repeat=repeat).add_(x)
        return self.ff(self.norm3(x)).add_(x)


class SpatialTransformer3D(nn.Module):
    """Per-frame ``GN (eps 1e-6) -> 1x1 proj_in -> transformer block -> 1x1 proj_out -> + input``.

    Works on frame-batched ``(B*F, C, H, W)``; ``context`` is ``(B, M, D)``, shared by the F frames.
    """

    def __init__(
        self, channels: int, heads: int, context_dim: int, norm_groups: int, dtype=None, device=None,
        operations=torch_ops,
    ):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        self.norm = operations.GroupNorm(norm_groups, channels, eps=1e-6, affine=True, **kw)
        self.proj_in = operations.Conv2d(channels, channels, 1, **kw)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(channels, heads, context_dim, operations=operations, **kw)]
        )
        self.proj_out = operations.Conv2d(channels, channels, 1, **kw)

    def forward(self, x: torch.Tensor, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        bf, c, h, w = x.shape
        if context.shape[0] * num_frames != bf:
            raise ValueError(
                f"text context batch {context.shape[0]} does not match {bf // num_frames} videos of {num_frames} frames"
            )
        hidden = self.proj_in(self.norm(x))
        hidden = hidden.permute(0, 2, 3, 1).reshape(bf, h * w, c)
        for block in self.transformer_blocks:
            hidden = block(hidden, context, repeat=num_frames)
        # contiguous NCHW: channels-last strides would change conv/GroupNorm kernels downstream
        hidden = hidden.reshape(bf, h, w, c).permute(0, 3, 1, 2).contiguous()
        # out of place, x first: the sum keeps x's layout (at 1x1 the conv returns channels-last strides)
        return x + self.proj_out(hidden)
