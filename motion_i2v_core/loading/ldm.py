"""SD-1.5 single-file checkpoints in the original LDM naming -> our (diffusers-0.11) names.

UNet (`model.diffusion_model.*`, or no prefix as in ComfyUI's model state dict):
  time_embed.{0,2}              -> time_embedding.linear_{1,2}
  input_blocks.0.0              -> conv_in
  input_blocks.{1+i(L+1)+j}.0   -> down_blocks.i.resnets.j       (L = layers per block)
  input_blocks.{1+i(L+1)+j}.1   -> down_blocks.i.attentions.j
  input_blocks.{(i+1)(L+1)}.0.op -> down_blocks.i.downsamplers.0.conv
  middle_block.{0,1,2}          -> mid_block.{resnets.0, attentions.0, resnets.1}
  output_blocks.{i(L+1)+j}.{0,1} -> up_blocks.i.{resnets,attentions}.j  (j = 0..L)
  output_blocks.{i(L+1)+L}.<last>.conv -> up_blocks.i.upsamplers.0.conv
  out.{0,2}                     -> conv_norm_out, conv_out
  resnet internals: in_layers.{0,2} -> norm1/conv1, emb_layers.1 -> time_emb_proj,
                    out_layers.{0,3} -> norm2/conv2, skip_connection -> conv_shortcut
  transformer internals are already named as in diffusers 0.11 (norm, proj_in, transformer_blocks...).
VAE (`first_stage_model.*`): encoder.down.i.block.j -> encoder.down_blocks.i.resnets.j, decoder.up.k
  -> decoder.up_blocks.(N-1-k) (LDM stores the decoder levels in reverse), mid.block_{1,2}/attn_1,
  norm_out, nin_shortcut -> conv_shortcut; the mid attention q/k/v/proj_out are 1x1 convs that
  become the Linear query/key/value/proj_attn.
"""

from __future__ import annotations

import os
import re
from typing import Mapping

import torch

from motion_i2v_core.loading.files import read_state_dict
from motion_i2v_core.loading.validate import CheckpointError

UNET_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "")
VAE_PREFIXES = ("first_stage_model.", "vae.", "")

_RESNET_PARTS = {
    "in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut",
}
_VAE_RESNET_PARTS = {"nin_shortcut": "conv_shortcut"}  # norm1/conv1/norm2/conv2 keep their names
_VAE_ATTN_PARTS = {"norm": "group_norm", "q": "query", "k": "key", "v": "value", "proj_out": "proj_attn"}


def _detect_prefix(sd: Mapping[str, torch.Tensor], prefixes, marker: str) -> str | None:
    for p in prefixes:
        if any(k.startswith(p + marker) for k in sd):
            return p
    return None


def _sub(sd: Mapping, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _rename_resnet(rest: str) -> str:
    for old, new in _RESNET_PARTS.items():
        if rest == old or rest.startswith(old + "."):
            return new + rest[len(old):]
    raise KeyError(rest)


def _unet_layout(keys, file: str) -> tuple[int, int, dict[int, list[str]]]:
    """(layers per block L, number of levels N, {output block index: sorted sub-module ids})."""
    inputs = {int(m.group(1)) for k in keys if (m := re.match(r"input_blocks\.(\d+)\.", k))}
    down_ops = sorted({int(m.group(1)) for k in keys if (m := re.match(r"input_blocks\.(\d+)\.0\.op\.", k))})
    outputs: dict[int, set] = {}
    for k in keys:
        m = re.match(r"output_blocks\.(\d+)\.(\d+)\.", k)
        if m:
            outputs.setdefault(int(m.group(1)), set()).add(m.group(2))
    if not inputs or not outputs:
        raise CheckpointError(f"{file}: no input_blocks / output_blocks keys: not an LDM UNet.")
    layers = down_ops[0] - 1 if down_ops else max(inputs)  # single level: conv_in + L layers
    levels = len(down_ops) + 1
    if len(outputs) != levels * (layers + 1):
        raise CheckpointError(f"{file}: LDM UNet layout not understood ({len(outputs)} output blocks for "
                              f"{levels} levels x {layers + 1} layers); is the file complete?")
    return layers, levels, {i: sorted(s) for i, s in outputs.items()}


def convert_ldm_unet_state_dict(sd: Mapping[str, torch.Tensor], prefix: str | None = None,
                                *, file: str = "checkpoint") -> dict[str, torch.Tensor]:
    """LDM UNet keys -> diffusers-0.11 UNet2DConditionModel keys (SD-1.5 layout).

    `prefix`: the key prefix of the UNet ("model.diffusion_model." in checkpoints, "" or
    "diffusion_model." in ComfyUI state dicts); None detects it.
    """
    if prefix is None:
        prefix = _detect_prefix(sd, UNET_PREFIXES, "input_blocks.")
        if prefix is None:
            raise CheckpointError(f"{file}: no LDM UNet found (no '*input_blocks.*' keys).")
    unet = _sub(sd, prefix)
    layers, levels, out_parts = _unet_layout(unet, file)
    # which input block index is which (level, layer)
    in_map: dict[int, str] = {}
    for i in range(levels):
        for j in range(layers):
            in_map[1 + i * (layers + 1) + j] = f"down_blocks.{i}.@{j}"
        if i < levels - 1:
            in_map[(i + 1) * (layers + 1)] = f"down_blocks.{i}.downsamplers.0"

    out: dict[str, torch.Tensor] = {}
    for key, value in unet.items():
        try:
            new = _unet_key(key, in_map, layers, out_parts)
        except KeyError:
            raise CheckpointError(f"{file}: unknown UNet key '{prefix}{key}' (not an SD-1.5 LDM UNet?)") from None
        if new is None:
            continue
        out[new] = value
    return out


def _unet_key(key: str, in_map, layers: int, out_parts) -> str | None:
    simple = {"time_embed.0.": "time_embedding.linear_1.", "time_embed.2.": "time_embedding.linear_2.",
              "input_blocks.0.0.": "conv_in.", "out.0.": "conv_norm_out.", "out.2.": "conv_out."}
    for old, new in simple.items():
        if key.startswith(old):
            return new + key[len(old):]
    m = re.match(r"input_blocks\.(\d+)\.(\d+)\.(.*)", key)
    if m:
        idx, sub, rest = int(m.group(1)), m.group(2), m.group(3)
        target = in_map[idx]
        if target.endswith("downsamplers.0"):
            if not rest.startswith("op."):
                raise KeyError(key)
            return f"{target}.conv.{rest[3:]}"
        level, layer = target.split(".@")
        if sub == "0":
            return f"{level}.resnets.{layer}.{_rename_resnet(rest)}"
        if sub == "1":
            return f"{level}.attentions.{layer}.{rest}"
        raise KeyError(key)
    m = re.match(r"middle_block\.(\d)\.(.*)", key)
    if m:
        sub, rest = m.group(1), m.group(2)
        if sub == "1":
            return f"mid_block.attentions.0.{rest}"
        return f"mid_block.resnets.{0 if sub == '0' else 1}.{_rename_resnet(rest)}"
    m = re.match(r"output_blocks\.(\d+)\.(\d+)\.(.*)", key)
    if m:
        idx, sub, rest = int(m.group(1)), m.group(2), m.group(3)
        level, layer = divmod(idx, layers + 1)
        parts = out_parts[idx]
        if sub == "0":
            return f"up_blocks.{level}.resnets.{layer}.{_rename_resnet(rest)}"
        # the last sub-module of a level's last output block is the upsampler ("conv.*")
        is_upsampler = layer == layers and sub == parts[-1] and rest.startswith("conv.")
        if is_upsampler:
            return f"up_blocks.{level}.upsamplers.0.{rest}"
        if sub == "1":
            return f"up_blocks.{level}.attentions.{layer}.{rest}"
        raise KeyError(key)
    raise KeyError(key)


def convert_ldm_vae_state_dict(sd: Mapping[str, torch.Tensor], prefix: str | None = None,
                               *, file: str = "checkpoint") -> dict[str, torch.Tensor]:
    """LDM VAE keys (encoder.down.*, decoder.up.*, mid.attn_1 ...) -> our AutoencoderKL keys (old
    attention names). Keys outside the autoencoder (e.g. a training `loss.*` discriminator) are dropped."""
    if prefix is None:
        prefix = _detect_prefix(sd, VAE_PREFIXES, "encoder.down.")
        if prefix is None:
            raise CheckpointError(f"{file}: no LDM VAE found (no '*encoder.down.*' keys).")
    vae = _sub(sd, prefix)
    n_up = len({m.group(1) for k in vae if (m := re.match(r"decoder\.up\.(\d+)\.", k))})
    out = {}
    for key, value in vae.items():
        try:
            new = _vae_key(key, n_up)
        except KeyError:
            raise CheckpointError(f"{file}: unknown VAE key '{prefix}{key}' (not an SD LDM VAE?)") from None
        if new is None:
            continue
        if ".mid_block.attentions.0." in new and new.endswith(".weight") and value.ndim == 4:
            value = value.reshape(value.shape[0], value.shape[1])  # 1x1 conv -> Linear
        out[new] = value
    return out


def _vae_key(key: str, n_up: int) -> str | None:
    if key.split(".")[0] in ("quant_conv", "post_quant_conv"):
        return key
    if not key.startswith(("encoder.", "decoder.")):
        return None  # e.g. loss.* of a training checkpoint
    side, rest = key.split(".", 1)
    for old, new in (("conv_in.", "conv_in."), ("conv_out.", "conv_out."), ("norm_out.", "conv_norm_out.")):
        if rest.startswith(old):
            return f"{side}.{new}{rest[len(old):]}"
    m = re.match(r"(down|up)\.(\d+)\.(block|downsample|upsample)\.(.*)", rest)
    if m:
        kind, level, part, tail = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        if kind == "up":
            level = n_up - 1 - level
        blocks = "down_blocks" if kind == "down" else "up_blocks"
        if part == "block":
            j, tail = tail.split(".", 1)
            return f"{side}.{blocks}.{level}.resnets.{j}.{_vae_resnet(tail)}"
        samplers = "downsamplers" if part == "downsample" else "upsamplers"
        return f"{side}.{blocks}.{level}.{samplers}.0.{tail}"
    m = re.match(r"mid\.(block_1|block_2|attn_1)\.(.*)", rest)
    if m:
        part, tail = m.group(1), m.group(2)
        if part == "attn_1":
            name, param = tail.rsplit(".", 1)
            return f"{side}.mid_block.attentions.0.{_VAE_ATTN_PARTS[name]}.{param}"
        return f"{side}.mid_block.resnets.{0 if part == 'block_1' else 1}.{_vae_resnet(tail)}"
    raise KeyError(key)


def _vae_resnet(tail: str) -> str:
    for old, new in _VAE_RESNET_PARTS.items():
        if tail.startswith(old + "."):
            return new + tail[len(old):]
    if tail.split(".")[0] in ("norm1", "conv1", "norm2", "conv2"):
        return tail
    raise KeyError(tail)


def is_ldm_state_dict(sd: Mapping[str, torch.Tensor]) -> bool:
    """True for LDM-named UNet and/or VAE keys (with or without the checkpoint prefixes)."""
    return (_detect_prefix(sd, UNET_PREFIXES, "input_blocks.") is not None
            or _detect_prefix(sd, VAE_PREFIXES, "encoder.down.") is not None)


def load_ldm_checkpoint(path: str | os.PathLike) -> tuple[dict | None, dict | None]:
    """Read a single-file SD-1.5 checkpoint -> (unet_state_dict, vae_state_dict) in our names.

    Either part is None when the file lacks it (e.g. a "no-VAE" checkpoint)."""
    sd = read_state_dict(path)
    file = str(path)
    unet = vae = None
    if _detect_prefix(sd, UNET_PREFIXES, "input_blocks.") is not None:
        unet = convert_ldm_unet_state_dict(sd, file=file)
    if _detect_prefix(sd, VAE_PREFIXES, "encoder.down.") is not None:
        vae = convert_ldm_vae_state_dict(sd, file=file)
    if unet is None and vae is None:
        from motion_i2v_core.loading.validate import identify_state_dict
        raise CheckpointError(f"{file}: expected a single-file SD-1.5 checkpoint in LDM naming "
                              f"(model.diffusion_model.* / first_stage_model.*), but the file looks "
                              f"like {identify_state_dict(sd)[1]}.")
    return unet, vae
