"""Benchmark smoke test at the minimal "tiny" size, and the "naive" baseline backend against the reference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from motion_i2v_core import bench
from motion_i2v_core.models.motion_module import FlowWarpContext
from motion_i2v_core.ops import get_backend, naive, use_backend
from motion_i2v_core.ops.motion_attention import motion_augmented_attention, multihead_attention
from motion_i2v_core.ops.splat import forward_splat

REPO = Path(__file__).resolve().parents[1]


def test_naive_ops_compute_the_same_thing():
    gen = torch.Generator().manual_seed(0)
    x, flow = torch.randn(3, 5, 6, 7, generator=gen), torch.randn(3, 2, 6, 7, generator=gen) * 3
    torch.testing.assert_close(naive.forward_splat(x, flow), forward_splat(x, flow), atol=1e-6, rtol=1e-6)
    q, k, v = (torch.randn(4, n, 16, generator=gen) for n in (3, 5, 5))
    torch.testing.assert_close(naive.multihead_attention(q, k, v, 4), multihead_attention(q, k, v, 4), atol=1e-6, rtol=1e-6)
    b, frames, h, w, c = 2, 4, 3, 5, 16
    tokens = torch.randn(b * frames, h * w, c, generator=gen)
    flow5 = torch.randn(1, frames, 2, h, w, generator=gen)
    kw = dict(num_frames=frames, height=h, width=w, pe=torch.randn(1, 32, c, generator=gen), heads=4,
              w_q=torch.randn(c, c, generator=gen), w_k=torch.randn(c, c, generator=gen),
              w_v=torch.randn(c, c, generator=gen))
    for compat in (False, True):
        torch.testing.assert_close(naive.motion_augmented_attention(tokens, flow5, official_compat=compat, **kw),
                                   motion_augmented_attention(tokens, flow5, official_compat=compat, **kw),
                                   atol=1e-4, rtol=1e-4)


def test_tiny_bench_runs_and_restores_the_ops(tmp_path, capsys):
    out = tmp_path / "bench.json"
    report = bench.main(["--device", "cpu", "--size", "tiny", "--repeats", "1", "--no-warmup", "--json", str(out)])
    text = capsys.readouterr().out
    assert "speed-up ours vs naive" in text and "output difference" in text
    assert json.loads(out.read_text())["size"].startswith("tiny")
    gen = report["generation"]
    assert gen["naive"]["total_s"] > 0 and gen["ours"]["total_s"] > 0 and gen["speedup"] > 0
    assert gen["ours"]["peak_bytes"] > 0
    # Both paths compute the same generation in fp32 (differences: summation order only).
    assert gen["frames_diff"]["max_abs"] < 1e-3
    assert gen["flow_diff_px"]["max_abs"] < 1e-2
    for row in report["ops"]:
        assert row["diff_vs_naive"]["max_rel"] < 1e-4, row
    # The naive run must leave the selection as it found it.
    assert get_backend() == "auto"


def test_naive_backend_resizes_the_flow_in_every_call():
    flow = torch.randn(1, 3, 2, 16, 24)
    ctx = FlowWarpContext(flow)
    assert ctx.at(4, 6) is ctx.at(4, 6), "ours: one resize per level"
    with use_backend("naive"):
        first, second = ctx.at(2, 3), ctx.at(2, 3)
    assert first is not second and torch.equal(first, second)


def test_cli_help():
    proc = subprocess.run([sys.executable, "-m", "motion_i2v_core.bench", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for option in ("--device", "--dtype", "--size", "--steps", "--frames", "--compile", "--low-vram"):
        assert option in proc.stdout
