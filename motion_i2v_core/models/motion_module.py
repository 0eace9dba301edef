"""AnimateDiff-style motion module (``VanillaTemporalModule``) with optional Motion-I2V flow warping.

Without a warp context the temporal attention is plain self-attention over the F frames at each
spatial location (stage 1, and AnimateDiff). With a ``FlowWarpContext`` (stage 2) both attention
blocks of every module use the motion-augmented attention of ``ops.motion_attention``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from motion_i2v_core.models.compiled_ops import motion_attention
from motion_i2v_core.models.embeddings import PositionalEncoding
from motion_i2v_core.models.operations import torch_ops, weight_caster
from motion_i2v_core.ops import get_op
from motion_i2v_core.models.spatial_attention import FeedForward


class FlowWarpContext:
    """Per-call state of the stage-2 warp: the image-resolution flow and its resized copies.

    :param flow: ``(B_f, F, 2, H_img, W_img)`` pixels at image resolution, ch0 = dx, ch1 = dy.
    :param official_compat: reproduce quirk Q1 (CFG-branch mixing of the warped reference).

    The flow is resized once per feature size (``ops.flow_resize.resize_flow``) and reused by every module
    at that size; ``level_cache`` keeps what the ops derive from a level's flow alone for the same reuse.
    """

    def __init__(self, flow: torch.Tensor, official_compat: bool = False):
        if flow.ndim != 5 or flow.shape[2] != 2:
            raise ValueError(f"flow must be (B, F, 2, H, W) in pixels, got shape {tuple(flow.shape)}")
        self.flow = flow.float()
        self.official_compat = bool(official_compat)
        self._resized: dict[tuple[int, int], torch.Tensor] = {}
        self._level_caches: dict[tuple[int, int], dict] = {}

    def at(self, height: int, width: int) -> torch.Tensor:
        """Flow at a ``height x width`` feature map, in feature pixels, ``(B_f, F, 2, h, w)`` float32."""
        return get_op("resize_flow")(self.flow, height, width, cache=self._resized)

    def level_cache(self, height: int, width: int) -> dict:
        """The ``flow_cache`` of the motion attention at this level (e.g. the Triton splat normaliser)."""
        return self._level_caches.setdefault((height, width), {})


class TemporalAttention(nn.Module):
    """Self-attention over frames with the sinusoidal PE (buffer ``pos_encoder.pe``) added to its input.

    The motion-augmented op takes the raw projection weights; they come through the namespace's
    ``cast_weight`` so that casting layers (fp8 storage, offloaded or patched weights) give what their
    forward would use. Its fast backends project K and V in one matmul, with ``stacked_kv_weight``.
    """

    def __init__(self, dim: int, heads: int, pe_max_len: int = 32, dtype=None, device=None, operations=torch_ops):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        self.heads = heads
        self.to_q = operations.Linear(dim, dim, bias=False, **kw)
        self.to_k = operations.Linear(dim, dim, bias=False, **kw)
        self.to_v = operations.Linear(dim, dim, bias=False, **kw)
        self.to_out = nn.ModuleList([operations.Linear(dim, dim, **kw)])
        self.pos_encoder = PositionalEncoding(dim, pe_max_len, **kw)
        self.cast_weight = weight_caster(operations)
        self._kv_cache: Optional[tuple] = None  # (weights' identity, cat([w_k, w_v])), see stacked_kv_weight

    def stacked_kv_weight(self, w_k: torch.Tensor, w_v: torch.Tensor) -> torch.Tensor:
        """``cat([w_k, w_v])``, built once while the module's own weights are used unchanged.

        Rebuilt when they change (``load_state_dict``, in-place edits, replaced parameters; ``.to()`` and the
        like drop it). Built per call, not kept, for weights cast per call (their copies are per call too,
        and a kept copy would pin offloaded weights on the device), trainable weights, inference tensors
        (no version counter) and inside ``torch.compile`` (the compiler handles the constant). An edit through
        ``.data`` bypasses the version counter: follow it with ``.to()`` or use ``load_state_dict``.
        """
        own = w_k is self.to_k.weight and w_v is self.to_v.weight
        if (not own or torch.compiler.is_compiling() or w_k.is_inference() or w_v.is_inference()
                or (torch.is_grad_enabled() and (w_k.requires_grad or w_v.requires_grad))):
            return torch.cat([w_k, w_v])
        key = (w_k._version, w_v._version, w_k.data_ptr(), w_v.data_ptr(), w_k.dtype, w_k.device)
        if self._kv_cache is None or self._kv_cache[0] != key:
            self._kv_cache = (key, torch.cat([w_k, w_v]))
        return self._kv_cache[1]

    def _apply(self, fn, *args, **kwargs):
        self._kv_cache = None  # .to() / .half() / .cuda(): the stacked copy belongs to the old weights
        return super()._apply(fn, *args, **kwargs)

    def forward(
        self,
        x: torch.Tensor,
        num_frames: int,
        height: int,
        width: int,
        warp: Optional[FlowWarpContext] = None,
    ) -> torch.Tensor:
        """``x``: LayerNorm-ed tokens ``(B*F, H*W, C)`` -> ``(B*F, H*W, C)``."""
        bf, n, c = x.shape
        if warp is None:
            batch = bf // num_frames
            seq = x.reshape(batch, num_frames, n, c).transpose(1, 2).reshape(batch * n, num_frames, c)
            seq = self.pos_encoder(seq)
            out = get_op("multihead_attention")(self.to_q(seq), self.to_k(seq), self.to_v(seq), self.heads)
            out = out.reshape(batch, n, num_frames, c).transpose(1, 2).reshape(bf, n, c)
        else:
            w_k, w_v = self.cast_weight(self.to_k, x), self.cast_weight(self.to_v, x)
            out = motion_attention(
                x,
                warp.at(height, width),
                num_frames=num_frames,
                height=height,
                width=width,
                pe=self.pos_encoder.table(x),
                heads=self.heads,
                w_q=self.cast_weight(self.to_q, x),
                w_k=w_k,
                w_v=w_v,
                official_compat=warp.official_compat,
                kv_weight=lambda: self.stacked_kv_weight(w_k, w_v),
                flow_cache=warp.level_cache(height, width),
            )
        return self.to_out[0](out)


class TemporalTransformerBlock(nn.Module):
    """Two pre-LN temporal attentions (``attention_blocks.{0,1}``, ``norms.{0,1}``) + GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, pe_max_len: int = 32, dtype=None, device=None, operations=torch_ops):
        super().__init__()
        kw = dict(dtype=dtype, device=device, operations=operations)
        self.attention_blocks = nn.ModuleList([TemporalAttention(dim, heads, pe_max_len, **kw) for _ in range(2)])
        self.norms = nn.ModuleList([operations.LayerNorm(dim, eps=1e-5, dtype=dtype, device=device) for _ in range(2)])
        self.ff = FeedForward(dim, **kw)
        self.ff_norm = operations.LayerNorm(dim, eps=1e-5, dtype=dtype, device=device)

    def forward(self, x, num_frames, height, width, warp=None):
        # residuals added in place to each fresh sub-layer output (x + y == y + x bitwise)
        for attn, norm in zip(self.attention_blocks, self.norms):
            x = attn(norm(x), num_frames, height, width, warp).add_(x)
        return self.ff(self.ff_norm(x)).add_(x)


class TemporalTransformer3D(nn.Module):
    """Per-frame ``GN (eps 1e-6) -> Linear proj_in -> block -> Linear proj_out -> + input``."""

    def __init__(
        self, channels: int, heads: int, norm_groups: int = 32, pe_max_len: int = 32, dtype=None, device=None,
        operations=torch_ops,
    ):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        self.norm = operations.GroupNorm(norm_groups, channels, eps=1e-6, affine=True, **kw)
        self.proj_in = operations.Linear(channels, channels, **kw)
        self.transformer_blocks = nn.ModuleList(
            [TemporalTransformerBlock(channels, heads, pe_max_len, operations=operations, **kw)]
        )
        self.proj_out = operations.Linear(channels, channels, **kw)

    def forward(self, x: torch.Tensor, num_frames: int, warp: Optional[FlowWarpContext] = None) -> torch.Tensor:
        bf, c, h, w = x.shape
        hidden = self.norm(x).permute(0, 2, 3, 1).reshape(bf, h * w, c)
        hidden = self.proj_in(hidden)
        for block in self.transformer_blocks:
            hidden = block(hidden, num_frames, h, w, warp)
        hidden = self.proj_out(hidden)
        # x first: the sum takes x's NCHW layout straight from the channels-last view, with no extra copy (a
        # result with channels-last strides, even a (N, C, 1, 1) one, would change later conv kernels)
        return x + hidden.reshape(bf, h, w, c).permute(0, 3, 1, 2)


class VanillaTemporalModule(nn.Module):
    """Motion module on frame-batched ``(B*F, C, H, W)``; the time embedding and text are not used."""

    def __init__(
        self, channels: int, heads: int = 8, norm_groups: int = 32, pe_max_len: int = 32, dtype=None, device=None,
        operations=torch_ops,
    ):
        super().__init__()
        self.temporal_transformer = TemporalTransformer3D(
            channels, heads, norm_groups, pe_max_len, dtype=dtype, device=device, operations=operations
        )

    def forward(self, x: torch.Tensor, num_frames: int, warp: Optional[FlowWarpContext] = None) -> torch.Tensor:
        return self.temporal_transformer(x, num_frames, warp)
