"""Stage 2's appearance weights from each source Load Motion-I2V accepts, in a real ComfyUI server.

Every source below holds the same numbers as the tiny official-layout bundle (tiny_server), so each
render must equal the official-layout render: an SD-1.5 single-file checkpoint in models/checkpoints,
a connected ComfyUI MODEL, and the converted .safetensors layout. A LoRA applied by ComfyUI's own
LoraLoaderModelOnly must change the frames (it reaches our UNet). Renders are compared losslessly
through the testing pack's MI2VTestSaveTensor. Graph: LoadImage + drags -> Drags To Flow -> Render Video.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from motion_i2v_core.__main__ import main as convert_cli
from test_loading_ldm import diffusers_unet_to_ldm, diffusers_vae_to_ldm  # the test-only diffusers -> LDM map

TINY_WEIGHTS = "Motion-I2V"  # where tiny_server mounts the tiny official-layout bundle
TEXT_DIM = 32  # cross_attention_dim of the tiny models
CHECKPOINT = "mi2v_tiny_sd15.safetensors"
CHANGED = "mi2v_tiny_sd15_changed.safetensors"
LORA = "mi2v_tiny_lora.safetensors"
HINTS = json.dumps({"version": 1, "width": 100, "height": 100, "brush": [], "tracks": [[[30, 50], [60, 45]]]})


def render_prompt(name: str, weights: str = TINY_WEIGHTS, checkpoint: str | None = None,
                  model: str | None = None, lora_strength: float | None = None, precision: str = "fp32") -> dict:
    """64x64, 4 frames, 2 DDIM steps; the loader's appearance from a checkpoint file or a MODEL node."""
    loader = {"weights": weights, "precision": precision}
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "2": {"class_type": "MI2VTestConditioning", "inputs": {"seed": 1, "tokens": 77, "dim": TEXT_DIM}},
        "3": {"class_type": "MI2VTestConditioning", "inputs": {"seed": 2, "tokens": 77, "dim": TEXT_DIM}},
        "4": {"class_type": "MotionI2VDrawMotionBrush", "inputs": {"image": ["1", 0], "hints_json": HINTS}},
        "5": {"class_type": "MotionI2VDragsToFlow",
              "inputs": {"motion": ["4", 1], "width": 64, "height": 64, "num_frames": 4, "flow_unit": 0}},
        "6": {"class_type": "MotionI2VLoader", "inputs": loader},
        "7": {"class_type": "MotionI2VRenderVideo",
              "inputs": {"model": ["6", 0], "image": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                         "flow": ["5", 0], "steps": 2, "cfg": 3.0, "seed": 5, "sampler": "ddim"}},
        "8": {"class_type": "MI2VTestSaveTensor", "inputs": {"images": ["7", 0], "name": name}},
    }
    if checkpoint is not None:
        loader["appearance_checkpoint"] = checkpoint
    if model is not None:
        prompt["10"] = {"class_type": "MI2VTestTinySD15Model", "inputs": {"ckpt_name": model}}
        loader["appearance_model"] = ["10", 0]
        if lora_strength is not None:
            prompt["11"] = {"class_type": "LoraLoaderModelOnly",
                            "inputs": {"model": ["10", 0], "lora_name": LORA, "strength_model": lora_strength}}
            loader["appearance_model"] = ["11", 0]
    return prompt


def render(server, prompt: dict) -> torch.Tensor:
    result = server.client().run(prompt, timeout=180)
    assert result.ok, result.describe() + "\n" + server.log_tail()
    name = prompt["8"]["inputs"]["name"]
    frames = load_file(str(server.output_dir / "mi2v_tensors" / f"{name}.safetensors"))["images"]
    assert frames.shape == (4, 64, 64, 3)
    return frames


@pytest.fixture(scope="module")
def official_render(tiny_server):
    return render(tiny_server, render_prompt("official"))


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_server, parity_models):
    """The bundle's stage-2 UNet and VAE as one LDM single-file checkpoint in models/checkpoints."""
    sd_dir = parity_models / "stage2" / "StableDiffusion"
    unet = torch.load(sd_dir / "unet" / "diffusion_pytorch_model.bin", map_location="cpu", weights_only=True)
    vae = torch.load(sd_dir / "vae" / "diffusion_pytorch_model.bin", map_location="cpu", weights_only=True)
    ckpt = {**diffusers_unet_to_ldm(unet), **diffusers_vae_to_ldm(vae)}
    path = tiny_server.models_dir / "checkpoints" / CHECKPOINT
    save_file({k: v.contiguous() for k, v in ckpt.items()}, str(path))
    return ckpt


@pytest.mark.parametrize("precision", ["auto", "bf16", "fp8_e4m3fn"])
def test_precision_on_the_cpu(tiny_server, official_render, precision):
    frames = render(tiny_server, render_prompt(f"precision_{precision}", precision=precision))
    if precision == "auto":
        assert torch.equal(frames, official_render)  # auto is fp32 on the CPU
    else:
        # Half precision runs on the CPU (slowly, with a warning), fp8 weights compute in fp32 there;
        # both stay near the fp32 frames (fp8 keeps 3 mantissa bits: measured max 0.18, mean 0.016).
        worst, mean = (0.15, 0.01) if precision == "bf16" else (0.35, 0.04)
        diff = (frames - official_render).abs()
        assert torch.isfinite(frames).all() and diff.max() < worst and diff.mean() < mean, (diff.max(), diff.mean())
        assert not torch.equal(frames, official_render)
    if precision == "bf16":
        assert f"{precision} on the CPU is several times slower" in tiny_server.log_text()


@pytest.fixture(scope="module")
def changed_checkpoint_render(tiny_server, tiny_checkpoint):
    """A checkpoint with other UNet and VAE numbers (so a render proves it was used), rendered with the official files."""
    changed = dict(tiny_checkpoint)
    changed["model.diffusion_model.out.2.weight"] = tiny_checkpoint["model.diffusion_model.out.2.weight"] * 2
    changed["first_stage_model.decoder.conv_out.bias"] = tiny_checkpoint["first_stage_model.decoder.conv_out.bias"] + 0.05
    save_file({k: v.contiguous() for k, v in changed.items()}, str(tiny_server.models_dir / "checkpoints" / CHANGED))
    return render(tiny_server, render_prompt("from_changed_checkpoint", checkpoint=CHANGED))


def test_checkpoint_file_renders_like_the_official_files(tiny_server, tiny_checkpoint, official_render,
                                                         changed_checkpoint_render):
    frames = render(tiny_server, render_prompt("from_checkpoint", checkpoint=CHECKPOINT))
    assert torch.equal(frames, official_render)
    assert (changed_checkpoint_render - official_render).abs().max() > 1e-2  # the file's weights are used


def test_connected_model_renders_like_the_official_files(tiny_server, tiny_checkpoint, official_render):
    frames = render(tiny_server, render_prompt("from_model", model=CHECKPOINT))
    assert torch.equal(frames, official_render)


@pytest.fixture(scope="module")
def tiny_lora(tiny_server, tiny_checkpoint) -> str:
    """A kohya-format LoRA on every attention projection, in models/loras; its file name."""
    g = torch.Generator().manual_seed(0)
    lora = {}
    for key, weight in tiny_checkpoint.items():
        if ".transformer_blocks.0.attn" in key and key.endswith(".weight") and weight.ndim == 2:
            name = "lora_unet_" + key[len("model.diffusion_model."):-len(".weight")].replace(".", "_")
            lora[f"{name}.lora_up.weight"] = torch.randn(weight.shape[0], 4, generator=g) * 0.3
            lora[f"{name}.lora_down.weight"] = torch.randn(4, weight.shape[1], generator=g) * 0.3
            lora[f"{name}.alpha"] = torch.tensor(4.0)
    assert len(lora) == 16 * 8 * 3  # 16 transformers x (attn1, attn2) x (q, k, v, out) x (up, down, alpha)
    (tiny_server.models_dir / "loras").mkdir(exist_ok=True)
    save_file(lora, str(tiny_server.models_dir / "loras" / LORA))
    return LORA


def test_lora_on_the_connected_model_changes_the_frames(tiny_server, tiny_lora, official_render):
    # Loaded by ComfyUI's LoraLoaderModelOnly; test_model_management checks the patched weights.
    patched = render(tiny_server, render_prompt("from_model_lora", model=CHECKPOINT, lora_strength=1.0))
    assert (patched - official_render).abs().max() > 1e-3
    assert "lora key not loaded" not in tiny_server.log_text()  # every LoRA key found its UNet weight


def convert(server, parity_models, dtype: str) -> str:
    """Run the converter's command line on the tiny bundle into models/motion_i2v/converted_<dtype>; the set's name."""
    name = f"converted_{dtype}"
    out = server.models_dir / "motion_i2v" / name
    if not (out / "vae.safetensors").is_file():
        # `python -m motion_i2v_core convert ...`, called in-process to skip a second torch start-up
        assert convert_cli(["convert", str(parity_models), str(out), "--dtype", dtype]) == 0
    assert (out / "render_unet.safetensors").is_file() and (out / "flow_unet.safetensors").is_file()
    return name




# fp32 files hold the official numbers exactly; this also guards the loader's copy of tensors that
# safetensors returns at unaligned addresses (CPU matmuls round differently there).
@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
def test_converted_files_render_like_the_official_files(tiny_server, parity_models, official_render, dtype):
    name = convert(tiny_server, parity_models, dtype)
    frames = render(tiny_server, render_prompt(name, weights=name))
    assert torch.allclose(frames, official_render, atol=2e-3, rtol=0)  # within fp16 rounding of the weights
    # The tiny bundle's weights are fp16 numbers already, so fp16 files lose nothing: equal frames.
    assert torch.equal(frames, official_render)


def test_converted_files_take_a_checkpoint_appearance(tiny_server, parity_models, changed_checkpoint_render):
    name = convert(tiny_server, parity_models, "fp16")
    frames = render(tiny_server, render_prompt(f"{name}_checkpoint", weights=name, checkpoint=CHANGED))
    assert torch.equal(frames, changed_checkpoint_render)


def test_unusable_appearance_checkpoints_are_readable_node_errors(tiny_server, tiny_checkpoint):
    checkpoints = tiny_server.models_dir / "checkpoints"
    save_file({"lora_unet_out_2.lora_up.weight": torch.zeros(4, 2)}, str(checkpoints / "a_lora.safetensors"))
    wider = dict(tiny_checkpoint, **{"model.diffusion_model.out.2.weight": torch.zeros(4, 64, 3, 3)})
    save_file({k: v.contiguous() for k, v in wider.items()}, str(checkpoints / "other_size.safetensors"))
    for filename, problem in (("a_lora.safetensors", "single-file SD-1.5 checkpoint"),
                              ("other_size.safetensors", "cannot be built with the appearance_checkpoint")):
        prompt = render_prompt(f"error_{filename}", checkpoint=filename)
        result = tiny_server.client().run(prompt, timeout=120)
        assert result.status == "error" and result.error["node_id"] == "6", result.describe()
        message = result.error["exception_message"]
        assert filename in message and problem in message and "(none)" in message, message
        assert "Traceback" not in message and len(message) < 2500, message
