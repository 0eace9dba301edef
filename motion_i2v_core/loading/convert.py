"""One `.safetensors` file per model component, with its config embedded, and back.

Components: flow_unet (stage-1 UNet incl. the `controlnet.` child), flow_vae, image_vae,
render_unet (stage-2 UNet: 2-D + motion modules) and vae (stage-2 VAE). Header metadata:
  motion_i2v.format_version  "1"
  motion_i2v.component       one of COMPONENTS
  motion_i2v.config_class    "UNetConfig" | "VAEConfig"
  motion_i2v.config          the config dataclass as JSON
  motion_i2v.dtype           dtype of the weights ("float16" / "float32")
The `pos_encoder.pe` buffers are always written in float32 (they are exact formula values and
fp16 would round them). Files are written to a temporary name and renamed, so an interrupted
conversion never leaves a half-written file under the final name. load_converted_stage1/2 build
the same Stage1Models/Stage2Models as official.load_stage1/2 from a folder of these files.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from motion_i2v_core.models.config import UNetConfig, VAEConfig
from motion_i2v_core.models.vae import AutoencoderKL
from motion_i2v_core.loading.files import read_state_dict
from motion_i2v_core.loading.validate import CheckpointError, check_state_dict, identify_state_dict, is_pe_key

FORMAT_VERSION = "1"
META_PREFIX = "motion_i2v."
STAGE1_COMPONENTS = ("flow_unet", "flow_vae", "image_vae")
STAGE2_COMPONENTS = ("render_unet", "vae")
COMPONENTS = STAGE1_COMPONENTS + STAGE2_COMPONENTS
_CONFIG_CLASSES = {"UNetConfig": UNetConfig, "VAEConfig": VAEConfig}
_DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


def _component_of(module: nn.Module) -> str:
    from motion_i2v_core.models.unet3d import FlowUNet, RenderUNet

    if isinstance(module, FlowUNet):
        if getattr(module, "controlnet", None) is None:
            raise ValueError("flow_unet must be saved with its ControlNet child")
        return "flow_unet"
    if isinstance(module, RenderUNet):
        return "render_unet"
    if isinstance(module, AutoencoderKL):
        return "flow_vae" if module.config.in_channels == 2 else "image_vae"
    raise ValueError(f"no component name for a {type(module).__name__}; pass component=")


def _config_json(cfg: Any) -> tuple[str, str]:
    if not dataclasses.is_dataclass(cfg) or type(cfg).__name__ not in _CONFIG_CLASSES:
        raise ValueError(f"config must be a UNetConfig or VAEConfig, got {type(cfg).__name__}")
    return type(cfg).__name__, json.dumps(dataclasses.asdict(cfg), sort_keys=True)


def save_component(module_or_state_dict: nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike,
                   dtype: torch.dtype = torch.float16, *, component: str | None = None,
                   config: Any = None) -> Path:
    """Write one component to `path` (.safetensors). A module brings its own `config`; a bare state
    dict needs `component=` and `config=`. Returns the path written."""
    from safetensors.torch import save_file

    if dtype not in _DTYPES.values():
        raise ValueError(f"dtype must be float16, bfloat16 or float32, got {dtype}")
    if isinstance(module_or_state_dict, nn.Module):
        component = component or _component_of(module_or_state_dict)
        config = config if config is not None else module_or_state_dict.config
        sd = module_or_state_dict.state_dict()
    else:
        sd = dict(module_or_state_dict)
        if component is None or config is None:
            raise ValueError("saving a state dict needs component= and config=")
    if component not in COMPONENTS:
        raise ValueError(f"component must be one of {COMPONENTS}, got {component!r}")
    cls_name, cfg_json = _config_json(config)
    tensors = {}
    for key, value in sd.items():
        value = value.detach()
        if is_pe_key(key):
            value = _exact_pe(key, value)
        elif value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.to("cpu").contiguous()
    metadata = {
        META_PREFIX + "format_version": FORMAT_VERSION,
        META_PREFIX + "component": component,
        META_PREFIX + "config_class": cls_name,
        META_PREFIX + "config": cfg_json,
        META_PREFIX + "dtype": str(dtype).replace("torch.", ""),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(_dedupe_shared(tensors), str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _exact_pe(key: str, value: torch.Tensor) -> torch.Tensor:
    """pe buffers in float32. A module held in fp16 has a rounded table; write the exact formula
    values instead when they agree with it (they always do for tables built by this pack)."""
    if value.dtype == torch.float32:
        return value
    from motion_i2v_core.models.embeddings import temporal_position_table

    _, max_len, channels = value.shape
    exact = temporal_position_table(channels, max_len)
    if torch.allclose(value.float().cpu(), exact, atol=2e-3, rtol=0):
        return exact
    return value.float()


def _dedupe_shared(tensors: dict) -> dict:
    # safetensors refuses tensors that share storage; the models have none, but be safe
    seen = {}
    out = {}
    for k, v in tensors.items():
        ptr = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape)) if v.numel() else None
        out[k] = v.clone() if ptr is not None and ptr in seen else v
        if ptr is not None:
            seen[ptr] = k
    return out


def component_info(path: str | os.PathLike) -> dict | None:
    """(component, config, dtype, format_version) of a converted file, or None if it is not one."""
    from motion_i2v_core.loading.files import read_metadata

    meta = read_metadata(path)
    if META_PREFIX + "component" not in meta:
        return None
    return {k[len(META_PREFIX):]: v for k, v in meta.items() if k.startswith(META_PREFIX)}


def _config_from_meta(meta: Mapping[str, str], path) -> Any:
    cls = _CONFIG_CLASSES.get(meta.get(META_PREFIX + "config_class", ""))
    if cls is None:
        raise CheckpointError(f"{path}: unknown config class {meta.get(META_PREFIX + 'config_class')!r}.")
    try:
        values = json.loads(meta[META_PREFIX + "config"])
    except (KeyError, ValueError):
        raise CheckpointError(f"{path}: the embedded config is missing or not JSON; re-convert the file.") from None
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CheckpointError(f"{path}: config fields {unknown} are not known to this version; the file "
                              f"was written by a newer Motion-I2V pack.")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid embedded config: {e}") from None


def _builder(component: str, cfg: Any, layers):
    from motion_i2v_core.models.unet3d import FlowUNet, RenderUNet

    if component == "flow_unet":
        return lambda dtype, device: FlowUNet(cfg, with_controlnet=True, dtype=dtype, device=device, **layers.unet())
    if component == "render_unet":
        return lambda dtype, device: RenderUNet(cfg, dtype=dtype, device=device, **layers.unet())
    return lambda dtype, device: AutoencoderKL(cfg, dtype=dtype, device=device, **layers.vae())


def load_component(path: str | os.PathLike, dtype: torch.dtype | None = torch.float32, device="cpu",
                   expected: str | tuple[str, ...] | None = None, layers=None) -> nn.Module:
    """Rebuild a module from a file written by `save_component` (config from its metadata) and
    strict-load it. `expected`: component name(s) the caller accepts. `dtype=None` keeps the
    file's dtype. `layers`: official.LayerOptions (layer namespace, UNet compute dtype)."""
    from motion_i2v_core.loading.official import PLAIN_LAYERS, build_and_load

    sd, meta = read_state_dict(path, return_metadata=True)
    component = meta.get(META_PREFIX + "component")
    if component is None:
        _, looks = identify_state_dict(sd)
        raise CheckpointError(f"{path}: not a converted Motion-I2V component file (no "
                              f"'{META_PREFIX}component' metadata); it looks like {looks}.")
    version = meta.get(META_PREFIX + "format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {version!r}, this pack reads version {FORMAT_VERSION}.")
    if component not in COMPONENTS:
        raise CheckpointError(f"{path}: unknown component {component!r}.")
    wanted = (expected,) if isinstance(expected, str) else expected
    if wanted and component not in wanted:
        raise CheckpointError(f"{path}: this file holds the {component}, expected {' or '.join(wanted)}.")
    cfg = _config_from_meta(meta, path)
    from motion_i2v_core.loading.config_check import check_config_matches

    check_config_matches(cfg, {k: v for k, v in sd.items() if not k.startswith("controlnet.")},
                         config_file=f"{path} (its embedded config)", weights_file="its tensors")
    if dtype is None:
        dtype = _DTYPES.get(meta.get(META_PREFIX + "dtype", "float32"), torch.float32)
    return build_and_load(_builder(component, cfg, layers or PLAIN_LAYERS), sd, file=str(path), expected_what=f"{component} "
                          f"(config embedded in the file)", dtype=dtype, device=device)


def converted_file(folder: str | os.PathLike, component: str, rel: str | None = None) -> Path:
    """`<folder>/<component>.safetensors`, or a CheckpointError naming it below models/motion_i2v/.
    `rel`: the folder relative to models/motion_i2v ("." = that folder; default: the folder's name)."""
    if component not in COMPONENTS:
        raise ValueError(f"component must be one of {COMPONENTS}, got {component!r}")
    folder = Path(folder)
    path = folder / f"{component}.safetensors"
    if not path.is_file():
        rel = folder.name if rel is None else rel.strip("/")
        shown = f"models/motion_i2v/{component}.safetensors" if rel in ("", ".") else \
            f"models/motion_i2v/{rel}/{component}.safetensors"
        stage, parts = (1, STAGE1_COMPONENTS) if component in STAGE1_COMPONENTS else (2, STAGE2_COMPONENTS)
        raise CheckpointError(
            f"Missing {shown} (looked for {path}): converted stage-{stage} weights need "
            f"{', '.join(p + '.safetensors' for p in parts)} next to each other. Convert the official files "
            f"again with `python -m motion_i2v_core convert`.")
    return path


def replace_weights(module: nn.Module, sd: Mapping[str, torch.Tensor], what: str, skip: str | None = None) -> None:
    """Load `sd` over `module`'s weights (except keys containing `skip`) after a strict key/shape check."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items() if skip is None or skip not in k}
    check_state_dict(sd, expected, file=what, expected_what="stage-2 model")
    module.load_state_dict(sd, strict=False)


def load_converted_stage1(folder: str | os.PathLike, dtype: torch.dtype = torch.float32, device="cpu", *,
                          rel: str | None = None, dtypes: Mapping[str, torch.dtype] | None = None, layers=None):
    """Stage1Models (flow UNet + ControlNet, flow VAE, image VAE) from converted files in `folder`
    (the counterpart of official.load_stage1). `rel`: for error messages, see converted_file;
    `dtypes`: the dtype of single components by name (`dtype` otherwise); `layers`: see load_component."""
    from motion_i2v_core.loading.official import Stage1Models

    dt = dict.fromkeys(STAGE1_COMPONENTS, dtype) | dict(dtypes or {})
    parts = {c: converted_file(folder, c, rel) for c in STAGE1_COMPONENTS}
    return Stage1Models(
        unet=load_component(parts["flow_unet"], dtype=dt["flow_unet"], device=device, expected="flow_unet",
                            layers=layers),
        flow_vae=load_component(parts["flow_vae"], dtype=dt["flow_vae"], device=device, expected="flow_vae",
                                layers=layers),
        image_vae=load_component(parts["image_vae"], dtype=dt["image_vae"], device=device,
                                 expected=("image_vae", "vae"), layers=layers),
    )


def load_converted_stage2(folder: str | os.PathLike, dtype: torch.dtype = torch.float32, device="cpu",
                          unet_state_dict: Mapping[str, torch.Tensor] | None = None,
                          vae_state_dict: Mapping[str, torch.Tensor] | None = None, *, rel: str | None = None,
                          dtypes: Mapping[str, torch.dtype] | None = None, layers=None):
    """Stage2Models (render UNet, VAE) from converted files in `folder` (the counterpart of
    official.load_stage2). `unet_state_dict` (our diffusers names, e.g. from load_ldm_checkpoint)
    replaces the 2-D SD-1.5 weights of the render UNet, its motion modules kept; `vae_state_dict`
    replaces the VAE weights. Both are checked strictly against the module's keys and shapes.
    `dtypes`: the dtype of "render_unet" or "vae" (`dtype` otherwise); `layers`: see load_component."""
    from motion_i2v_core.loading.official import Stage2Models

    dt = dict.fromkeys(STAGE2_COMPONENTS, dtype) | dict(dtypes or {})
    unet_path, vae_path = (converted_file(folder, c, rel) for c in STAGE2_COMPONENTS)
    unet = load_component(unet_path, dtype=dt["render_unet"], device=device, expected="render_unet", layers=layers)
    vae = load_component(vae_path, dtype=dt["vae"], device=device, expected=("vae", "image_vae"), layers=layers)
    if unet_state_dict is not None:
        replace_weights(unet, unet_state_dict, "the SD-1.5 appearance UNet", skip=".motion_modules.")
    if vae_state_dict is not None:
        replace_weights(vae, vae_state_dict, "the checkpoint's VAE")
    return Stage2Models(unet=unet, vae=vae)


def convert_official_tree(models_dir: str | os.PathLike, out_dir: str | os.PathLike,
                          dtype: torch.dtype = torch.float16, components: tuple[str, ...] = COMPONENTS,
                          overwrite: bool = False) -> dict[str, Path]:
    """Convert the official folder tree under `models_dir` (the models/motion_i2v folder holding
    stage1/ and stage2/) to `<out_dir>/<component>.safetensors`. Returns {component: path}."""
    from motion_i2v_core.loading.official import STAGE1_SUBDIR, load_stage1, load_stage2

    models_dir, out_dir = Path(models_dir), Path(out_dir)
    bad = [c for c in components if c not in COMPONENTS]
    if bad:
        raise ValueError(f"unknown components {bad}; choose from {COMPONENTS}")
    targets = {c: out_dir / f"{c}.safetensors" for c in components}
    if not overwrite:
        existing = [str(p) for p in targets.values() if p.exists()]
        if existing:
            raise FileExistsError(f"already converted (pass overwrite=True to replace): {', '.join(existing)}")
    written: dict[str, Path] = {}
    # load in the target dtype so an SD-1.5 stage never needs fp32 copies of everything
    load_dtype = dtype
    if {"flow_unet", "flow_vae", "image_vae"} & set(components):
        s1 = load_stage1(models_dir / STAGE1_SUBDIR, dtype=load_dtype)
        for name, module in (("flow_unet", s1.unet), ("flow_vae", s1.flow_vae), ("image_vae", s1.image_vae)):
            if name in components:
                written[name] = save_component(module, targets[name], dtype, component=name)
        del s1
    if {"render_unet", "vae"} & set(components):
        s2 = load_stage2(models_dir / "stage2", dtype=load_dtype)
        for name, module in (("render_unet", s2.unet), ("vae", s2.vae)):
            if name in components:
                written[name] = save_component(module, targets[name], dtype, component=name)
        del s2
    return written
