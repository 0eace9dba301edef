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


def split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """``(N, L, C)`` -> ``(N, heads, L, C / heads)``: head h is channels ``h*d:(h+1)*d``."""
    n, length, c = t.shape
    return t.reshape(n, length, heads, c // heads).transpose(1, 2)


def merge_heads(t: torch.Tensor) -> torch.Tensor:
    """``(N, heads, L, d)`` -> ``(N, L, heads * d)``, the inverse of ``split_heads``."""
    n, heads, length, d = t.shape
    return t.transpose(1, 2).reshape(n, length, heads * d)


def multihead_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """``q (N, Lq, C)``, ``k, v (N, Lk, C)`` -> ``(N, Lq, C)``; head h uses channels ``h*d:(h+1)*d``, no mask."""
    out = F.scaled_dot_product_attention(split_heads(q, heads), split_heads(k, heads), split_heads(v, heads))
    return merge_heads(out)


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


def interleaved_sequence(
    x: torch.Tensor,
    num_frames: int,
    pe: torch.Tensor,
    write_warped: Callable[[torch.Tensor, torch.Tensor], None],
) -> torch.Tensor:
    """The key/value sequence ``[z0, w1, z1, ..., w_{F-1}, z_{F-1}] + PE`` of every spatial location.

    :param x: tokens ``(B*F, N, C)``.
    :param write_warped: ``write_warped(ref, slots)`` fills ``slots`` (the odd positions, a
        ``(B, N, F-1, C)`` view of the sequence) with the warped reference tokens; ``ref`` is frame 0,
        ``(B, N, C)``. Not called for a single frame.
    :return: ``(B*N, 2F-1, C)``; the real tokens (the queries) are positions ``0::2``.
    """
    bf, n, c = x.shape
    batch, length = bf // num_frames, 2 * num_frames - 1
    tokens = x.reshape(batch, num_frames, n, c)
    seq = x.new_empty(batch, n, length, c)
    seq[:, :, 0::2] = tokens.transpose(1, 2)
    if num_frames > 1:
        write_warped(tokens[:, 0], seq[:, :, 1::2])
    seq = seq.reshape(batch * n, length, c)
    return seq.add_(pe[0, :length].to(x.dtype))


def attend_interleaved(
    x: torch.Tensor,
    num_frames: int,
    pe: torch.Tensor,
    heads: int,
    w_q: torch.Tensor,
    write_warped: Callable[[torch.Tensor, torch.Tensor], None],
    project_kv: Callable[[torch.Tensor], tuple],
    attention: Callable[..., torch.Tensor],
) -> torch.Tensor:
    """What every backend does around its warp: build the 2F-1 sequence, queries from the real tokens,
    keys and values from the whole sequence (``project_kv(seq) -> (k, v)``), ``attention(q, k, v,
    heads)``, back to ``(B*F, N, C)``."""
    bf, n, c = x.shape
    seq = interleaved_sequence(x, num_frames, pe, write_warped)
    q = F.linear(seq[:, 0::2], w_q)
    k, v = project_kv(seq)
    out = attention(q, k, v, heads)
    return out.reshape(bf // num_frames, n, num_frames, c).transpose(1, 2).reshape(bf, n, c)


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
    kv_weight: Optional[Callable[[], torch.Tensor]] = None,
    flow_cache: Optional[dict] = None,
) -> torch.Tensor:
    """Motion-augmented temporal attention (output before ``to_out``), the exact reference.

    :param x: LayerNorm-ed tokens ``(B*F, H*W, C)``, row-major spatial order.
    :param flow: flow at this level in feature pixels, ``(B_f, F, 2, H, W)`` float32, B_f in {1, B};
        ch0 = dx, ch1 = dy; frame 0 is not used.
    :param pe: position table ``(1, L, C)`` with ``L >= 2F-1``.
    :param w_q, w_k, w_v: bias-free projection weights ``(C, C)``.
    :param kv_weight: returns ``cat([w_k, w_v])``, which the caller keeps built (fast backends project K
        and V in one matmul); the reference projects them separately and never calls it.
    :param flow_cache: a dict that lives as long as ``flow``, where backends keep work that depends on
        the flow alone (the Triton path: the splat normaliser); the reference ignores it.
    :return: ``(B*F, H*W, C)``.
    """
    batch, _ = check_motion_attention_args(x, flow, num_frames, height, width, pe)
    n, c = x.shape[1:]
    frames = num_frames
    from motion_i2v_core.ops.registry import get_op

    def write_warped(ref_tokens: torch.Tensor, slots: torch.Tensor) -> None:
        # The reference tokens are warped in (at least) float32, as the official softsplat, without gradient.
        compute = torch.promote_types(x.dtype, torch.float32)
        ref = ref_tokens.detach().to(compute).transpose(1, 2).reshape(batch, c, height, width)
        src = warp_source_index(batch, frames, official_compat, device=x.device)
        flows = flow[:, 1:].to(compute).expand(batch, -1, -1, -1, -1).reshape(batch * (frames - 1), 2, height, width)
        warped = get_op("forward_splat")(ref[src], flows, mode="avg")
        slots.copy_(warped.reshape(batch, frames - 1, c, n).permute(0, 3, 1, 2))

    return attend_interleaved(x, frames, pe, heads, w_q, write_warped,
                              lambda seq: (F.linear(seq, w_k), F.linear(seq, w_v)), multihead_attention)
