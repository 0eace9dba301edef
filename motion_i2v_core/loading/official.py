"""Build the Motion-I2V models from the official Hugging Face folder layout (wangfuyun/Motion-I2V).

Layout below `models/motion_i2v/` (every weight file may be `.bin` or `.safetensors`):
  stage1/StableDiffusion-FlowGen/unet/{config.json, diffusion_pytorch_model.bin}
  stage1/StableDiffusion-FlowGen/controlnet/controlnet.bin        (keys prefixed `controlnet.`)
  stage1/StableDiffusion-FlowGen/vae/config.json                  (only the config is used)
  stage1/StableDiffusion-FlowGen/vae_flow/diffusion_pytorch_model.bin
  stage2/StableDiffusion/{unet,vae}/{config.json, diffusion_pytorch_model.bin}
  stage2/Motion_Module/motion_block.bin

Every state dict is strictly validated (pos_encoder.pe buffers may be absent: they are recomputed).
Modules are built on the meta device and the checked file tensors are assigned, so an SD-1.5-size
model is never randomly initialised first.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from motion_i2v_core.models.config import UNetConfig, VAEConfig
from motion_i2v_core.models.operations import torch_ops
from motion_i2v_core.models.vae import AutoencoderKL, rename_attention_keys
from motion_i2v_core.loading.config_check import check_config_matches
from motion_i2v_core.loading.files import find_weight_file, read_state_dict
from motion_i2v_core.loading.validate import (CheckpointError, check_shapes, check_state_dict, expected_shapes,
                       identify_state_dict, is_pe_key)

log = logging.getLogger(__name__)

STAGE1_SUBDIR = "stage1/StableDiffusion-FlowGen"
STAGE2_SUBDIR = "stage2"
IMAGE_VAE_SUBDIR = "stage2/StableDiffusion/vae"
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model",)

# configs/configs_flowgen/inference/inference.yaml `unet_additional_kwargs` (used by both stages)
OFFICIAL_UNET_ADDITIONAL_KWARGS: dict[str, Any] = {
    "use_inflated_groupnorm": True,
    "unet_use_cross_frame_attention": False,
    "unet_use_temporal_attention": False,
    "use_motion_module": True,
    "motion_module_resolutions": [1, 2, 4, 8],
    "motion_module_mid_block": True,
    "motion_module_decoder_only": False,
    "motion_module_type": "Vanilla",
    "motion_module_kwargs": {
        "num_attention_heads": 8,
        "num_transformer_block": 1,
        "attention_block_types": ["Temporal_Self", "Temporal_Self"],
        "temporal_position_encoding": True,
        "temporal_position_encoding_max_len": 32,
        "temporal_attention_dim_div": 1,
    },
}


@dataclass(frozen=True)
class LayerOptions:
    """How modules are built beyond their dtype: the layer namespace (motion_i2v_core.models.operations;
    ComfyUI passes its comfy.ops) and the dtype the UNets compute in (needed for fp8 weights)."""

    operations: Any = torch_ops
    compute_dtype: torch.dtype | None = None

    def unet(self) -> dict:
        return {"operations": self.operations, "compute_dtype": self.compute_dtype}

    def vae(self) -> dict:
        return {"operations": self.operations}


PLAIN_LAYERS = LayerOptions()


@dataclass
class Stage1Models:
    unet: nn.Module        # FlowUNet with child `controlnet`
    flow_vae: AutoencoderKL
    image_vae: AutoencoderKL


@dataclass
class Stage2Models:
    unet: nn.Module        # RenderUNet (SD-1.5 2-D weights + motion modules)
    vae: AutoencoderKL


def official_paths(models_root: str | os.PathLike) -> dict[str, Path]:
    """The official folders below a `models/motion_i2v` root: stage1_dir, image_vae_dir, stage2_dir."""
    root = Path(models_root)
    return {"stage1_dir": root / STAGE1_SUBDIR, "image_vae_dir": root / IMAGE_VAE_SUBDIR,
            "stage2_dir": root / STAGE2_SUBDIR}


# ------------------------------------------------------------------------------------------------
# small helpers


def _require_file(folder: Path, stems: tuple[str, ...], rel: str, what: str) -> Path:
    path = find_weight_file(folder, stems)
    if path is None:
        names = " or ".join(f"{s}.safetensors / {s}.bin" for s in stems)
        raise CheckpointError(
            f"Missing {what}: expected models/motion_i2v/{rel}/{names} (looked in {folder}). "
            f"Download it from the Hugging Face repo wangfuyun/Motion-I2V (same path below its models/ folder).")
    return path


def _read_config(folder: Path, rel: str, what: str) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"Missing {what} config: expected models/motion_i2v/{rel}/config.json "
                              f"(looked in {folder}).")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}); re-download it.") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: expected a JSON object (a diffusers config).")
    return cfg


def _config_or_error(build: Callable[[], Any], path: Path | str, what: str):
    try:
        return build()
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: this {what} configuration is not supported: {e}. Fix that value, or "
                              f"restore the file from huggingface.co/wangfuyun/Motion-I2V (the same path below "
                              f"its models/ folder).") from None


def motion_overrides(unet_additional_kwargs: Mapping | None) -> dict:
    """UNetConfig overrides for the motion modules (official inference.yaml values by default)."""
    kwargs = dict(OFFICIAL_UNET_ADDITIONAL_KWARGS)
    if unet_additional_kwargs:
        kwargs.update({k: v for k, v in unet_additional_kwargs.items() if k != "motion_module_kwargs"})
        kwargs["motion_module_kwargs"] = {**OFFICIAL_UNET_ADDITIONAL_KWARGS["motion_module_kwargs"],
                                          **dict(unet_additional_kwargs.get("motion_module_kwargs") or {})}
    return UNetConfig.motion_overrides(kwargs)


def _fill_pe(sd: dict, expected: Mapping[str, tuple]) -> dict:
    """Add recomputed temporal PE tables for pe buffers the file does not carry."""
    from motion_i2v_core.models.embeddings import temporal_position_table

    for key, shape in expected.items():
        if is_pe_key(key) and key not in sd:
            _, max_len, channels = shape
            sd[key] = temporal_position_table(channels, max_len)
    return sd


def build_and_load(build: Callable[..., nn.Module], sd: Mapping[str, torch.Tensor], *, file: str,
                   expected_what: str, dtype: torch.dtype, device, hint: str | None = None) -> nn.Module:
    """build(dtype=, device=) a module, strictly check `sd` against it and load it.

    Built on the meta device (no random init) and the converted file tensors assigned; modules
    with non-persistent buffers are built for real instead, since meta buffers could not be filled.
    Returns the module in eval mode with requires_grad False.
    """
    module = build(dtype=dtype, device="meta")
    expected = expected_shapes(module)
    check_state_dict(sd, expected, file=file, expected_what=expected_what, hint=hint)
    sd = _fill_pe(dict(sd), expected)
    own = module.state_dict()
    if _has_non_persistent_buffers(module):
        module = build(dtype=dtype, device=device)
        module.load_state_dict(OrderedDict((k, sd[k]) for k in own), strict=True)
    else:
        # pe tables stay float32 (exact file values; the attention casts them to its dtype)
        full = OrderedDict((k, sd[k].to(device=device, dtype=torch.float32 if is_pe_key(k) else own[k].dtype))
                           for k in own)
        module.load_state_dict(full, strict=True, assign=True)
    module.eval()
    module.requires_grad_(False)
    return module


def _count_persistent_buffers(module: nn.Module) -> int:
    state = set(module.state_dict())
    return sum(1 for name, _ in module.named_buffers() if name in state)


def _has_non_persistent_buffers(module: nn.Module) -> bool:
    return len(list(module.named_buffers())) != _count_persistent_buffers(module)


def load_vae_state_dict(sd: Mapping[str, torch.Tensor], cfg: VAEConfig, *, file: str, what: str,
                        dtype=torch.float32, device="cpu", layers: LayerOptions = PLAIN_LAYERS) -> AutoencoderKL:
    """Strict-load a VAE state dict (old or new diffusers attention names, or LDM names)."""
    from motion_i2v_core.loading.ldm import convert_ldm_vae_state_dict, is_ldm_state_dict

    if is_ldm_state_dict(sd) and any("encoder.down." in k for k in sd):
        sd = convert_ldm_vae_state_dict(sd, file=file)
    sd, style = rename_attention_keys(sd)
    if style == "new":
        log.info("%s: newer diffusers attention names (to_q/to_k/to_v/to_out.0) renamed on load", file)
    check_shapes(sd, {"encoder.conv_in.weight": (cfg.block_out_channels[0], cfg.in_channels, 3, 3),
                      "decoder.conv_out.weight": (cfg.out_channels, cfg.block_out_channels[0], 3, 3)},
                 file=file, expected_what=what)
    return build_and_load(lambda dtype, device: AutoencoderKL(cfg, dtype=dtype, device=device, **layers.vae()), sd,
                          file=file, expected_what=what, dtype=dtype, device=device,
                          hint="Check that this is the right VAE file and that vae/config.json matches it.")


def _load_vae_folder(folder: Path, rel: str, weights_folder: Path, weights_rel: str, what: str,
                     channels: int, dtype, device, layers: LayerOptions = PLAIN_LAYERS) -> AutoencoderKL:
    raw = _read_config(folder, rel, what)
    cfg = _config_or_error(lambda: VAEConfig.from_diffusers(raw), folder / "config.json", what)
    if cfg.in_channels != channels or cfg.out_channels != channels:
        raise CheckpointError(
            f"{folder / 'config.json'}: in/out channels {cfg.in_channels}/{cfg.out_channels}, the {what} "
            f"needs {channels}/{channels}. Is this the right config.json?")
    path = _require_file(weights_folder, DIFFUSERS_WEIGHTS, weights_rel, f"{what} weights")
    sd = read_state_dict(path)
    if identify_state_dict(sd)[0] == "vae":  # another kind of file is the file's fault, said below
        check_config_matches(cfg, sd, config_file=str(folder / "config.json"), weights_file=str(path))
    return load_vae_state_dict(sd, cfg, file=str(path), what=what, dtype=dtype, device=device, layers=layers)


# ------------------------------------------------------------------------------------------------
# stage 1


def overlay_controlnet(unet_sd: Mapping[str, torch.Tensor], ctrl_sd: Mapping[str, torch.Tensor]) -> dict:
    """UNet state dict + controlnet.bin, later file wins (as two successive load_state_dict calls).

    controlnet.bin keys normally carry the `controlnet.` prefix. A file whose ControlNet-only keys
    sit at the root (`controlnet_cond_embedding.*`, `controlnet_down_blocks.*`) is a bare ControlNet
    state dict: every key gets the prefix (stage1_spec section 9).
    """
    ctrl = dict(ctrl_sd)
    bare = any(k.startswith(("controlnet_cond_embedding.", "controlnet_down_blocks.")) for k in ctrl)
    if bare:
        ctrl = {(k if k.startswith("controlnet.") else "controlnet." + k): v for k, v in ctrl.items()}
    return {**unet_sd, **ctrl}


def load_stage1(stage1_dir: str | os.PathLike, image_vae_dir: str | os.PathLike | None = None,
                dtype: torch.dtype = torch.float32, device="cpu",
                unet_additional_kwargs: Mapping | None = None,
                dtypes: Mapping[str, torch.dtype] | None = None,
                layers: LayerOptions = PLAIN_LAYERS) -> Stage1Models:
    """Flow UNet (+ControlNet), flow VAE and image VAE from `.../stage1/StableDiffusion-FlowGen`.

    `image_vae_dir` defaults to `<stage1_dir>/../../stage2/StableDiffusion/vae`. `dtypes` sets
    the dtype of single components by name ("flow_unet", "flow_vae", "image_vae"; `dtype` otherwise),
    `layers` the layer namespace and the UNet's compute dtype.
    """
    dtypes = dtypes or {}
    from motion_i2v_core.models.unet3d import FlowUNet

    root = Path(stage1_dir)
    if not root.is_dir():
        raise CheckpointError(f"Missing stage-1 folder: expected models/motion_i2v/{STAGE1_SUBDIR}/ "
                              f"(looked for {root}).")
    image_vae_dir = Path(image_vae_dir) if image_vae_dir is not None else root.parent.parent / IMAGE_VAE_SUBDIR

    # flow UNet + ControlNet
    rel = f"{STAGE1_SUBDIR}/unet"
    raw = _read_config(root / "unet", rel, "stage-1 flow UNet")
    cfg = _config_or_error(
        lambda: UNetConfig.from_diffusers(raw, stride_embedding=True, **motion_overrides(unet_additional_kwargs)),
        root / "unet" / "config.json", "stage-1 flow UNet")
    if cfg.in_channels != 2 * cfg.out_channels:
        raise CheckpointError(
            f"{root / 'unet' / 'config.json'}: in_channels {cfg.in_channels} / out_channels {cfg.out_channels}; "
            f"the flow UNet takes the image latent and the noisy flow latent (in = 2 x out, 8 / 4 for "
            f"SD-1.5). Is this the stage-1 unet/config.json?")
    unet_path = _require_file(root / "unet", DIFFUSERS_WEIGHTS, rel, "stage-1 flow UNet weights")
    ctrl_path = _require_file(root / "controlnet", ("controlnet",), f"{STAGE1_SUBDIR}/controlnet",
                              "stage-1 ControlNet weights")
    unet_sd = read_state_dict(unet_path)
    ctrl_sd = read_state_dict(ctrl_path)
    kind, looks = identify_state_dict(unet_sd)
    if kind not in ("flow_unet", "flow_unet_with_controlnet"):
        raise CheckpointError(f"{unet_path}: expected the stage-1 flow UNet (diffusers names with a "
                              f"stride_embedding), but the file looks like {looks}.")
    kind, looks = identify_state_dict(ctrl_sd)
    if kind not in ("controlnet", "controlnet_unprefixed", "flow_unet_with_controlnet"):
        raise CheckpointError(f"{ctrl_path}: expected the stage-1 ControlNet (keys 'controlnet.*'), "
                              f"but the file looks like {looks}.")
    check_config_matches(cfg, unet_sd, config_file=str(root / "unet" / "config.json"), weights_file=str(unet_path))
    sd = overlay_controlnet(unet_sd, ctrl_sd)
    del unet_sd, ctrl_sd
    c0 = cfg.block_out_channels[0]
    check_shapes(sd, {"conv_in.weight": (c0, cfg.in_channels, 3, 3),
                      "conv_out.weight": (cfg.out_channels, c0, 3, 3),
                      "controlnet.controlnet_cond_embedding.layers.0.weight":
                          (cfg.controlnet_conditioning_hidden, cfg.controlnet_conditioning_channels, 1, 3, 3)},
                 file=str(unet_path), expected_what="stage-1 flow UNet")
    files = f"{unet_path} + {ctrl_path.name}"
    unet = build_and_load(lambda dtype, device: FlowUNet(cfg, with_controlnet=True, dtype=dtype, device=device,
                                                                  **layers.unet()),
                          sd, file=files, expected_what="stage-1 flow UNet with ControlNet (from unet/config.json)",
                          dtype=dtype, device=device,
                          hint="Check the files come from models/stage1/StableDiffusion-FlowGen and that "
                               "unet/config.json matches the weights.")
    del sd

    flow_vae = _load_vae_folder(root / "vae", f"{STAGE1_SUBDIR}/vae", root / "vae_flow",
                                f"{STAGE1_SUBDIR}/vae_flow", "flow VAE", 2, dtypes.get("flow_vae", dtype), device,
                                layers)
    image_vae = _load_vae_folder(image_vae_dir, IMAGE_VAE_SUBDIR, image_vae_dir, IMAGE_VAE_SUBDIR,
                                 "image VAE", 3, dtypes.get("image_vae", dtype), device,
                                 layers)
    return Stage1Models(unet=unet, flow_vae=flow_vae, image_vae=image_vae)


# ------------------------------------------------------------------------------------------------
# stage 2


def load_stage2(stage2_dir: str | os.PathLike, dtype: torch.dtype = torch.float32, device="cpu",
                unet_state_dict: Mapping[str, torch.Tensor] | None = None,
                vae_state_dict: Mapping[str, torch.Tensor] | None = None,
                unet_additional_kwargs: Mapping | None = None,
                unet_override_state_dict: Mapping[str, torch.Tensor] | None = None,
                dtypes: Mapping[str, torch.dtype] | None = None,
                layers: LayerOptions = PLAIN_LAYERS) -> Stage2Models:
    """Render UNet (SD-1.5 2-D weights + Motion_Module/motion_block) and VAE from `.../stage2`.

    `unet_state_dict` (diffusers or LDM names, e.g. from a single-file checkpoint or ComfyUI)
    replaces the 2-D weights of StableDiffusion/unet; `vae_state_dict` replaces the VAE weights
    (this is what the official app does with its DreamBooth checkpoint). With an override, the
    corresponding StableDiffusion weight file is not needed; without a config.json the SD-1.5
    preset is used. `dtypes` sets the dtype of "render_unet" or "vae" (`dtype` otherwise), `layers`
    the layer namespace and the UNet's compute dtype.
    """
    from motion_i2v_core.models.unet3d import RenderUNet

    vae_dtype = (dtypes or {}).get("vae", dtype)
    from motion_i2v_core.loading.ldm import convert_ldm_unet_state_dict, is_ldm_state_dict

    if unet_override_state_dict is not None:  # name used in the team plan
        unet_state_dict = unet_override_state_dict
    root = Path(stage2_dir)
    if not root.is_dir():
        raise CheckpointError(f"Missing stage-2 folder: expected models/motion_i2v/{STAGE2_SUBDIR}/ "
                              f"(looked for {root}).")
    unet_dir, vae_dir = root / "StableDiffusion" / "unet", root / "StableDiffusion" / "vae"
    rel_unet, rel_vae = "stage2/StableDiffusion/unet", "stage2/StableDiffusion/vae"
    motion = motion_overrides(unet_additional_kwargs)

    if unet_state_dict is not None and not (unet_dir / "config.json").is_file():
        cfg = UNetConfig.sd15_render(**motion)
    else:
        raw = _read_config(unet_dir, rel_unet, "stage-2 SD UNet")
        cfg = _config_or_error(lambda: UNetConfig.from_diffusers(raw, stride_embedding=False, **motion),
                               unet_dir / "config.json", "stage-2 SD UNet")

    if unet_state_dict is None:
        sd_path = _require_file(unet_dir, DIFFUSERS_WEIGHTS, rel_unet, "stage-2 SD-1.5 UNet weights")
        sd2d, src2d = read_state_dict(sd_path), str(sd_path)
    else:
        sd2d, src2d = dict(unet_state_dict), "the supplied SD-1.5 UNet"
        if is_ldm_state_dict(sd2d) and any("input_blocks." in k for k in sd2d):
            sd2d = convert_ldm_unet_state_dict(sd2d, file=src2d)
    kind, looks = identify_state_dict(sd2d)
    if kind not in ("sd_unet", "sd_unet_3d"):
        raise CheckpointError(f"{src2d}: expected a 2-D SD-1.5 UNet (diffusers names), but it looks like {looks}.")
    if unet_state_dict is None:  # the set's own file: a disagreement is config.json's (an appearance model's is its own)
        check_config_matches(cfg, sd2d, config_file=str(unet_dir / "config.json"), weights_file=src2d)
    # the 2-D weights own every non-motion key; motion keys come only from motion_block
    sd2d = {k: v for k, v in sd2d.items() if ".motion_modules." not in k}

    mm_path = _require_file(root / "Motion_Module", ("motion_block",), "stage2/Motion_Module", "motion-module weights")
    mm_sd = read_state_dict(mm_path)
    kind, looks = identify_state_dict(mm_sd)
    if kind != "motion_module":
        raise CheckpointError(f"{mm_path}: expected the Motion-I2V motion modules (only '*.motion_modules.*' "
                              f"keys), but the file looks like {looks}.")
    # check each part against its own half of the model so the error names the right file
    module_meta = RenderUNet(cfg, dtype=dtype, device="meta")
    expected = expected_shapes(module_meta)
    exp2d = OrderedDict((k, s) for k, s in expected.items() if ".motion_modules." not in k)
    expmm = OrderedDict((k, s) for k, s in expected.items() if ".motion_modules." in k)
    del module_meta
    check_state_dict(sd2d, exp2d, file=src2d, expected_what="2-D part of the stage-2 UNet (SD-1.5)",
                     hint="Check that this is an SD-1.5 UNet and that StableDiffusion/unet/config.json matches it.")
    check_state_dict(mm_sd, expmm, file=str(mm_path), expected_what="motion modules of the stage-2 UNet",
                     hint="Motion-I2V needs its own Motion_Module/motion_block.bin (AnimateDiff-v2 layout "
                          "incl. the mid-block module).")
    unet = build_and_load(lambda dtype, device: RenderUNet(cfg, dtype=dtype, device=device, **layers.unet()),
                          {**sd2d, **mm_sd}, file=f"{src2d} + {mm_path}", expected_what="stage-2 UNet",
                          dtype=dtype, device=device)
    del sd2d, mm_sd

    if vae_state_dict is not None:
        if (vae_dir / "config.json").is_file():
            raw = _read_config(vae_dir, rel_vae, "stage-2 VAE")
            vcfg = _config_or_error(lambda: VAEConfig.from_diffusers(raw), vae_dir / "config.json", "stage-2 VAE")
        else:
            vcfg = VAEConfig.sd15(3)
        vae = load_vae_state_dict(vae_state_dict, vcfg, file="the supplied VAE", what="stage-2 VAE",
                                  dtype=vae_dtype, device=device, layers=layers)
    else:
        vae = _load_vae_folder(vae_dir, rel_vae, vae_dir, rel_vae, "stage-2 VAE", 3, vae_dtype, device, layers)
    return Stage2Models(unet=unet, vae=vae)
