"""Triton kernels against their torch reference ops, and the backend selection.

CPU (CI): the kernel checks run once in a subprocess with ``TRITON_INTERPRET=1`` (Triton's interpreter
executes the kernels with numpy, atomics included). The variable must be set before triton is imported,
and the rest of the suite must not see it, hence the subprocess. GPU: the same checks compiled for CUDA,
skipped without a CUDA device.

Tolerances: float32 outputs may differ from the reference by float32 summation order only (atomics add
the up-to-4 contributions of a pixel in any order): ``atol = rtol = 1e-5``. float16 / bfloat16 outputs
are the same float32 results rounded once, so a value that falls on a rounding boundary may move by one
unit in the last place: ``rtol = 1e-3`` (fp16, 2^-10) and ``8e-3`` (bf16, 2^-7). The fp16 attention
kernel (inputs rounded to fp16, fp32 accumulation) is compared with the fp32 reference at ``5e-3``; the
whole fp16 motion attention (fp16 projections too, O(1) outputs) at ``2e-2``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from motion_i2v_core.ops import get_op, registry, use_backend
from motion_i2v_core.ops.motion_attention import motion_augmented_attention
from motion_i2v_core.ops.splat import forward_splat

REPO = Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")

try:
    import importlib.util

    HAVE_TRITON = importlib.util.find_spec("triton") is not None
except (ImportError, ValueError):
    HAVE_TRITON = False

# Named shapes (N, C, H, W): why each is here.
SPLAT_SHAPES = {
    "single_pixel": (1, 1, 1, 1),  # every corner but NW leaves the image
    "odd_small": (2, 3, 5, 7),
    "channels_37_odd_hw": (3, 37, 9, 13),  # C not a multiple of the 32-channel block
    "channels_70_pixels_187": (2, 70, 17, 11),  # several channel blocks, partial pixel block
    "wide_row": (1, 5, 3, 130),  # pixel block crosses image rows
}
SPLAT_MODES = ("sum", "avg", "avg-zeroeps", "avg-clipeps")
TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float16: dict(atol=1e-3, rtol=1e-3),
       torch.bfloat16: dict(atol=8e-3, rtol=8e-3)}


def _flow(n, h, w, gen, scale=3.0):
    """Random flow with NaN / inf sources and targets far outside, just outside and on the border."""
    flow = torch.randn(n, 2, h, w, generator=gen) * scale
    flow[0, 0, 0, 0] = NAN
    flow[-1, 1, h - 1, w - 1] = INF
    if h * w > 2:
        flow[0, :, h // 2, w // 2] = torch.tensor([1e6, -1e6])  # far outside
        flow[-1, 0, 0, w - 1] = 0.5  # target x in (W-1, W): NE/SE corners drop
        flow[-1, 1, h - 1, 0] = -1.0  # integer target: a single corner with weight 1
    return flow


# ---------------------------------------------------------------------------------------------------
# Checks shared by the interpreter subprocess (CPU) and the GPU tests. Each raises on a mismatch.


def check_splat_modes(device: str) -> None:
    from motion_i2v_core.ops.triton_splat import forward_splat_triton

    gen = torch.Generator().manual_seed(0)
    for name, (n, c, h, w) in SPLAT_SHAPES.items():
        x = torch.randn(n, c, h, w, generator=gen)
        flow = _flow(n, h, w, gen)
        for mode in SPLAT_MODES:
            ref = forward_splat(x, flow, mode)
            out = forward_splat_triton(x.to(device), flow.to(device), mode).cpu()
            torch.testing.assert_close(out, ref, **TOL[torch.float32], msg=lambda m: f"{name} {mode}: {m}")


def check_splat_half_inputs(device: str) -> None:
    from motion_i2v_core.ops.triton_splat import forward_splat_triton

    gen = torch.Generator().manual_seed(1)
    n, c, h, w = SPLAT_SHAPES["channels_37_odd_hw"]
    for dtype in (torch.float16, torch.bfloat16):
        x = torch.randn(n, c, h, w, generator=gen).to(dtype)
        flow = _flow(n, h, w, gen).to(dtype)
        ref = forward_splat(x, flow, "avg")
        out = forward_splat_triton(x.to(device), flow.to(device), "avg").cpu()
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), ref.float(), **TOL[dtype], msg=lambda m: f"{dtype}: {m}")


def check_zero_and_integer_flow_exact(device: str) -> None:
    """One contribution per target pixel: no summation order, so the kernel must be bitwise exact."""
    from motion_i2v_core.ops.triton_splat import forward_splat_triton

    x = torch.randn(2, 5, 6, 9, generator=torch.Generator().manual_seed(2))
    for flow in (torch.zeros(2, 2, 6, 9), torch.tensor([2.0, -1.0]).view(1, 2, 1, 1).expand(2, 2, 6, 9).contiguous()):
        for mode in ("sum", "avg"):
            out = forward_splat_triton(x.to(device), flow.to(device), mode).cpu()
            assert torch.equal(out, forward_splat(x, flow, mode)), mode


def check_shared_normaliser_indexing(device: str) -> None:
    """Both CFG branches (and the official Q1 source mapping) reuse one flow and one normaliser."""
    from motion_i2v_core.ops.triton_splat import splat_normaliser_triton, warp_splat

    gen = torch.Generator().manual_seed(3)
    b, frames, c, h, w = 2, 5, 19, 7, 6
    ref_feats = torch.randn(b, c, h, w, generator=gen)
    flows = _flow(frames, h, w, gen)
    x_index = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0, 1, 0])  # Q1-like mixing
    flow_index = torch.arange(b * frames) % frames
    norm = splat_normaliser_triton(flows.to(device))
    expected_norm = torch.stack([
        forward_splat(torch.ones(1, 1, h, w), flows[i : i + 1], "sum")[0, 0].flatten() for i in range(frames)
    ])
    torch.testing.assert_close(norm.cpu(), expected_norm, **TOL[torch.float32])
    out = warp_splat(ref_feats.to(device), flows.to(device), x_index=x_index.to(device),
                     flow_index=flow_index.to(device), normaliser=norm).cpu()
    ref = forward_splat(ref_feats[x_index], flows[flow_index], "avg")
    torch.testing.assert_close(out, ref, **TOL[torch.float32])
    # Strided output (K0, K1, C, H, W) inside a bigger buffer, as the attention's token sequence.
    big = torch.full((b, h * w, 2 * frames, c), 7.0, device=device)
    slots = big[:, :, 1::2].permute(0, 2, 3, 1).unflatten(-1, (h, w))
    warp_splat(ref_feats.to(device), flows.to(device), x_index=x_index.to(device), flow_index=flow_index.to(device),
               out=slots)
    got = big.cpu()[:, :, 1::2].permute(0, 2, 3, 1).reshape(b * frames, c, h, w)
    torch.testing.assert_close(got, ref, **TOL[torch.float32])
    assert torch.all(big.cpu()[:, :, 0::2] == 7.0), "even slots must stay untouched"
    # In chunks of 3 items (10 items: 4 chunks, the last partial) the scratch is smaller, the result the same.
    from motion_i2v_core.ops import triton_splat

    previous, triton_splat.SCRATCH_ELEMENTS = triton_splat.SCRATCH_ELEMENTS, 3 * c * h * w
    try:
        big.fill_(7.0)
        warp_splat(ref_feats.to(device), flows.to(device), x_index=x_index.to(device),
                   flow_index=flow_index.to(device), out=slots, normaliser=norm)
    finally:
        triton_splat.SCRATCH_ELEMENTS = previous
    torch.testing.assert_close(big.cpu()[:, :, 1::2].permute(0, 2, 3, 1).reshape(b * frames, c, h, w), ref,
                               **TOL[torch.float32])
    assert torch.all(big.cpu()[:, :, 0::2] == 7.0)


def check_attention_core(device: str) -> None:
    """The optional Triton attention step against SDPA: real shape (16 queries, 31 keys, d = 40) and odd ones."""
    from motion_i2v_core.ops.motion_attention import multihead_attention
    from motion_i2v_core.ops.triton_attention import attention_core_triton

    gen = torch.Generator().manual_seed(6)
    for n, lq, lk, c, heads in [(6, 16, 31, 320, 8), (3, 1, 1, 16, 2), (4, 7, 13, 24, 3)]:
        q, k, v = (torch.randn(n, length, c, generator=gen) for length in (lq, lk, lk))
        ref = multihead_attention(q, k, v, heads)
        out = attention_core_triton(q.to(device), k.to(device), v.to(device), heads).cpu()
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        half = attention_core_triton(q.to(device).half(), k.to(device).half(), v.to(device).half(), heads).cpu()
        torch.testing.assert_close(half.float(), ref, atol=5e-3, rtol=5e-3)


def check_motion_attention(device: str) -> None:
    from motion_i2v_core.ops.triton_attention import motion_augmented_attention_triton

    gen = torch.Generator().manual_seed(4)
    # (B, F, H, W, C, heads, B_f, official_compat)
    cases = [(2, 4, 3, 5, 16, 4, 1, False), (2, 3, 4, 4, 8, 2, 2, True), (1, 1, 2, 3, 8, 2, 1, False),
             (2, 5, 5, 3, 24, 8, 1, True)]
    for bsz, frames, h, w, c, heads, flow_b, compat in cases:
        x = torch.randn(bsz * frames, h * w, c, generator=gen)
        flow = torch.randn(flow_b, frames, 2, h, w, generator=gen) * 2
        flow[0, -1, 0, 0, 0] = 50.0  # out of the image
        pe = torch.randn(1, 32, c, generator=gen)
        ws = [torch.randn(c, c, generator=gen) / c**0.5 for _ in range(3)]
        kw = dict(num_frames=frames, height=h, width=w, pe=pe, heads=heads, official_compat=compat)
        ref = motion_augmented_attention(x, flow, w_q=ws[0], w_k=ws[1], w_v=ws[2], **kw)
        out = motion_augmented_attention_triton(
            x.to(device), flow.to(device), w_q=ws[0].to(device), w_k=ws[1].to(device), w_v=ws[2].to(device),
            **{**kw, "pe": pe.to(device)},
        ).cpu()
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        # With the caller's stacked K/V weight and a level cache (filled by the first call, read by the second).
        stacked, cache = torch.cat([ws[1], ws[2]]).to(device), {}
        for _ in range(2):
            cached = motion_augmented_attention_triton(
                x.to(device), flow.to(device), w_q=ws[0].to(device), w_k=ws[1].to(device), w_v=ws[2].to(device),
                kv_weight=lambda: stacked, flow_cache=cache, **{**kw, "pe": pe.to(device)},
            ).cpu()
            torch.testing.assert_close(cached, out, atol=1e-5, rtol=1e-5)  # equal but for atomics' order
        assert frames == 1 or "splat_normaliser" in cache
        half = motion_augmented_attention_triton(
            x.to(device).half(), flow.to(device), w_q=ws[0].to(device).half(), w_k=ws[1].to(device).half(),
            w_v=ws[2].to(device).half(), **{**kw, "pe": pe.to(device)},
        ).cpu()
        assert half.dtype == torch.float16
        torch.testing.assert_close(half.float(), ref, atol=2e-2, rtol=2e-2)
        # Selected explicitly, the "triton" backend also runs the attention step as a Triton kernel.
        with use_backend("triton"):
            fused = motion_augmented_attention_triton(
                x.to(device), flow.to(device), w_q=ws[0].to(device), w_k=ws[1].to(device), w_v=ws[2].to(device),
                **{**kw, "pe": pe.to(device)},
            ).cpu()
        torch.testing.assert_close(fused, ref, atol=1e-5, rtol=1e-5)


CHECKS = {f.__name__: f for f in (check_splat_modes, check_splat_half_inputs, check_zero_and_integer_flow_exact,
                                  check_shared_normaliser_indexing, check_attention_core, check_motion_attention)}


def _run_checks_in_this_process(device: str) -> dict[str, str]:
    """name -> "ok" or the failure text (used by the interpreter subprocess)."""
    import traceback
    import warnings

    warnings.simplefilter("ignore")  # numpy warns on inf - inf inside the interpreter; expected
    results = {}
    for name, check in CHECKS.items():
        try:
            check(device)
            results[name] = "ok"
        except Exception:
            results[name] = traceback.format_exc(limit=4)
    return results


# ---------------------------------------------------------------------------------------------------
# CPU: Triton interpreter in a subprocess


@pytest.fixture(scope="module")
def interpreter_results() -> dict[str, str]:
    if not HAVE_TRITON:
        pytest.skip("triton is not installed (pip install triton==3.9.0 to run the kernel checks on CPU)")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    code = "import json, test_triton_kernels as t; print('RESULTS' + json.dumps(t._run_checks_in_this_process('cpu')))"
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS")]
    assert proc.returncode == 0 and lines, f"interpreter run failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULTS"):])


@pytest.mark.parametrize("name", list(CHECKS))
def test_kernel_matches_torch_in_interpreter(interpreter_results, name):
    assert interpreter_results[name] == "ok", interpreter_results[name]


# ---------------------------------------------------------------------------------------------------
# GPU: the same checks compiled for CUDA


@pytest.mark.skipif(not (torch.cuda.is_available() and HAVE_TRITON), reason="needs a CUDA device and triton")
@pytest.mark.parametrize("name", list(CHECKS))
def test_kernel_matches_torch_on_cuda(name):
    CHECKS[name]("cuda")


@pytest.mark.skipif(not (torch.cuda.is_available() and HAVE_TRITON), reason="needs a CUDA device and triton")
def test_auto_backend_uses_kernels_on_cuda():
    registry.reset_failures()
    with use_backend("auto"):
        x, flow = torch.randn(2, 3, 8, 8, device="cuda"), torch.randn(2, 2, 8, 8, device="cuda")
        out = get_op("forward_splat")(x, flow)
    torch.testing.assert_close(out.cpu(), forward_splat(x.cpu(), flow.cpu()), atol=1e-5, rtol=1e-5)
    assert not registry.status()["failed"]
    assert ("forward_splat", "triton") in registry._proven, "the kernel ran (and is now trusted)"


# ---------------------------------------------------------------------------------------------------
# The real kernels under the registry (CPU, no interpreter); the registry's own rules: test_ops_registry.py


def test_auto_on_cpu_is_bitwise_the_reference():
    gen = torch.Generator().manual_seed(5)
    x, flow = torch.randn(3, 4, 6, 5, generator=gen), _flow(3, 6, 5, gen)
    with use_backend("auto"):
        for mode in ("sum", "avg", "avg-clipeps"):
            assert torch.equal(get_op("forward_splat")(x, flow, mode), forward_splat(x, flow, mode))


@pytest.mark.skipif(not HAVE_TRITON, reason="needs triton")
@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="interpreter accepts CPU tensors")
def test_explicit_triton_on_cpu_raises():
    with use_backend("triton"), pytest.raises(RuntimeError, match="need CUDA tensors"):
        get_op("forward_splat")(torch.randn(1, 1, 2, 2), torch.zeros(1, 2, 2, 2))


@torch.no_grad()
def test_auto_on_cpu_render_unet_is_bitwise_the_reference_ops():
    from motion_i2v_core.models.config import UNetConfig
    from motion_i2v_core.models.unet3d import RenderUNet

    torch.manual_seed(0)
    cfg = UNetConfig.sd15_render(block_out_channels=(32, 32, 32, 32), layers_per_block=1, cross_attention_dim=32)
    unet = RenderUNet(cfg).eval()
    sample, text = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 7, 32)
    flow = torch.randn(1, 3, 2, 64, 64) * 4
    with use_backend("auto"):
        auto = unet(sample, 10, text, flow=flow)
    with use_backend("torch"):
        reference = unet(sample, 10, text, flow=flow)
    assert torch.equal(auto, reference)
