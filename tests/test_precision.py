"""Half-precision paths (fp16 / bf16 weights and activations) of the tiny parity models against fp32.

The models are the parity bundle's random-weight tiny models loaded with ``load_stage1`` /
``load_stage2`` at each dtype, fed the bundle's recorded UNet inputs (CPU; both half types run there).

Tolerances (max |half - fp32| / max |fp32|, and the same ratio of the means):
- fp16 (11 significant bits, unit roundoff 2^-11 ~ 4.9e-4): every layer rounds its weights and its
  output once; across the ~40 layers of these UNets the measured error is 0.2-0.4 %. Limit 1e-2 (max)
  and 6e-3 (mean), about 2.5x the measurement.
- bf16 (8 significant bits, unit roundoff 2^-8 ~ 3.9e-3, 8x coarser than fp16): measured 2-3 %.
  Limit 7e-2 (max) and 5e-2 (mean).
The forward splat inside the half-precision render UNet must still accumulate in float32, checked by
watching the tensors that reach the registered splat op.
"""

from __future__ import annotations


import pytest
import torch
from safetensors.torch import load_file

from harness.reference import PARITY
from motion_i2v_core.loading import load_stage1, load_stage2
from motion_i2v_core.ops import get_backend, implementation, register, unregister, use_backend

BUNDLE = PARITY

HALF = (torch.float16, torch.bfloat16)
TOLERANCE = {torch.float16: (1e-2, 6e-3), torch.bfloat16: (7e-2, 5e-2)}  # (max, mean) relative


@pytest.fixture(scope="module")
def data():
    s1 = load_file(str(BUNDLE / "stage1_inputs.safetensors"))
    s2 = load_file(str(BUNDLE / "stage2_inputs.safetensors"))
    flow = load_file(str(BUNDLE / "stage1_outputs.safetensors"))["flow_pre"][None]
    return s1, s2, flow


@torch.no_grad()
def _outputs(dtype, data, splat_dtypes=None):
    """Stage-1 eps (with control), stage-2 eps (with flow) and a VAE decode, as float32."""
    s1, s2, flow = data
    stage1 = load_stage1(BUNDLE / "models/stage1/StableDiffusion-FlowGen",
                         image_vae_dir=BUNDLE / "models/stage2/StableDiffusion/vae", dtype=dtype)
    stage2 = load_stage2(BUNDLE / "models/stage2", dtype=dtype)
    eps1 = stage1.unet(s1["fwd_sample"], s1["fwd_timestep"], s1["stride"], s1["fwd_encoder_hidden_states"],
                       control=s1["fwd_control"])
    selected = get_backend()
    if splat_dtypes is not None:
        reference_splat = implementation("forward_splat", "torch")

        def spy(x, flow, mode="avg", metric=None):
            splat_dtypes.add((x.dtype, flow.dtype))
            return reference_splat(x, flow, mode, metric)

        register("forward_splat", "spy", spy)
        selected = "spy"  # a backend of its own: the other ops run their torch reference
    try:
        with use_backend(selected):
            eps2 = stage2.unet(s2["fwd_sample"], s2["fwd_timestep"], s2["fwd_encoder_hidden_states"], flow=flow)
    finally:
        unregister("forward_splat", "spy")
    latents = s2["fwd_sample"][0, :, :2].transpose(0, 1)  # two 4-channel latent frames
    decoded = stage2.vae.decode(latents.to(dtype))
    for out in (eps1, eps2, decoded):
        assert out.dtype == dtype, f"{out.dtype} output from a {dtype} model"
    return {"stage1_eps": eps1.float(), "stage2_eps": eps2.float(), "vae_decode": decoded.float()}


@pytest.fixture(scope="module")
def fp32_outputs(data):
    return _outputs(torch.float32, data)


@pytest.fixture(scope="module", params=HALF, ids=lambda d: str(d).replace("torch.", ""))
def half_run(request, data):
    splat_dtypes = set()
    return request.param, _outputs(request.param, data, splat_dtypes), splat_dtypes


@pytest.mark.parametrize("name", ["stage1_eps", "stage2_eps", "vae_decode"])
def test_half_precision_agrees_with_fp32(half_run, fp32_outputs, name):
    dtype, outputs, _ = half_run
    ref, out = fp32_outputs[name], outputs[name]
    assert torch.isfinite(out).all()
    max_rel = ((out - ref).abs().max() / ref.abs().max()).item()
    mean_rel = ((out - ref).abs().mean() / ref.abs().mean()).item()
    max_tol, mean_tol = TOLERANCE[dtype]
    assert max_rel <= max_tol and mean_rel <= mean_tol, f"{dtype} {name}: max {max_rel:.2e}, mean {mean_rel:.2e}"
    # Half precision must actually change something (the model really ran in that dtype).
    assert max_rel > 1e-6


def test_half_precision_splat_accumulates_in_fp32(half_run):
    dtype, _, splat_dtypes = half_run
    assert splat_dtypes == {(torch.float32, torch.float32)}, f"splat saw {splat_dtypes} in a {dtype} model"
