"""ComfyUI's layer classes (what Load Motion-I2V builds the networks with) give the plain-torch outputs.

In-process, with the installed ComfyUI's comfy.ops and comfy.model_patcher on the CPU: the tiny
random-weight bundle built with nodes/comfy_layers.py renders and predicts exactly as with torch.nn
layers, also when a ModelPatcher has loaded it "partially" (every layer then casts its weight at run
time, as with --lowvram), and fp8_e4m3fn weights give the outputs of fp32 weights rounded to fp8.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from harness.comfy_server import REPO_DIR, require_comfyui
from harness.reference import PARITY_MODELS
from motion_i2v_core.loading.official import load_stage1, load_stage2
from motion_i2v_core.pipelines import predict_flow, render_video

SIZE, FRAMES, TEXT_DIM = 64, 4, 32


@pytest.fixture(scope="module")
def comfy_layers():
    """nodes/comfy_layers.py, loaded on its own with the installed ComfyUI (run as --cpu) importable."""
    comfy_dir = str(require_comfyui())
    if comfy_dir not in sys.path:
        sys.path.append(comfy_dir)  # appended: ComfyUI's nodes.py must not shadow this repository's nodes/
    launcher = importlib.util.spec_from_file_location("mi2v_launch_comfyui", REPO_DIR / "scripts" / "launch_comfyui.py")
    shim = importlib.util.module_from_spec(launcher)
    launcher.loader.exec_module(shim)
    shim.install_torchvision_shim()  # comfy.model_patcher imports torchvision (see scripts/launch_comfyui.py)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    spec = importlib.util.spec_from_file_location("mi2v_comfy_layers", REPO_DIR / "nodes" / "comfy_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stages(dtype=torch.float32, layers=None):
    """Both tiny stages, the UNets in `dtype` (VAEs fp32)."""
    vaes = dict.fromkeys(("flow_vae", "image_vae", "vae"), torch.float32)
    kw = {"dtypes": vaes} if layers is None else {"dtypes": vaes, "layers": layers}
    s1 = load_stage1(PARITY_MODELS / "stage1" / "StableDiffusion-FlowGen", dtype=dtype, **kw)
    s2 = load_stage2(PARITY_MODELS / "stage2", dtype=dtype, **kw)
    return s1, s2


def outputs(s1, s2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, SIZE, SIZE, generator=g)
    cond, uncond = torch.randn(2, 1, 77, TEXT_DIM, generator=g)
    flow = predict_flow(s1, image, cond, uncond, num_frames=FRAMES, steps=2, guidance=3.0, seed=1).flow
    frames = render_video(s2, image, cond, uncond, flow, steps=2, guidance=3.0, seed=2).frames
    return flow, frames


@pytest.fixture(scope="module")
def plain():
    return outputs(*stages())


def test_comfy_layers_give_the_plain_outputs(comfy_layers, plain):
    import comfy.ops

    layers = comfy_layers.comfy_layers(torch.float32, torch.float32)
    assert issubclass(layers.operations, comfy.ops.disable_weight_init)  # ComfyUI's choice for fp32 on fp32
    s1, s2 = stages(layers=layers)
    assert isinstance(s2.unet.conv_in, comfy.ops.disable_weight_init.Conv2d)
    flow, frames = outputs(s1, s2)
    assert torch.equal(flow, plain[0]) and torch.equal(frames, plain[1])


def test_partially_loaded_modules_cast_at_run_time_and_give_the_plain_outputs(comfy_layers, plain):
    import comfy.model_patcher

    s1, s2 = stages(layers=comfy_layers.comfy_layers(torch.float32, torch.float32))
    cpu = torch.device("cpu")
    for module in (s1.unet, s1.flow_vae, s1.image_vae, s2.unet, s2.vae):
        patcher = comfy.model_patcher.ModelPatcher(module, load_device=cpu, offload_device=cpu)
        patcher.patch_model(device_to=cpu, lowvram_model_memory=1)  # 1 byte: no layer fits, all are cast
        assert module.model_lowvram
    assert s2.unet.conv_in.comfy_cast_weights and s1.unet.controlnet.controlnet_mid_block.comfy_cast_weights
    flow, frames = outputs(s1, s2)
    assert torch.equal(flow, plain[0]) and torch.equal(frames, plain[1])


def test_fp8_weights_compute_like_fp8_rounded_fp32_weights(comfy_layers):
    import comfy.ops

    layers = comfy_layers.comfy_layers(torch.float8_e4m3fn, torch.float32)
    assert issubclass(layers.operations, comfy.ops.manual_cast)
    s1, s2 = stages(torch.float8_e4m3fn, layers)
    assert s2.unet.conv_in.weight.dtype == torch.float8_e4m3fn
    rounded = stages()
    for fp8, fp32 in zip((s1.unet, s2.unet), (rounded[0].unet, rounded[1].unet)):
        with torch.no_grad():
            for p in fp32.parameters():
                p.copy_(p.to(torch.float8_e4m3fn).float())
    flow, frames = outputs(s1, s2)
    want_flow, want_frames = outputs(*rounded)
    assert torch.equal(flow, want_flow) and torch.equal(frames, want_frames)
