"""Layer namespaces ("operations"): same keys and outputs with any namespace, fp8 storage, meta builds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from motion_i2v_core.models.config import UNetConfig, VAEConfig
from motion_i2v_core.models.operations import cast_ops, torch_ops
from motion_i2v_core.models.unet3d import FlowUNet, RenderUNet
from motion_i2v_core.models.vae import AutoencoderKL

FP8 = torch.float8_e4m3fn


def tiny_config(**overrides) -> UNetConfig:
    base = dict(
        block_out_channels=(32, 32, 32, 32), layers_per_block=1, cross_attention_dim=16,
        norm_num_groups=8, attention_heads=8,
    )
    return UNetConfig(**{**base, **overrides})


TINY_VAE = VAEConfig(in_channels=2, out_channels=2, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8)


class counting_ops:
    """A casting namespace written the way ComfyUI's are (subclasses with a casting forward and a
    ``cast_weight`` hook), counting what runs through it."""

    calls = {"forward": 0, "cast_weight": 0}

    @classmethod
    def _bump(cls, what: str) -> None:
        cls.calls[what] += 1

    class Linear(torch.nn.Linear):
        def forward(self, x):
            counting_ops._bump("forward")
            return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    class Conv2d(cast_ops.Conv2d):
        def forward(self, x):
            counting_ops._bump("forward")
            return super().forward(x)

    Conv3d = cast_ops.Conv3d
    GroupNorm = cast_ops.GroupNorm
    LayerNorm = cast_ops.LayerNorm

    @staticmethod
    def cast_weight(layer, like):
        counting_ops._bump("cast_weight")
        return layer.weight.to(like.dtype)


def flow_inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 8, 3, 8, 8, generator=g)
    control = torch.randn(2, 5, 3, 8, 8, generator=g)
    text = torch.randn(2, 6, 16, generator=g)
    return sample.to(dtype), torch.tensor(500), torch.tensor([[8.0, 16.0, 24.0]]), text.to(dtype), control.to(dtype)


def render_inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(2)
    sample = torch.randn(2, 4, 3, 8, 8, generator=g)
    text = torch.randn(2, 6, 16, generator=g)
    flow = torch.randn(1, 3, 2, 64, 64, generator=g) * 4
    return sample.to(dtype), torch.tensor(300), text.to(dtype), flow


def inference(model):
    # Frozen weights, as in the pipelines: torch's matmul picks another (equally valid) kernel for a weight
    # that requires grad, and cast weights never do, so bitwise comparisons need both frozen.
    return model.eval().requires_grad_(False)


def build_pair(make, operations, **kw):
    """A model with the default namespace and one with ``operations``, holding the same weights."""
    torch.manual_seed(0)
    reference = inference(make(torch_ops, {}))
    other = inference(make(operations, kw))
    other.load_state_dict(reference.state_dict())
    return reference, other


MAKERS = {
    "flow": lambda ops, kw: FlowUNet(tiny_config(in_channels=8, stride_embedding=True), operations=ops, **kw),
    "render": lambda ops, kw: RenderUNet(tiny_config(), operations=ops, **kw),
    "vae": lambda ops, kw: AutoencoderKL(TINY_VAE, operations=ops, **kw),
}


def run(name, model, dtype=torch.float32):
    with torch.no_grad():
        if name == "flow":
            sample, t, stride, text, control = flow_inputs(dtype)
            return model(sample, t, stride, text, control=control)
        if name == "render":
            sample, t, text, flow = render_inputs(dtype)
            return model(sample, t, text, flow=flow)
        x = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(3)).to(dtype)
        return model(x)


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("operations", [cast_ops, counting_ops], ids=["cast_ops", "counting_ops"])
def test_casting_namespaces_give_identical_outputs_and_keys(name, operations):
    reference, other = build_pair(MAKERS[name], operations)
    assert list(other.state_dict()) == list(reference.state_dict())
    counting_ops.calls.update(forward=0, cast_weight=0)
    ref_out, out = run(name, reference), run(name, other)
    # fp32 weights cast to fp32 inputs: the very same kernels run, so the results are bitwise equal.
    assert torch.equal(out, ref_out)
    if operations is counting_ops:
        assert counting_ops.calls["forward"] > 0
        # the stage-2 motion attention takes its projection weights through the namespace's hook
        assert (counting_ops.calls["cast_weight"] > 0) == (name == "render")


def fp8_rounded(state: dict) -> dict:
    return {k: v.to(FP8).float() if v.is_floating_point() and not k.endswith(".pe") else v for k, v in state.items()}


@pytest.mark.parametrize("name", ["flow", "render"])
def test_fp8_weights_compute_exactly_like_their_fp32_values(name):
    reference, fp8 = build_pair(MAKERS[name], cast_ops, dtype=FP8, compute_dtype=torch.float32)
    assert fp8.conv_in.weight.dtype == FP8 and fp8.dtype == torch.float32
    rounded = inference(MAKERS[name](torch_ops, {}))
    rounded.load_state_dict(fp8_rounded(reference.state_dict()))
    # fp8 -> fp32 is exact, so fp8 storage with fp32 compute is the fp32 model with fp8-rounded weights.
    assert torch.equal(run(name, fp8), run(name, rounded))
    # Against the unrounded fp32 weights: e4m3 keeps 3 mantissa bits (each weight moves by up to 1/16 of
    # itself); through the ~20 layers of this tiny random config eps moves by 8-9 % relative RMS (measured),
    # stated tolerance 15 %.
    ref = run(name, reference)
    rel = (run(name, fp8) - ref).norm() / ref.norm()
    assert 0 < rel < 0.15


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_fp8_weights_with_bf16_compute_track_fp32(name):
    kw = {"dtype": FP8} if name == "vae" else {"dtype": FP8, "compute_dtype": torch.bfloat16}
    reference, fp8 = build_pair(MAKERS[name], cast_ops, **kw)
    rounded = inference(MAKERS[name](torch_ops, {}))
    rounded.load_state_dict(fp8_rounded(reference.state_dict()))
    out = run(name, fp8, torch.bfloat16)
    assert out.dtype == torch.bfloat16
    ref = run(name, rounded)
    # bf16 activations (8 mantissa bits) over the whole network: 1-2 % relative RMS measured, tolerance 5 %.
    rel = (out.float() - ref).norm() / ref.norm()
    assert rel < 0.05


def test_fp8_weights_need_a_compute_dtype():
    model = RenderUNet(tiny_config(), dtype=FP8, operations=cast_ops).eval()
    sample, t, text, flow = render_inputs()
    with pytest.raises(ValueError, match="compute_dtype=torch.float16 or torch.bfloat16"):
        model(sample, t, text, flow=flow)


@pytest.mark.parametrize("operations", [torch_ops, cast_ops], ids=["torch_ops", "cast_ops"])
@pytest.mark.parametrize("dtype", [torch.float16, FP8])
def test_meta_builds_at_sd15_size_in_any_storage_dtype(operations, dtype):
    flow = FlowUNet(UNetConfig.sd15_flow(), dtype=dtype, device="meta", operations=operations)
    render = RenderUNet(UNetConfig.sd15_render(), dtype=dtype, device="meta", operations=operations)
    vae = AutoencoderKL(VAEConfig.sd15(), dtype=dtype, device="meta", operations=operations)
    for model in (flow, render, vae):
        tensors = dict(model.state_dict())
        assert all(t.is_meta for t in tensors.values())
        weights = {k: t.dtype for k, t in tensors.items() if not k.endswith("pos_encoder.pe")}
        assert set(weights.values()) == {dtype}
    # the position tables stay usable: float32 when the weights are float8
    pe = render.state_dict()["down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0"
                             ".attention_blocks.0.pos_encoder.pe"]
    assert pe.dtype == (torch.float32 if dtype == FP8 else dtype)

