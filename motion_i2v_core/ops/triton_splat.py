"""Forward splat ("sum" / "avg") as Triton kernels: the GPU twin of ``ops.splat.forward_splat``.

Importing this module needs ``triton``; the op registry imports it on first use of the "triton" backend.
The kernels run on CUDA tensors, or on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``,
used by the CI tests).

Arithmetic is the reference's (stage2_spec.md section 4), in float32 for every input dtype::

    tx = x + dx,  ty = y + dy             (a source with a non-finite target adds nothing)
    x0 = floor(tx), y0 = floor(ty), x1 = x0 + 1, y1 = y0 + 1
    w_NW = (x1 - tx)(y1 - ty)   w_NE = (tx - x0)(y1 - ty)
    w_SW = (x1 - tx)(ty - y0)   w_SE = (tx - x0)(ty - y0)
    S(X)[target corner] += X[source] * w  (corners outside the image are dropped)
    avg = S(X) / (S(1) + 1e-7)   ("-zeroeps": S(1) == 0 -> 1, "-clipeps": max(S(1), 1e-7))

Sums use float32 atomics, so the order of additions differs from the CPU reference: results agree to a
few float32 ulps, not bitwise.

Three kernels, so that the flow-only work is done once per flow and shared:
  1. ``_splat_weight_kernel``: S(1), the normaliser, once per *flow* item;
  2. ``_splat_value_kernel``: S(X) for every *output* item k, which reads features ``x[x_index[k]]``
     and flow ``flow[flow_index[k]]`` (so both CFG branches, or every reference of a batch, reuse one
     flow and its normaliser without copying features);
  3. ``_splat_normalise_kernel``: divides by the normaliser and casts on store, into any strided output
     (the stage-2 attention writes straight into its interleaved token sequence).
Kernels 2 and 3 run chunk by chunk of output items, so the float32 sums need a scratch of one chunk
(``SCRATCH_ELEMENTS``), not of the whole call.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch
import triton
import triton.language as tl

from motion_i2v_core.ops.splat import _check_flow, parse_splat_mode

__all__ = ["forward_splat_triton", "warp_splat", "splat_normaliser_triton", "launch_config"]

_EPS = 1e-7
# Largest float32 scratch of one warp_splat call, in elements (16 MiB): items are splatted in chunks
# of at most this many C*H*W sums (at least one item per chunk).
SCRATCH_ELEMENTS = 1 << 22
_EPS_CODE = {"none": 0, "addeps": 1, "zeroeps": 2, "clipeps": 3}


@triton.jit
def _corners(flow_ptr, f, pix, live, H, W, s_fn, s_fc, s_fh, s_fw):
    """Flat target index, weight and in-image flag of the four corners of pixels ``pix`` of flow ``f``."""
    y = pix // W
    x = pix % W
    fptr = flow_ptr + f * s_fn + y * s_fh + x * s_fw
    dx = tl.load(fptr, mask=live, other=0.0).to(tl.float32)
    dy = tl.load(fptr + s_fc, mask=live, other=0.0).to(tl.float32)
    tx = dx + x.to(tl.float32)
    ty = dy + y.to(tl.float32)
    # NaN and +-inf fail `abs < inf`: such a source drops all four corners, like the reference.
    finite = live & (tl.abs(tx) < float("inf")) & (tl.abs(ty) < float("inf"))
    x0 = tl.floor(tx)
    y0 = tl.floor(ty)
    wx0 = (x0 + 1.0) - tx
    wx1 = tx - x0
    wy0 = (y0 + 1.0) - ty
    wy1 = ty - y0
    # Range checks in float (a huge finite target must not overflow an int cast).
    in_x0 = (x0 >= 0.0) & (x0 < W)
    in_x1 = (x0 >= -1.0) & (x0 < W - 1)
    in_y0 = (y0 >= 0.0) & (y0 < H)
    in_y1 = (y0 >= -1.0) & (y0 < H - 1)
    xi = tl.where(finite & in_x0 | finite & in_x1, x0, 0.0).to(tl.int64)
    yi = tl.where(finite & in_y0 | finite & in_y1, y0, 0.0).to(tl.int64)
    nw = yi * W + xi
    return (
        nw, wx0 * wy0, finite & in_x0 & in_y0,
        nw + 1, wx1 * wy0, finite & in_x1 & in_y0,
        nw + W, wx0 * wy1, finite & in_x0 & in_y1,
        nw + W + 1, wx1 * wy1, finite & in_x1 & in_y1,
    )


@triton.jit
def _splat_weight_kernel(flow_ptr, norm_ptr, H, W, s_fn, s_fc, s_fh, s_fw, BLOCK_P: tl.constexpr):
    # grid (flow items, pixel blocks); norm is (Nf, H*W) float32, zero-initialised.
    f = tl.program_id(0).to(tl.int64)
    pix = tl.program_id(1).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    live = pix < H * W
    i0, w0, m0, i1, w1, m1, i2, w2, m2, i3, w3, m3 = _corners(flow_ptr, f, pix, live, H, W, s_fn, s_fc, s_fh, s_fw)
    base = norm_ptr + f * H * W
    tl.atomic_add(base + i0, w0, mask=m0)
    tl.atomic_add(base + i1, w1, mask=m1)
    tl.atomic_add(base + i2, w2, mask=m2)
    tl.atomic_add(base + i3, w3, mask=m3)


@triton.jit
def _splat_value_kernel(
    x_ptr, flow_ptr, x_index_ptr, flow_index_ptr, acc_ptr,
    C, H, W,
    s_xn, s_xc, s_xh, s_xw,
    s_fn, s_fc, s_fh, s_fw,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):
    # grid (output items, pixel blocks, channel blocks); acc is (K, C, H*W) float32, zero-initialised.
    k = tl.program_id(0).to(tl.int64)
    pix = tl.program_id(1).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    ch = tl.program_id(2).to(tl.int64) * BLOCK_C + tl.arange(0, BLOCK_C)
    live = pix < H * W
    c_ok = ch < C
    src = tl.load(x_index_ptr + k).to(tl.int64)
    f = tl.load(flow_index_ptr + k).to(tl.int64)
    i0, w0, m0, i1, w1, m1, i2, w2, m2, i3, w3, m3 = _corners(flow_ptr, f, pix, live, H, W, s_fn, s_fc, s_fh, s_fw)

    y = pix // W
    x = pix % W
    xptr = x_ptr + src * s_xn + ch[:, None] * s_xc + (y * s_xh + x * s_xw)[None, :]
    vals = tl.load(xptr, mask=c_ok[:, None] & live[None, :], other=0.0).to(tl.float32)
    base = acc_ptr + k * C * H * W + ch[:, None] * H * W
    # S(X) += X * w at each in-image corner (fp32 atomics).
    tl.atomic_add(base + i0[None, :], vals * w0[None, :], mask=c_ok[:, None] & m0[None, :])
    tl.atomic_add(base + i1[None, :], vals * w1[None, :], mask=c_ok[:, None] & m1[None, :])
    tl.atomic_add(base + i2[None, :], vals * w2[None, :], mask=c_ok[:, None] & m2[None, :])
    tl.atomic_add(base + i3[None, :], vals * w3[None, :], mask=c_ok[:, None] & m3[None, :])


@triton.jit
def _splat_normalise_kernel(
    acc_ptr, norm_ptr, flow_index_ptr, out_ptr,
    C, H, W, K1, K_START,
    s_o0, s_o1, s_oc, s_oh, s_ow,
    EPS_MODE: tl.constexpr, EPS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):
    # grid (items of this chunk, pixel blocks, channel blocks). Chunk item k is output item K_START + k,
    # written at ((K_START + k) // K1, (K_START + k) % K1) of out.
    k = tl.program_id(0).to(tl.int64)
    pix = tl.program_id(1).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    ch = tl.program_id(2).to(tl.int64) * BLOCK_C + tl.arange(0, BLOCK_C)
    live = pix < H * W
    mask = (ch < C)[:, None] & live[None, :]
    val = tl.load(acc_ptr + k * C * H * W + ch[:, None] * H * W + pix[None, :], mask=mask, other=0.0)
    if EPS_MODE != 0:
        f = tl.load(flow_index_ptr + k).to(tl.int64)
        norm = tl.load(norm_ptr + f * H * W + pix, mask=live, other=1.0)
        if EPS_MODE == 1:  # addeps: S(X) / (S(1) + eps)
            denom = norm + EPS
        elif EPS_MODE == 2:  # zeroeps: S(1) == 0 -> 1
            denom = tl.where(norm == 0.0, 1.0, norm)
        else:  # clipeps: max(S(1), eps)
            denom = tl.maximum(norm, EPS)
        val = val / denom[None, :]
    y = pix // W
    x = pix % W
    item = K_START + k
    optr = out_ptr + (item // K1) * s_o0 + (item % K1) * s_o1 + ch[:, None] * s_oc + (y * s_oh + x * s_ow)[None, :]
    tl.store(optr, val.to(out_ptr.dtype.element_ty), mask=mask)


def launch_config(channels: int) -> tuple[int, int, int]:
    """(BLOCK_C, BLOCK_P, num_warps): tiles of at most 4096 elements, channels in powers of two up to 32."""
    if channels < 1:
        raise ValueError(f"splat needs at least one channel, got {channels}")
    block_c = min(32, triton.next_power_of_2(channels))
    block_p = max(128, 4096 // block_c)
    return block_c, block_p, 4


def _device_context(t: torch.Tensor):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _check_kernel_inputs(*tensors: torch.Tensor) -> None:
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise ValueError(f"splat tensors must be on one device, got {sorted(str(d) for d in devices)}")
    dev = tensors[0].device
    if dev.type != "cuda" and not _interpreting():
        raise RuntimeError(
            f"the Triton splat kernels need CUDA tensors (got {dev}); use the torch backend on this device "
            "(or set TRITON_INTERPRET=1 to run them slowly in Triton's interpreter)"
        )


def _interpreting() -> bool:
    import os

    return os.environ.get("TRITON_INTERPRET", "") == "1"


def splat_normaliser_triton(flow: torch.Tensor) -> torch.Tensor:
    """S(1) of every flow item: ``(N, H*W)`` float32 (the shared 'avg' normaliser)."""
    _check_flow(flow)
    _check_kernel_inputs(flow)
    n, _, h, w = flow.shape
    norm = torch.zeros(n, h * w, device=flow.device, dtype=torch.float32)
    if n == 0 or h * w == 0:
        return norm
    _, block_p, num_warps = launch_config(1)
    with _device_context(flow):
        _splat_weight_kernel[(n, triton.cdiv(h * w, block_p))](
            flow, norm, h, w, *flow.stride(), BLOCK_P=block_p, num_warps=num_warps
        )
    return norm


def warp_splat(
    x: torch.Tensor,
    flow: torch.Tensor,
    *,
    x_index: Optional[torch.Tensor] = None,
    flow_index: Optional[torch.Tensor] = None,
    mode: str = "avg",
    out: Optional[torch.Tensor] = None,
    normaliser: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Splat ``x[x_index[k]]`` along ``flow[flow_index[k]]`` for every output item k.

    :param x: features ``(Nx, C, H, W)``, any strides (e.g. a channels-last view of tokens), fp16/bf16/fp32.
    :param flow: ``(Nf, 2, H, W)`` pixels, any strides.
    :param x_index, flow_index: ``(K,)`` integer tensors on x's device; default ``arange(Nf)`` (then Nx must be Nf).
    :param mode: "sum" or "avg", optionally "-addeps" / "-zeroeps" / "-clipeps".
    :param out: where to write, ``(K, C, H, W)`` or ``(K0, K1, C, H, W)`` with K0*K1 = K (item k at
        ``[k // K1, k % K1]``), any strides and dtype; default a new contiguous tensor in x's dtype.
    :param normaliser: S(1) from ``splat_normaliser_triton(flow)`` to reuse across calls with the same flow.
    :return: ``out``.
    """
    base, eps = parse_splat_mode(mode)
    if base not in ("sum", "avg"):
        raise ValueError(f"the Triton splat implements 'sum' and 'avg'; {mode!r} needs ops.splat.forward_splat")
    _check_flow(flow)
    if x.dim() != 4 or not x.is_floating_point() or x.dtype == torch.float64:
        raise ValueError(
            f"Triton splat input must be (N, C, H, W) float16/bfloat16/float32, got {x.dtype} {tuple(x.shape)}"
        )
    nf, _, h, w = flow.shape
    nx, c = x.shape[:2]
    if tuple(x.shape[2:]) != (h, w):
        raise ValueError(f"splat input {tuple(x.shape)} and flow {tuple(flow.shape)} must have the same H and W")
    if x_index is None and flow_index is None and nx != nf:
        raise ValueError(f"splat input has {nx} items but the flow has {nf}; pass x_index / flow_index to pair them")
    dev = x.device
    if flow_index is None:
        flow_index = torch.arange(nf, device=dev)
    if x_index is None:
        x_index = torch.arange(nx, device=dev) if flow_index.numel() == nx else flow_index
    if x_index.shape != flow_index.shape or x_index.dim() != 1:
        raise ValueError(
            f"x_index {tuple(x_index.shape)} and flow_index {tuple(flow_index.shape)} must be equal 1-D shapes"
        )
    _check_kernel_inputs(x, flow, x_index, flow_index)
    k = x_index.numel()

    if out is None:
        out = torch.empty(k, c, h, w, device=dev, dtype=x.dtype)
    if out.dim() == 4:
        out5 = out.unsqueeze(1)
    elif out.dim() == 5:
        out5 = out
    else:
        raise ValueError(f"out must be (K, C, H, W) or (K0, K1, C, H, W), got {tuple(out.shape)}")
    if out5.shape[0] * out5.shape[1] != k or tuple(out5.shape[2:]) != (c, h, w):
        raise ValueError(f"out {tuple(out.shape)} does not hold {k} items of shape {(c, h, w)}")
    if k == 0 or c == 0 or h * w == 0:
        return out

    if base == "avg":
        if normaliser is None:
            normaliser = splat_normaliser_triton(flow)
        elif tuple(normaliser.shape) != (nf, h * w) or normaliser.dtype != torch.float32:
            raise ValueError(
                f"normaliser must be float32 ({nf}, {h * w}), got {normaliser.dtype} {tuple(normaliser.shape)}"
            )
    block_c, block_p, num_warps = launch_config(c)
    # The float32 sums S(X) need a zeroed scratch; it holds one chunk of items, reused chunk after chunk.
    chunk = max(1, min(k, SCRATCH_ELEMENTS // (c * h * w)))
    scratch = torch.empty(chunk, c, h * w, device=dev, dtype=torch.float32)
    with _device_context(x):
        for start in range(0, k, chunk):
            stop = min(k, start + chunk)
            acc = scratch[: stop - start].zero_()
            grid = (stop - start, triton.cdiv(h * w, block_p), triton.cdiv(c, block_c))
            items_x, items_flow = x_index[start:stop], flow_index[start:stop]
            _splat_value_kernel[grid](
                x, flow, items_x, items_flow, acc, c, h, w, *x.stride(), *flow.stride(),
                BLOCK_C=block_c, BLOCK_P=block_p, num_warps=num_warps,
            )
            _splat_normalise_kernel[grid](
                acc, normaliser if base == "avg" else acc, items_flow, out5, c, h, w, out5.shape[1], start,
                *out5.stride(), EPS_MODE=_EPS_CODE[eps] if base == "avg" else 0, EPS=_EPS,
                BLOCK_C=block_c, BLOCK_P=block_p, num_warps=num_warps,
            )
    return out


def forward_splat_triton(
    x: torch.Tensor, flow: torch.Tensor, mode: str = "avg", metric: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Same contract as ``ops.splat.forward_splat``; "sum"/"avg" run the kernels.

    "linear"/"soft" (metric-weighted, unused by the models) and float64 inputs run the torch reference.
    """
    base, _ = parse_splat_mode(mode)
    if base not in ("sum", "avg") or metric is not None or x.dtype == torch.float64:
        from motion_i2v_core.ops.splat import forward_splat

        return forward_splat(x, flow, mode, metric)
    _check_flow(flow)
    if x.dim() != 4 or x.shape[0] != flow.shape[0] or x.shape[2:] != flow.shape[2:]:
        raise ValueError(f"splat input {tuple(x.shape)} and flow {tuple(flow.shape)} must have the same N, H and W")
    return warp_splat(x, flow, mode=mode)
