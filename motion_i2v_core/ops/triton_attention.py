"""Motion-augmented temporal attention on the GPU path: Triton warp + PyTorch SDPA.

Same contract as ``ops.motion_attention.motion_augmented_attention`` (the reference). What changes:

- the reference-frame tokens are splatted by the Triton kernels (``triton_splat.warp_splat``) straight
  into the odd slots of the interleaved ``[z0, w1, z1, ..., w_{F-1}, z_{F-1}]`` sequence: no gathered
  copy of the reference per item, no float32 (K, C, H, W) result to transpose and copy again;
- the normaliser S(1) is computed once per flow frame and shared by every batch item (both CFG
  branches) instead of once per (item, frame), and once per level flow (kept in ``flow_cache``) instead
  of once per motion module;
- K and V come from one matmul with the stacked ``[w_k; w_v]`` weight (one read of the sequence; the
  caller keeps the stacked weight and hands it over through ``kv_weight``);
- the softmax over the 2F-1 keys is the registry's ``multihead_attention``: PyTorch's
  ``scaled_dot_product_attention`` under "auto". ``attention_core_triton`` is a Triton kernel for the same
  step (one program per token position and head: S = QK^T/sqrt(d) over the <= 32 keys, fp32 softmax, PV),
  registered as the "triton" backend's ``multihead_attention`` with ``auto=False``: it runs only when
  "triton" is selected explicitly, until the GPU comparison the benchmark makes shows it faster than
  SDPA (pending in BENCHMARKS.md: no GPU so far).

Results equal the reference up to float32 summation order in the splat (atomics) and the matmul split.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Optional

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from motion_i2v_core.ops.motion_attention import (
    attend_interleaved,
    check_motion_attention_args,
    multihead_attention,
    warp_source_index,
)
from motion_i2v_core.ops.registry import get_op
from motion_i2v_core.ops.triton_splat import splat_normaliser_triton, warp_splat

__all__ = ["motion_augmented_attention_triton", "multihead_attention_triton", "attention_core_triton"]


@triton.jit
def _attention_core_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, LQ, LK, D, scale,
    s_qn, s_ql, s_kn, s_kl, s_vn, s_vl, s_on, s_ol,
    BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, IEEE: tl.constexpr,
):
    # grid (token positions, heads); channel h*D + i of a row is element i of head h.
    n = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    rq = tl.arange(0, BLOCK_Q)
    rk = tl.arange(0, BLOCK_K)
    rd = tl.arange(0, BLOCK_D)
    d_ok = rd < D
    col = h * D + rd
    q = tl.load(q_ptr + n * s_qn + rq[:, None] * s_ql + col[None, :], mask=(rq < LQ)[:, None] & d_ok[None, :], other=0.0)
    k = tl.load(k_ptr + n * s_kn + rk[:, None] * s_kl + col[None, :], mask=(rk < LK)[:, None] & d_ok[None, :], other=0.0)
    v = tl.load(v_ptr + n * s_vn + rk[:, None] * s_vl + col[None, :], mask=(rk < LK)[:, None] & d_ok[None, :], other=0.0)
    # S = Q K^T / sqrt(d) (fp32 accumulate); padded keys get -inf before the softmax.
    if IEEE:
        s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
    else:
        s = tl.dot(q, tl.trans(k)) * scale
    s = tl.where((rk < LK)[None, :], s, float("-inf"))
    p = tl.exp(s - tl.max(s, axis=1)[:, None])
    p = p / tl.sum(p, axis=1)[:, None]
    # O = softmax(S) V
    if IEEE:
        o = tl.dot(p, v.to(tl.float32), input_precision="ieee")
    else:
        o = tl.dot(p.to(v.dtype), v)
    tl.store(o_ptr + n * s_on + rq[:, None] * s_ol + col[None, :], o.to(o_ptr.dtype.element_ty),
             mask=(rq < LQ)[:, None] & d_ok[None, :])


def attention_core_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """``ops.motion_attention.multihead_attention`` as one Triton kernel, for short sequences (<= 128 keys).

    ``q (N, Lq, C)``, ``k, v (N, Lk, C)``; the channel dim must be contiguous. fp32 inputs use IEEE
    fp32 matmuls (no TF32); fp16/bf16 inputs multiply in their dtype and accumulate in fp32.
    """
    n, lq, c = q.shape
    lk = k.shape[1]
    if c % heads or k.shape != (n, lk, c) or v.shape != k.shape:
        raise ValueError(f"attention shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} with {heads} heads")
    if lk > 128 or lq > 128:
        raise ValueError(f"attention_core_triton is for short sequences (<= 128), got {lq} queries, {lk} keys")
    if any(t.stride(-1) != 1 for t in (q, k, v)):
        raise ValueError("attention_core_triton needs the channel dim contiguous")
    d = c // heads
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    block_q = max(16, triton.next_power_of_2(lq))
    block_k = max(16, triton.next_power_of_2(lk))
    block_d = max(16, triton.next_power_of_2(d))
    ctx = torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext()
    with ctx:
        _attention_core_kernel[(n, heads)](
            q, k, v, out, lq, lk, d, 1.0 / d**0.5,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), out.stride(0), out.stride(1),
            BLOCK_Q=block_q, BLOCK_K=block_k, BLOCK_D=block_d, IEEE=q.dtype == torch.float32, num_warps=4,
        )
    return out


def multihead_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """The ``multihead_attention`` op of the "triton" backend: the kernel for short sequences, else SDPA."""
    if max(q.shape[1], k.shape[1]) <= 128 and all(t.stride(-1) == 1 for t in (q, k, v)):
        return attention_core_triton(q, k, v, heads)
    return multihead_attention(q, k, v, heads)


def motion_augmented_attention_triton(x, flow, *, num_frames, height, width, pe, heads, w_q, w_k, w_v,
                                      official_compat=False, kv_weight=None, flow_cache=None) -> torch.Tensor:
    """The "triton" backend of ``ops.motion_attention.motion_augmented_attention``, whose docstring gives
    the arguments (types and shapes) and the result."""
    batch, _ = check_motion_attention_args(x, flow, num_frames, height, width, pe)
    frames = num_frames

    def write_warped(ref_tokens: torch.Tensor, slots: torch.Tensor) -> None:
        # (B, n, c) tokens seen as (B, c, H, W) without a copy; the kernel reads any strides.
        ref = ref_tokens.detach().transpose(1, 2).unflatten(-1, (height, width))
        flow_b = flow.shape[0]
        flows = flow[:, 1:].reshape(flow_b * (frames - 1), 2, height, width)
        items = torch.arange(batch * (frames - 1), device=x.device)
        flow_index = items % (frames - 1) if flow_b == 1 else items
        x_index = warp_source_index(batch, frames, official_compat, device=x.device)
        normaliser = _cached(flow_cache, "splat_normaliser", lambda: splat_normaliser_triton(flows))
        # Odd slots as (B, F-1, C, H, W): item k = b*(F-1) + j lands at [b, j].
        warped_slots = slots.permute(0, 2, 3, 1).unflatten(-1, (height, width))
        warp_splat(ref, flows, x_index=x_index, flow_index=flow_index, mode="avg", out=warped_slots,
                   normaliser=normaliser)

    def project_kv(seq: torch.Tensor):
        return F.linear(seq, torch.cat([w_k, w_v]) if kv_weight is None else kv_weight()).chunk(2, dim=-1)

    # The attention step is the registry's: SDPA under "auto", the Triton kernel when "triton" is selected.
    return attend_interleaved(x, frames, pe, heads, w_q, write_warped, project_kv, get_op("multihead_attention"))


def _cached(cache: Optional[dict], key: str, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    if cache is None:
        return make()
    if key not in cache:
        cache[key] = make()
    return cache[key]
