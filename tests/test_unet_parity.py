"""Single UNet forwards against the official outputs recorded in the parity bundle.

The official-layout .bin files are loaded directly (torch.load weights_only) so this test does not depend
on the loader package; configs come from the bundle's config.json files and meta.json.
"""

from __future__ import annotations

import json

import pytest
import torch

from motion_i2v_core.models.config import UNetConfig
from motion_i2v_core.models.unet3d import FlowUNet, RenderUNet
from harness.reference import PARITY

BUNDLE = PARITY
TOLERANCE = 2e-3  # max abs diff / max |reference| for single UNet forwards (bundle README section 7)



def _load_bin(relpath: str) -> dict[str, torch.Tensor]:
    return torch.load(BUNDLE / "models" / relpath, map_location="cpu", weights_only=True)


def _config(relpath: str, **overrides) -> UNetConfig:
    meta = json.loads((BUNDLE / "meta.json").read_text())
    raw = json.loads((BUNDLE / "models" / relpath).read_text())
    return UNetConfig.from_diffusers(raw, **UNetConfig.motion_overrides(meta["unet_additional_kwargs"]), **overrides)


def _tensors(name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(BUNDLE / name))


def _relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert ours.shape == ref.shape, (tuple(ours.shape), tuple(ref.shape))
    return ((ours.float() - ref).abs().max() / ref.abs().max()).item()


@pytest.fixture(scope="module")
def flow_unet() -> FlowUNet:
    root = "stage1/StableDiffusion-FlowGen/"
    model = FlowUNet(_config(root + "unet/config.json", stride_embedding=True))
    # controlnet.bin is overlaid on the UNet dict, as the official app's second load_state_dict does.
    state = {**_load_bin(root + "unet/diffusion_pytorch_model.bin"), **_load_bin(root + "controlnet/controlnet.bin")}
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def render_unet() -> RenderUNet:
    model = RenderUNet(_config("stage2/StableDiffusion/unet/config.json"))
    state = {
        **_load_bin("stage2/StableDiffusion/unet/diffusion_pytorch_model.bin"),
        **_load_bin("stage2/Motion_Module/motion_block.bin"),
    }
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def stage1_run(flow_unet):
    inputs = _tensors("stage1_inputs.safetensors")
    args = (inputs["fwd_sample"], inputs["fwd_timestep"], inputs["stride"], inputs["fwd_encoder_hidden_states"])
    with torch.no_grad():
        eps, (down, mid) = flow_unet(*args, control=inputs["fwd_control"], return_control_residuals=True)
        eps_no_control = flow_unet(*args)
    return {"eps": eps, "down": down, "mid": mid, "eps_no_control": eps_no_control}


@pytest.fixture(scope="module")
def stage2_data():
    inputs = _tensors("stage2_inputs.safetensors")
    flow = _tensors("stage1_outputs.safetensors")["flow_pre"][None]  # (1, 16, 2, H, W)
    return inputs, flow


def test_stage1_eps_with_control(stage1_run):
    ref = _tensors("stage1_outputs.safetensors")
    assert _relative_error(stage1_run["eps"], ref["fwd_eps"]) <= TOLERANCE


def test_stage1_eps_without_control(stage1_run):
    ref = _tensors("stage1_outputs.safetensors")
    assert _relative_error(stage1_run["eps_no_control"], ref["fwd_eps_no_control"]) <= TOLERANCE


@pytest.mark.parametrize("index", [0, 3, 5, 8, 11])
def test_stage1_controlnet_down_residuals(stage1_run, index):
    ref = _tensors("stage1_outputs.safetensors")
    assert len(stage1_run["down"]) == 12
    assert _relative_error(stage1_run["down"][index], ref[f"fwd_ctrl_down_res_{index:02d}"]) <= TOLERANCE


def test_stage1_controlnet_mid_residual(stage1_run):
    ref = _tensors("stage1_outputs.safetensors")
    assert _relative_error(stage1_run["mid"], ref["fwd_ctrl_mid_res"]) <= TOLERANCE


def test_stage2_eps_official_compat_cfg_batch(render_unet, stage2_data):
    inputs, flow = stage2_data
    ref = _tensors("stage2_outputs.safetensors")
    with torch.no_grad():
        eps = render_unet(
            inputs["fwd_sample"], inputs["fwd_timestep"], inputs["fwd_encoder_hidden_states"],
            flow=flow.repeat(2, 1, 1, 1, 1), official_compat=True,
        )
    assert _relative_error(eps, ref["fwd_eps"]) <= TOLERANCE
    # Without the Q1 batch mixing the CFG batch must NOT reproduce the official output.
    with torch.no_grad():
        own = render_unet(inputs["fwd_sample"], inputs["fwd_timestep"], inputs["fwd_encoder_hidden_states"], flow=flow)
    assert _relative_error(own, ref["fwd_eps"]) > 10 * TOLERANCE


@pytest.mark.parametrize("half, key", [(0, "fwd_eps_b1_uncond"), (1, "fwd_eps_b1_cond")])
def test_stage2_eps_batch1(render_unet, stage2_data, half, key):
    inputs, flow = stage2_data
    ref = _tensors("stage2_outputs.safetensors")
    sl = slice(half, half + 1)
    with torch.no_grad():
        eps = render_unet(inputs["fwd_sample"][sl], inputs["fwd_timestep"], inputs["fwd_encoder_hidden_states"][sl], flow=flow)
    assert _relative_error(eps, ref[key]) <= TOLERANCE


def test_stage2_default_batch_equals_separate_calls(render_unet, stage2_data):
    # float64 removes kernel summation-order noise (amplified by the 1x1 deepest level), so the batch-2
    # result must equal the two batch-1 results almost exactly.
    inputs, flow = stage2_data
    model = RenderUNet(render_unet.config, dtype=torch.float64)
    model.load_state_dict(render_unet.state_dict())
    sample = inputs["fwd_sample"].double()
    text = inputs["fwd_encoder_hidden_states"].double()
    t = inputs["fwd_timestep"]
    with torch.no_grad():
        both = model(sample, t, text, flow=flow.double())
        single = torch.cat([model(sample[i : i + 1], t, text[i : i + 1], flow=flow.double()) for i in range(2)])
        compat_b1 = model(sample[:1], t, text[:1], flow=flow.double(), official_compat=True)
    assert (both - single).abs().max().item() < 1e-5
    # With one video there is nothing to mix: the compat path equals the default one.
    assert (compat_b1 - single[:1]).abs().max().item() < 1e-9
