"""Our LDM single-file key mapping agrees with ComfyUI's own, at SD-1.5 key level (no weights).

The single-file tests elsewhere build their checkpoints with the tests' own inverse of our mapping,
which could share a mistake with it. Here ComfyUI's mapping decides: `comfy.utils.unet_to_diffusers`
(diffusers name -> LDM name of every SD-1.5 UNet key) and `comfy.diffusers_convert.convert_vae_state_dict`
(diffusers VAE -> LDM), imported from the installed ComfyUI. Every key of our stage-2 UNet's SD-1.5
part and of our VAE must come back under its own name after ComfyUI's LDM name is read by our loader.
"""

from __future__ import annotations

import sys

import pytest
import torch

from harness.comfy_server import require_comfyui
from motion_i2v_core.loading.ldm import convert_ldm_unet_state_dict, convert_ldm_vae_state_dict
from motion_i2v_core.models.config import UNetConfig, VAEConfig
from motion_i2v_core.models.unet3d import RenderUNet
from motion_i2v_core.models.vae import AutoencoderKL

# SD-1.5's UNet layout as ComfyUI's model detection describes it: 4 levels of 2 ResNets, cross-attention
# on the first 3 levels (one transformer each) and in the middle block; 3 ResNets per level going up.
SD15_UNET_CONFIG = {
    "num_res_blocks": [2, 2, 2, 2],
    "channel_mult": [1, 2, 4, 4],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "transformer_depth_middle": 1,
}


@pytest.fixture(scope="module")
def comfy():
    """ComfyUI's `comfy` package, imported from the installed ComfyUI (appended to sys.path, so that its
    top-level modules such as nodes.py cannot shadow this repository's packages)."""
    comfy_dir = str(require_comfyui())
    if comfy_dir not in sys.path:
        sys.path.append(comfy_dir)
    import comfy.diffusers_convert
    import comfy.utils

    return comfy


def numbered(keys) -> dict[str, torch.Tensor]:
    """A stand-in tensor per key holding its index, to follow each key through a renaming."""
    return {k: torch.tensor([float(i)]) for i, k in enumerate(keys)}


def test_unet_mapping_matches_comfyui(comfy):
    ours = [k for k in RenderUNet(UNetConfig.sd15_render(), device="meta").state_dict()
            if ".motion_modules." not in k]
    comfy_map = comfy.utils.unet_to_diffusers(SD15_UNET_CONFIG)  # diffusers name -> LDM name
    missing = [k for k in ours if k not in comfy_map]
    assert not missing, f"{len(missing)} of our SD-1.5 UNet keys have no ComfyUI mapping, e.g. {missing[:5]}"
    values = numbered(ours)
    ldm = {comfy_map[k]: values[k] for k in ours}
    assert len(ldm) == len(ours)  # ComfyUI maps no two of our keys to one LDM key
    back = convert_ldm_unet_state_dict({"model.diffusion_model." + k: v for k, v in ldm.items()})
    assert set(back) == set(ours)
    wrong = [k for k in ours if back[k] is not values[k]]
    assert not wrong, f"{len(wrong)} keys land elsewhere than ComfyUI puts them, e.g. {wrong[:5]}"


def test_vae_mapping_matches_comfyui(comfy):
    module_sd = AutoencoderKL(VAEConfig.sd15(3), device="meta").state_dict()
    ours = list(module_sd)
    # 2-D stand-ins where the weight is 2-D (the mid-block attention's Linear layers), as ComfyUI
    # reshapes those to the 1x1 convolutions of the LDM file.
    values = {k: torch.full((1,) * (2 if module_sd[k].ndim == 2 else 1), float(i)) for i, k in enumerate(ours)}
    ldm = comfy.diffusers_convert.convert_vae_state_dict(values)
    assert len(ldm) == len(ours)
    assert all(v.ndim == 4 for k, v in ldm.items() if ".mid.attn_1." in k and k.endswith(".weight")
               and not k.split(".")[-2] == "norm")
    back = convert_ldm_vae_state_dict({"first_stage_model." + k: v for k, v in ldm.items()})
    assert set(back) == set(ours)
    wrong = [k for k in ours if back[k].shape != values[k].shape or not torch.equal(back[k], values[k])]
    assert not wrong, f"{len(wrong)} VAE keys land elsewhere than ComfyUI puts them, e.g. {wrong[:5]}"
