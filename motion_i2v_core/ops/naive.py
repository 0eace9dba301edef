"""The "naive" ops backend: the official code's way of computing, the baseline the benchmark compares with.

Written here from the official code's structure (not copied): float32 throughout; the forward splat run
item by item on ``cat[X, 1]`` (corners recomputed for every item, the normaliser splatted as an extra
channel of every item); the flow resized in every motion module call instead of once per level; the
interleaved 2F-1 sequence built with ``stack``; attention as explicit ``softmax(QK^T/sqrt(d)) V``.
Same results as the torch reference up to float32 summation order; selected with
``ops.use_backend("naive")`` (never by "auto").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from motion_i2v_core.ops.flow_resize import resize_flow as _resize_flow
from motion_i2v_core.ops.motion_attention import merge_heads, split_heads, warp_source_index
from motion_i2v_core.ops.splat import forward_splat as _reference_splat


def forward_splat(x: torch.Tensor, flow: torch.Tensor, mode: str = "avg", metric=None) -> torch.Tensor:
    """Official softsplat usage: every item splats ``cat[X, 1]`` with its own corners, in float32."""
    if mode != "avg" or metric is not None:
        return _reference_splat(x, flow, mode, metric)
    outs = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].float()
        summed = _reference_splat(torch.cat([xi, torch.ones_like(xi[:, :1])], dim=1), flow[i : i + 1].float(), "sum")
        outs.append(summed[:, :-1] / (summed[:, -1:] + 1e-7))
    return torch.cat(outs).to(x.dtype)


def multihead_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Unfused ``softmax(Q K^T / sqrt(d)) V`` with the scores materialised."""
    q, k, v = (split_heads(t, heads) for t in (q, k, v))
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    return merge_heads(torch.matmul(scores.softmax(dim=-1), v))


def motion_augmented_attention(x, flow, *, num_frames, height, width, pe, heads, w_q, w_k, w_v,
                               official_compat=False, **_unused):
    """Motion-augmented attention computed the straightforward way (gather, per-item splat, stack)."""
    bf, n, c = x.shape
    batch, frames = bf // num_frames, num_frames
    tokens = x.reshape(batch, frames, n, c)
    ref = tokens[:, 0].transpose(1, 2).reshape(batch, c, height, width).float()
    src = warp_source_index(batch, frames, official_compat, device=x.device)
    flows = flow[:, 1:].float().expand(batch, -1, -1, -1, -1).reshape(batch * (frames - 1), 2, height, width)
    warped = forward_splat(ref[src].contiguous(), flows).reshape(batch, frames - 1, c, n).permute(0, 1, 3, 2)
    parts = [tokens[:, 0]]
    for j in range(1, frames):
        parts += [warped[:, j - 1].to(x.dtype), tokens[:, j]]
    seq = torch.stack(parts, dim=2).reshape(batch * n, 2 * frames - 1, c) + pe[0, : 2 * frames - 1].to(x.dtype)
    q = F.linear(seq[:, 0::2], w_q)
    out = multihead_attention(q, F.linear(seq, w_k), F.linear(seq, w_v), heads)
    return out.reshape(batch, n, frames, c).transpose(1, 2).reshape(bf, n, c)


def resize_flow(flow: torch.Tensor, height: int, width: int, cache=None) -> torch.Tensor:
    """The level flow without the per-level cache: the official code resizes in every module."""
    return _resize_flow(flow, height, width)
