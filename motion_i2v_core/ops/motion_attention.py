"""Attention math as plain functions, so a fused GPU kernel can replace them behind the same signature.

``multihead_attention``: softmax(Q K^T / sqrt(d)) V with heads split from the channel dim.
``motion_augmented_attention``: the stage-2 temporal attention of Motion-I2V (stage2_spec.md section 3.3):
the reference frame's tokens are forward-splatted along the flow to every later frame, the warped and the
real tokens are interleaved into a 2F-1 sequence ``[z0, w1, z1, ..., w_{F-1}, z_{F-1}]`` with position
rows 0..2F-2, the F real tokens are the queries and all 2F-1 tokens are keys/values.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F


def multihead_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """``q (N, Lq, C)``, ``k, v (N, Lk, C)`` -> ``(N, Lq, C)``; head h uses channels ``h*d:(h+1)*d``, no mask."""
    n, lq, c = q.shape
    d = c // heads
    q = q.reshape(n, lq, heads, d).transpose(1, 2)
    k = k.reshape(n, k.shape[1], heads, d).transpose(1, 2)
    v = v.reshape(n, v.shape[1], heads, d).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(n, lq, c)


def warp_source_index(batch: int, num_frames: int, official_compat: bool, device=None) -> torch.Tensor:
    """Batch item whose reference tokens are warped for (b, j), flattened as ``k = b*(F-1) + j-1``.

    Default: ``b`` (each video warps its own reference). ``official_compat`` reproduces quirk Q1 of the
    official code (tile and flow use different batch orders): ``src = k mod B``, which mixes the CFG
    branches for B=2.
    """
    k = torch.arange(batch * (num_frames - 1), device=device)
    if official_compat:
        return k % batch
    return k // max(num_frames - 1, 1)


def check_motion_attention_args(x, flow, num_frames: int, height: int, width: int, pe) -> tuple[int, int]:
    """Validate the shapes of a motion-augmented attention call; returns (batch, 2F-1)."""
    bf, n, _ = x.shape
    frames = num_frames
    if bf % frames:
        raise ValueError(f"token batch {bf} is not a multiple of num_frames={frames}")
    batch = bf // frames
    length = 2 * frames - 1
    if length > pe.shape[1]:
        raise ValueError(
            f"motion-augmented attention needs 2F-1 = {length} positions but the table has {pe.shape[1]}: "
            f"use at most {(pe.shape[1] + 1) // 2} frames"
        )
    if n != height * width:
        raise ValueError(f"{n} tokens do not match a {height}x{width} feature map")
    if flow.ndim != 5 or flow.shape[1:] != (frames, 2, height, width) or flow.shape[0] not in (1, batch):
        raise ValueError(
            f"flow at this level must be (1 or {batch}, {frames}, 2, {height}, {width}), got {tuple(flow.shape)}"
        )
    return batch, length


def motion_augmented_attention(
    x: torch.Tensor,
    flow: torch.Tensor,
    *,
    num_frames: int,
    height: int,
    width: int,
    pe: torch.Tensor,
    heads: int,
    w_q: torch.Tensor,
    w_k: torch.Tensor,
    w_v: torch.Tensor,
    official_compat: bool = False,
    splat: Optional[Callable[..., torch.Tensor]] = None,
) -> torch.Tensor:
    """Motion-augmented temporal attention (output before ``to_out``).

    :param x: LayerNorm-ed tokens ``(B*F, H*W, C)``, row-major spatial order.
    :param flow: flow at this level in feature pixels, ``(B_f, F, 2, H, W)`` float32, B_f in {1, B};
        ch0 = dx, ch1 = dy; frame 0 is not used.
    :param pe: position table ``(1, L, C)`` with ``L >= 2F-1``.
    :param w_q, w_k, w_v: bias-free projection weights ``(C, C)``.
    :param splat: ``forward_splat(x, flow, mode)``; default the registered op.
    :return: ``(B*F, H*W, C)``.
    """
    batch, length = check_motion_attention_args(x, flow, num_frames, height, width, pe)
    n, c = x.shape[1:]
    frames = num_frames
    if splat is None:
        from motion_i2v_core.ops import get_op

        splat = get_op("forward_splat")

    tokens = x.reshape(batch, frames, n, c)
    seq = x.new_empty(batch, n, length, c)
    seq[:, :, 0::2] = tokens.transpose(1, 2)
    if frames > 1:
        # The reference tokens are warped in (at least) float32, as the official softsplat, without gradient.
        compute = torch.promote_types(x.dtype, torch.float32)
        ref = tokens[:, 0].detach().to(compute).transpose(1, 2).reshape(batch, c, height, width)
        src = warp_source_index(batch, frames, official_compat, device=x.device)
        flows = flow[:, 1:].to(compute).expand(batch, -1, -1, -1, -1).reshape(batch * (frames - 1), 2, height, width)
        warped = splat(ref[src], flows, mode="avg")
        warped = warped.reshape(batch, frames - 1, c, n).permute(0, 3, 1, 2)
        seq[:, :, 1::2] = warped.to(x.dtype)
    seq = seq.reshape(batch * n, length, c) + pe[0, :length].to(x.dtype)

    q = F.linear(seq[:, 0::2], w_q)
    k = F.linear(seq, w_k)
    v = F.linear(seq, w_v)
    out = multihead_attention(q, k, v, heads)
    return out.reshape(batch, n, frames, c).transpose(1, 2).reshape(batch * frames, n, c)
