"""How Load Motion-I2V and the stages use ComfyUI's model management, in a real ComfyUI server.

The testing pack's MI2VTestInspect node reports, after the node it is linked to, every
`load_models_gpu` call since the last report (which parts, memory_required, force_full_load), the
loader's build counters and which weight sets are still in memory, and dumps requested weights of
the model handle. Graph as in test_appearance_models: LoadImage + drags -> Drags To Flow -> Render Video.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from motion_i2v_core import memory
from motion_i2v_core.loading.official import load_stage1, load_stage2
from test_appearance_models import (CHECKPOINT, TINY_WEIGHTS, official_render, render,  # noqa: F401 (fixtures)
                                    render_prompt, tiny_checkpoint, tiny_lora)

# LDM names (ComfyUI's MODEL) of some LoRA-patched weights and their names in our stage-2 UNet.
LORA_KEYS = {
    "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight":
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
    "middle_block.1.transformer_blocks.0.attn2.to_k.weight":
        "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight",
    "output_blocks.11.1.transformer_blocks.0.attn1.to_out.0.weight":
        "up_blocks.3.attentions.2.transformer_blocks.0.attn1.to_out.0.weight",
}


def inspected(prompt: dict, name: str, after: list, weights: str = "") -> dict:
    """`prompt` with an MI2VTestInspect node reporting after `after` (a link)."""
    prompt = dict(prompt)
    prompt["90"] = {"class_type": "MI2VTestInspect",
                    "inputs": {"model": ["6", 0], "after": after, "name": name, "weights": weights}}
    return prompt


def report(server, name: str) -> dict:
    return json.loads((server.output_dir / "mi2v_tensors" / f"{name}.json").read_text())


def run_inspected(server, prompt: dict, name: str, weights: str = "") -> tuple[torch.Tensor, dict]:
    prompt = inspected(render_prompt(name, **prompt), name, ["7", 0], weights)
    frames = render(server, prompt)
    return frames, report(server, name)


def drain(server) -> None:
    """Report (and so forget) the loads of earlier prompts: the loader alone, inspected."""
    prompt = {"6": {"class_type": "MotionI2VLoader",
                    "inputs": {"weights": TINY_WEIGHTS, "precision": "fp32"}}}
    result = server.client().run(inspected(prompt, "drain", ["6", 0]), timeout=180)
    assert result.ok, result.describe() + "\n" + server.log_tail()


@pytest.fixture(scope="module")
def tiny_configs(parity_models):
    stage1 = load_stage1(parity_models / "stage1" / "StableDiffusion-FlowGen")
    stage2 = load_stage2(parity_models / "stage2")
    return stage1, stage2


def copy_set(server, parity_models, name: str) -> str:
    target = server.models_dir / "motion_i2v" / name
    if not target.exists():
        shutil.copytree(parity_models, target)
    return name


def test_second_run_with_only_the_seed_changed_rebuilds_nothing(tiny_server, tiny_configs):
    first, before = run_inspected(tiny_server, {}, "mm_seed_a")
    prompt = render_prompt("mm_seed_b")
    prompt["7"]["inputs"]["seed"] = 6
    second = render(tiny_server, inspected(prompt, "mm_seed_b", ["7", 0]))
    after = report(tiny_server, "mm_seed_b")
    assert not torch.equal(first, second)  # the seed is used
    assert after["stats"] == before["stats"]  # nothing built, no appearance read
    # Render Video asked for its two parts only, with the memory its run needs and no forced full load.
    _, stage2 = tiny_configs
    need = memory.stage2_estimate(stage2.unet.config, stage2.vae.config, num_frames=4, height=64, width=64,
                                  guidance=3.0, unet_dtype=torch.float32, vae_dtype=torch.float32).peak
    assert after["loads"] == [{"parts": ["render_unet", "vae"], "memory_required": need, "force_full_load": False}]
    assert need > 0


def test_one_image_vae_for_both_stages(tiny_server):
    _, info = run_inspected(tiny_server, {}, "mm_shared_vae")
    assert info["shared_vae"]
    assert info["dtypes"]["flow_vae"] == "torch.float32"


def test_encode_flow_loads_only_the_flow_vae(tiny_server, tiny_configs):
    drain(tiny_server)
    prompt = render_prompt("unused")
    prompt = {k: prompt[k] for k in ("1", "4", "6")}
    prompt["12"] = {"class_type": "MotionI2VEncodeFlow",
                    "inputs": {"model": ["6", 0], "motion": ["4", 1], "width": 64, "height": 64, "num_frames": 4,
                               "flow_unit": 0, "seed": 3}}
    result = tiny_server.client().run(inspected(prompt, "mm_encode", ["12", 0]), timeout=180)
    assert result.ok, result.describe() + "\n" + tiny_server.log_tail()
    stage1, _ = tiny_configs
    need = memory.control_encode_estimate(stage1.flow_vae.config, 4, 64, 64, torch.float32)
    assert report(tiny_server, "mm_encode")["loads"] == [
        {"parts": ["flow_vae"], "memory_required": need, "force_full_load": False}]


def test_switching_weight_sets_frees_the_old_one(tiny_server, parity_models):
    other = copy_set(tiny_server, parity_models, "mm_other_set")
    _, first = run_inspected(tiny_server, {}, "mm_set_a")
    assert TINY_WEIGHTS in first["alive"]
    _, second = run_inspected(tiny_server, {"weights": other}, "mm_set_b")
    assert second["alive"] == [other]
    assert second["stats"]["stage1_builds"] == first["stats"]["stage1_builds"] + 1


def lora_expected(checkpoint: dict, lora: dict, strength: float) -> dict:
    """W + strength * up @ down * alpha / rank, from the files, for LORA_KEYS (our names)."""
    out = {}
    for ldm_key, our_key in LORA_KEYS.items():
        name = "lora_unet_" + ldm_key[:-len(".weight")].replace(".", "_")
        up, down = lora[f"{name}.lora_up.weight"], lora[f"{name}.lora_down.weight"]
        alpha, rank = float(lora[f"{name}.alpha"]), down.shape[0]
        out[our_key] = checkpoint["model.diffusion_model." + ldm_key].float() + strength * (up @ down) * alpha / rank
    return out


def test_connected_model_follows_the_lora_strength_and_is_read_only_when_it_changed(
        tiny_server, parity_models, tiny_checkpoint, tiny_lora, official_render):
    """Stage 2 holds exactly the LoRA-patched weights at each strength; strength 0 is the unpatched model.
    Re-executing the loader with the same MODEL (here: a stage-1 file touched) reads nothing again,
    and the MODEL itself never goes through load_models_gpu."""
    name = copy_set(tiny_server, parity_models, "mm_lora_set")
    weights = ",".join(f"stage2.unet:{k}" for k in LORA_KEYS.values())
    lora = load_file(str(tiny_server.models_dir / "loras" / tiny_lora))
    renders, reads = {}, []
    for strength in (1.0, 0.5, 0.0):
        tag = f"mm_lora_{strength}"
        renders[strength], info = run_inspected(
            tiny_server, {"weights": name, "model": CHECKPOINT, "lora_strength": strength}, tag, weights)
        dumped = load_file(str(tiny_server.output_dir / "mi2v_tensors" / f"{tag}.weights.safetensors"))
        for key, want in lora_expected(tiny_checkpoint, lora, strength).items():
            got = dumped[f"stage2.unet:{key}"]
            assert torch.allclose(got, want, atol=1e-6, rtol=0), (strength, key, (got - want).abs().max())
        reads.append(info["stats"]["appearance_reads"])
        assert not any("BaseModel" in load["parts"] for load in info["loads"])
    assert reads[1] == reads[0] + 1 and reads[2] == reads[1] + 1  # each new strength is read
    assert torch.equal(renders[0.0], official_render)
    assert (renders[1.0] - renders[0.5]).abs().max() > 1e-4

    before = info["stats"]
    flow_vae = tiny_server.models_dir / "motion_i2v" / name / "stage1" / "StableDiffusion-FlowGen" / "vae_flow"
    path = next(flow_vae.glob("diffusion_pytorch_model.*"))
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**10))
    again, info = run_inspected(tiny_server, {"weights": name, "model": CHECKPOINT, "lora_strength": 0.0},
                                "mm_lora_touched")
    assert info["stats"]["stage1_builds"] == before["stage1_builds"] + 1  # the loader did run again
    assert info["stats"]["stage2_builds"] == before["stage2_builds"]
    assert info["stats"]["appearance_reads"] == before["appearance_reads"]
    assert not any("BaseModel" in load["parts"] for load in info["loads"])
    assert torch.equal(again, renders[0.0])
