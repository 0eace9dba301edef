"""Constant work off the per-call path: the stacked K/V weight, the per-level flow cache, bounded splat scratch.

The Triton path that consumes these runs in tests/test_triton_kernels.py (interpreter / CUDA); here a fake
backend of the registry records what the models hand to the motion attention, on CPU.
"""

from __future__ import annotations

import pytest
import torch

from motion_i2v_core import ops
from motion_i2v_core.models.config import UNetConfig
from motion_i2v_core.models.motion_module import TemporalAttention
from motion_i2v_core.models.operations import cast_ops
from motion_i2v_core.models.unet3d import RenderUNet
from motion_i2v_core.ops import registry, splat
from motion_i2v_core.ops.splat import forward_splat


def _stacked(attn: TemporalAttention) -> torch.Tensor:
    return attn.stacked_kv_weight(attn.to_k.weight, attn.to_v.weight)


@torch.no_grad()
def test_stacked_kv_weight_is_built_once_and_rebuilt_when_the_weights_change():
    attn = TemporalAttention(16, 2)
    first = _stacked(attn)
    assert torch.equal(first, torch.cat([attn.to_k.weight, attn.to_v.weight]))
    assert _stacked(attn) is first, "kept between calls"

    new = {k: torch.randn_like(v) for k, v in attn.state_dict().items()}
    attn.load_state_dict(new)
    after_load = _stacked(attn)
    assert after_load is not first and torch.equal(after_load, torch.cat([new["to_k.weight"], new["to_v.weight"]]))

    attn.to_v.weight.mul_(2)  # an in-place edit
    assert torch.equal(_stacked(attn), torch.cat([new["to_k.weight"], 2 * new["to_v.weight"]]))

    attn.load_state_dict(new, assign=True)  # replaced parameters
    assert torch.equal(_stacked(attn), torch.cat([new["to_k.weight"], new["to_v.weight"]]))

    kept = _stacked(attn)
    attn.to(torch.float64)
    assert attn._kv_cache is None, ".to() drops the copy of the old weights"
    assert _stacked(attn).dtype == torch.float64 and torch.equal(_stacked(attn), kept.double())


def test_stacked_kv_weight_is_not_kept_for_cast_or_trainable_weights():
    attn = TemporalAttention(16, 2)
    w_k, w_v = attn.to_k.weight, attn.to_v.weight
    first = attn.stacked_kv_weight(w_k, w_v)  # grad enabled, trainable weights: per call, differentiable
    assert first.requires_grad and attn.stacked_kv_weight(w_k, w_v) is not first and attn._kv_cache is None
    with torch.no_grad():
        half_k, half_v = w_k.half(), w_v.half()  # what a casting namespace hands over
        assert attn.stacked_kv_weight(half_k, half_v) is not attn.stacked_kv_weight(half_k, half_v)
        assert attn._kv_cache is None


@pytest.fixture
def recording_backend():
    """A fake "motion_augmented_attention" backend that records its extra arguments and runs the reference."""
    calls = []
    reference = ops.implementation("motion_augmented_attention", "torch")

    def record(x, flow, **kwargs):
        calls.append({"height": kwargs["height"], "flow_cache": kwargs["flow_cache"],
                      "kv_weight": kwargs["kv_weight"]()})
        kwargs["flow_cache"].setdefault("calls", 0)
        kwargs["flow_cache"]["calls"] += 1
        return reference(x, flow, **kwargs)

    ops.register("motion_augmented_attention", "recording", record)
    try:
        yield calls
    finally:
        ops.unregister("motion_augmented_attention", "recording")
        registry.reset_failures()


@torch.no_grad()
def test_the_unet_shares_one_flow_cache_per_level_and_keeps_the_stacked_weights(recording_backend):
    torch.manual_seed(0)
    cfg = UNetConfig.sd15_render(block_out_channels=(32, 32, 32, 32), layers_per_block=1, cross_attention_dim=32)
    unet = RenderUNet(cfg).eval()
    sample, text, flow = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 7, 32), torch.randn(1, 3, 2, 64, 64) * 4
    with ops.use_backend("recording"):
        out = unet(sample, 10, text, flow=flow)
        first_call = list(recording_backend)
        recording_backend.clear()
        unet(sample, 10, text, flow=flow)
    with ops.use_backend("torch"):
        assert torch.equal(out, unet(sample, 10, text, flow=flow)), "the extra arguments change no number"
    by_level: dict[int, set[int]] = {}
    for call in first_call:
        by_level.setdefault(call["height"], set()).add(id(call["flow_cache"]))
    assert len(by_level) > 1 and all(len(ids) == 1 for ids in by_level.values()), "one cache dict per level"
    for call in first_call:
        assert call["flow_cache"]["calls"] == sum(c["height"] == call["height"] for c in first_call)
    # The next UNet call (next step) reuses every module's stacked K/V weight.
    assert len(recording_backend) == len(first_call)
    for before, after in zip(first_call, recording_backend):
        assert after["kv_weight"] is before["kv_weight"]


@torch.no_grad()
def test_cast_namespace_weights_reach_the_op_without_a_kept_copy(recording_backend):
    torch.manual_seed(0)
    cfg = UNetConfig.sd15_render(block_out_channels=(32, 32, 32, 32), layers_per_block=1, cross_attention_dim=32)
    unet = RenderUNet(cfg, dtype=torch.float64, operations=cast_ops, compute_dtype=torch.float32).eval()
    with ops.use_backend("recording"):
        unet(torch.randn(1, 4, 2, 8, 8), 10, torch.randn(1, 7, 32), flow=torch.randn(1, 2, 2, 64, 64))
    assert recording_backend and all(c["kv_weight"].dtype == torch.float32 for c in recording_backend)
    assert all(m._kv_cache is None for m in unet.modules() if isinstance(m, TemporalAttention))


@pytest.mark.parametrize("mode", ["sum", "avg", "avg-zeroeps"])
def test_splat_in_chunks_of_rows_is_bitwise_the_single_chunk_result(monkeypatch, mode):
    gen = torch.Generator().manual_seed(1)
    x, flow = torch.randn(3, 7, 6, 5, generator=gen), torch.randn(3, 2, 6, 5, generator=gen) * 3
    flow[0, 0, 1, 1] = float("nan")
    whole = forward_splat(x, flow, mode)
    slots = 3 * (6 + 4) * (5 + 4)  # the padded grid of one channel row
    monkeypatch.setattr(splat, "SCRATCH_ELEMENTS", 2 * slots)  # chunks of 2 of the 7 rows, the last partial
    assert torch.equal(forward_splat(x, flow, mode), whole)
    monkeypatch.setattr(splat, "SCRATCH_ELEMENTS", 1)  # below one row: one row per chunk
    assert torch.equal(forward_splat(x, flow, mode), whole)
