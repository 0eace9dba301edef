"""LDM single-file checkpoints (model.diffusion_model.*, first_stage_model.*) -> our names.

The LDM files are made at test time by inverting the mapping (written independently below) on
diffusers-named state dicts; a hand-written list of key pairs pins the mapping in both directions.
"""

import re

import pytest
import torch
from safetensors.torch import save_file

from motion_i2v_core.models.config import VAEConfig
from motion_i2v_core.loading import (CheckpointError, convert_ldm_unet_state_dict, convert_ldm_vae_state_dict,
                                     load_ldm_checkpoint)
from motion_i2v_core.models.vae import AutoencoderKL
from harness.reference import KEYS, PARITY

S2_UNET_BIN = PARITY / "models/stage2/StableDiffusion/unet/diffusion_pytorch_model.bin"

# ------------------------------------------------------------------------------------------------
# inverse mapping (diffusers -> LDM), written from the LDM layout facts, not from the converter

_RESNET_TO_LDM = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                  "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def _ldm_resnet(rest):
    name, tail = rest.split(".", 1)
    return f"{_RESNET_TO_LDM[name]}.{tail}"


def diffusers_unet_to_ldm(sd, layers=2, prefix="model.diffusion_model."):
    up_has_attn = {int(m.group(1)) for k in sd if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    out = {}
    for key, v in sd.items():
        m = re.match(r"(down|up)_blocks\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.*)", key)
        if key.startswith("conv_in."):
            new = "input_blocks.0.0." + key[len("conv_in."):]
        elif key.startswith("time_embedding.linear_1."):
            new = "time_embed.0." + key.split(".", 2)[2]
        elif key.startswith("time_embedding.linear_2."):
            new = "time_embed.2." + key.split(".", 2)[2]
        elif key.startswith("conv_norm_out."):
            new = "out.0." + key.split(".", 1)[1]
        elif key.startswith("conv_out."):
            new = "out.2." + key.split(".", 1)[1]
        elif key.startswith("mid_block."):
            _, kind, idx, rest = key.split(".", 3)
            if kind == "attentions":
                new = f"middle_block.1.{rest}"
            else:
                new = f"middle_block.{0 if idx == '0' else 2}.{_ldm_resnet(rest)}"
        elif m:
            side, level, kind, j, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
            if side == "down":
                if kind == "downsamplers":
                    new = f"input_blocks.{(level + 1) * (layers + 1)}.0.op.{rest.split('.', 1)[1]}"
                else:
                    idx = level * (layers + 1) + j + 1
                    new = (f"input_blocks.{idx}.0.{_ldm_resnet(rest)}" if kind == "resnets"
                           else f"input_blocks.{idx}.1.{rest}")
            else:
                if kind == "upsamplers":
                    sub = 2 if level in up_has_attn else 1
                    new = f"output_blocks.{level * (layers + 1) + layers}.{sub}.{rest}"
                else:
                    idx = level * (layers + 1) + j
                    new = (f"output_blocks.{idx}.0.{_ldm_resnet(rest)}" if kind == "resnets"
                           else f"output_blocks.{idx}.1.{rest}")
        else:
            raise AssertionError(f"test inverse mapping does not know {key}")
        out[prefix + new] = v
    return out


def diffusers_vae_to_ldm(sd, prefix="first_stage_model."):
    n_up = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k)))
    attn = {"group_norm": "norm", "query": "q", "key": "k", "value": "v", "proj_attn": "proj_out"}
    out = {}
    for key, v in sd.items():
        new = key
        new = new.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        m = re.match(r"decoder\.up_blocks\.(\d+)\.(resnets|upsamplers)\.(.*)", new)
        if m:
            k = n_up - 1 - int(m.group(1))
            new = (f"decoder.up.{k}.block.{m.group(3)}" if m.group(2) == "resnets"
                   else f"decoder.up.{k}.upsample.{m.group(3).split('.', 1)[1]}")
        new = re.sub(r"mid_block\.resnets\.0\.", "mid.block_1.", new)
        new = re.sub(r"mid_block\.resnets\.1\.", "mid.block_2.", new)
        m = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(\w+)\.(weight|bias)", new)
        if m:
            new = f"{m.group(1)}.mid.attn_1.{attn[m.group(2)]}.{m.group(3)}"
            if m.group(3) == "weight" and m.group(2) != "group_norm":
                v = v[:, :, None, None]  # LDM stores these as 1x1 convs
        out[prefix + new] = v
    return out


# hand-written pairs (SD-1.5 layout: 2 layers per block, 4 levels)
UNET_PAIRS = [
    ("input_blocks.0.0.weight", "conv_in.weight"),
    ("time_embed.2.bias", "time_embedding.linear_2.bias"),
    ("input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"),
    ("input_blocks.2.0.in_layers.2.weight", "down_blocks.0.resnets.1.conv1.weight"),
    ("input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight"),
    ("input_blocks.4.0.skip_connection.weight", "down_blocks.1.resnets.0.conv_shortcut.weight"),
    ("input_blocks.9.0.op.bias", "down_blocks.2.downsamplers.0.conv.bias"),
    ("input_blocks.11.0.emb_layers.1.weight", "down_blocks.3.resnets.1.time_emb_proj.weight"),
    ("middle_block.0.out_layers.0.weight", "mid_block.resnets.0.norm2.weight"),
    ("middle_block.1.proj_in.weight", "mid_block.attentions.0.proj_in.weight"),
    ("middle_block.2.out_layers.3.bias", "mid_block.resnets.1.conv2.bias"),
    ("output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"),
    ("output_blocks.3.0.skip_connection.weight", "up_blocks.1.resnets.0.conv_shortcut.weight"),
    ("output_blocks.4.1.transformer_blocks.0.ff.net.2.weight", "up_blocks.1.attentions.1.transformer_blocks.0.ff.net.2.weight"),
    ("output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias"),
    ("output_blocks.8.2.conv.weight", "up_blocks.2.upsamplers.0.conv.weight"),
    ("output_blocks.9.1.norm.weight", "up_blocks.3.attentions.0.norm.weight"),
    ("output_blocks.11.0.in_layers.0.weight", "up_blocks.3.resnets.2.norm1.weight"),
    ("out.0.bias", "conv_norm_out.bias"),
    ("out.2.weight", "conv_out.weight"),
]
VAE_PAIRS = [
    ("encoder.down.0.block.1.conv2.weight", "encoder.down_blocks.0.resnets.1.conv2.weight"),
    ("encoder.down.1.block.0.nin_shortcut.weight", "encoder.down_blocks.1.resnets.0.conv_shortcut.weight"),
    ("encoder.down.2.downsample.conv.weight", "encoder.down_blocks.2.downsamplers.0.conv.weight"),
    ("encoder.mid.attn_1.q.weight", "encoder.mid_block.attentions.0.query.weight"),
    ("encoder.mid.attn_1.norm.bias", "encoder.mid_block.attentions.0.group_norm.bias"),
    ("encoder.norm_out.weight", "encoder.conv_norm_out.weight"),
    ("decoder.up.3.block.0.conv1.weight", "decoder.up_blocks.0.resnets.0.conv1.weight"),
    ("decoder.up.0.block.2.norm1.bias", "decoder.up_blocks.3.resnets.2.norm1.bias"),
    ("decoder.up.1.upsample.conv.weight", "decoder.up_blocks.2.upsamplers.0.conv.weight"),
    ("decoder.mid.attn_1.proj_out.bias", "decoder.mid_block.attentions.0.proj_attn.bias"),
    ("decoder.mid.block_2.conv1.weight", "decoder.mid_block.resnets.1.conv1.weight"),
    ("quant_conv.weight", "quant_conv.weight"),
    ("post_quant_conv.bias", "post_quant_conv.bias"),
]


def _sd15_unet_meta():
    """The 686 SD-1.5 2-D UNet keys with their shapes, as meta tensors."""
    out = {}
    for line in (KEYS / "stage2_unet_keys_all.txt").read_text().splitlines():
        if line.startswith("#") or "\t" not in line:
            continue
        key, shape = line.split("\t")
        if ".motion_modules." not in key:
            out[key] = torch.empty(tuple(int(x) for x in re.findall(r"\d+", shape)), device="meta")
    return out


@pytest.fixture(scope="module")
def sd15_unet():
    sd = _sd15_unet_meta()
    assert len(sd) == 686
    return sd


def test_hand_written_unet_pairs(sd15_unet):
    ldm = diffusers_unet_to_ldm(sd15_unet)
    converted = convert_ldm_unet_state_dict(ldm)
    for ldm_key, ours in UNET_PAIRS:
        full_key = "model.diffusion_model." + ldm_key
        assert full_key in ldm, ldm_key  # the test's inverse agrees with the hand-written facts
        assert converted[ours] is ldm[full_key], ours  # and so does the converter


def test_hand_written_vae_pairs():
    vae_sd = AutoencoderKL(VAEConfig.sd15(3), device="meta").state_dict()
    ldm = diffusers_vae_to_ldm(vae_sd)
    conv = convert_ldm_vae_state_dict(ldm)
    for ldm_key, ours in VAE_PAIRS:
        assert "first_stage_model." + ldm_key in ldm, ldm_key
        assert ours in conv
    assert ldm["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    assert conv["encoder.mid_block.attentions.0.query.weight"].shape == (512, 512)


def test_sd15_unet_round_trip_all_686_keys(sd15_unet):
    ldm = diffusers_unet_to_ldm(sd15_unet)
    assert len(ldm) == 686 and len(set(ldm)) == 686
    back = convert_ldm_unet_state_dict(ldm)
    assert set(back) == set(sd15_unet)
    assert all(back[k].shape == sd15_unet[k].shape for k in sd15_unet)
    # ComfyUI model state dicts: "diffusion_model." prefix, or none at all
    for prefix in ("diffusion_model.", ""):
        assert set(convert_ldm_unet_state_dict(diffusers_unet_to_ldm(sd15_unet, prefix=prefix))) == set(sd15_unet)


def test_sd15_vae_round_trip_all_keys():
    vae_sd = AutoencoderKL(VAEConfig.sd15(3), device="meta").state_dict()
    for prefix in ("first_stage_model.", ""):
        back = convert_ldm_vae_state_dict(diffusers_vae_to_ldm(vae_sd, prefix=prefix))
        assert {k: tuple(v.shape) for k, v in back.items()} == {k: tuple(v.shape) for k, v in vae_sd.items()}


def test_single_file_checkpoint_tiny_weights(tmp_path):
    """A tiny SD 'single-file' checkpoint: UNet + VAE in LDM naming plus keys that must be ignored."""
    unet_sd = {k: v.float() for k, v in torch.load(S2_UNET_BIN, map_location="cpu", weights_only=True).items()}
    torch.manual_seed(0)
    vae = AutoencoderKL(VAEConfig(block_out_channels=(8, 16, 16), layers_per_block=1, norm_num_groups=4))
    vae_sd = vae.state_dict()
    ckpt = {**diffusers_unet_to_ldm(unet_sd), **diffusers_vae_to_ldm(vae_sd),
            "cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(77)[None],
            "model_ema.decay": torch.tensor(0.999), "alphas_cumprod": torch.rand(1000),
            "first_stage_model.loss.logvar": torch.zeros(())}
    path = tmp_path / "tiny_sd15.safetensors"
    save_file({k: v.contiguous() for k, v in ckpt.items()}, str(path))
    unet_back, vae_back = load_ldm_checkpoint(path)
    assert set(unet_back) == set(unet_sd) and all(torch.equal(unet_back[k], unet_sd[k]) for k in unet_sd)
    assert set(vae_back) == set(vae_sd) and all(torch.equal(vae_back[k], vae_sd[k]) for k in vae_sd)
    AutoencoderKL(vae.config).load_state_dict(vae_back, strict=True)
    # the same file as a wrapped torch pickle ({"state_dict": ...} like original .ckpt files)
    pt = tmp_path / "tiny_sd15.ckpt"
    torch.save({"state_dict": ckpt, "global_step": 7}, pt)
    unet_pt, vae_pt = load_ldm_checkpoint(pt)
    assert all(torch.equal(unet_pt[k], unet_sd[k]) for k in unet_sd)


def test_ldm_errors_are_clear(tmp_path):
    path = tmp_path / "vae_only.safetensors"
    save_file({"encoder.conv_in.weight": torch.zeros(8, 3, 3, 3)}, str(path))
    with pytest.raises(CheckpointError, match="single-file SD-1.5 checkpoint") as e:
        load_ldm_checkpoint(path)
    assert str(path) in str(e.value) and len(str(e.value)) < 1500
    bad = diffusers_unet_to_ldm(_sd15_unet_meta())
    bad["model.diffusion_model.input_blocks.1.0.weird.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unknown UNet key 'model.diffusion_model.input_blocks.1.0.weird"):
        convert_ldm_unet_state_dict(bad, file="x.safetensors")
    truncated = {k: v for k, v in diffusers_unet_to_ldm(_sd15_unet_meta()).items() if "output_blocks.11." not in k}
    with pytest.raises(CheckpointError, match="x.safetensors: LDM UNet layout not understood"):
        convert_ldm_unet_state_dict(truncated, file="x.safetensors")
