"""Does a config describe the weights it comes with? A size bound and the sizes read back from the tensors.

Run before a module is built, so that a mistyped config.json is reported against config.json (not
against a weights file the user would then re-download), and so that a config describing a far
bigger model than the file holds is refused before any memory is spent on it.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from motion_i2v_core.loading.validate import CheckpointError
from motion_i2v_core.models.config import UNetConfig, VAEConfig

MIN_BYTES_PER_WEIGHT = 1  # fp8: the smallest dtype a weight file could hold
_CONFIG_FIX = ("config.json does not describe these weights; restore it from huggingface.co/wangfuyun/Motion-I2V "
               "(the same path below its models/ folder), or replace the weights file if it is not the official one.")


def state_dict_bytes(sd: Mapping[str, torch.Tensor]) -> int:
    return sum(v.numel() * v.element_size() for v in sd.values() if isinstance(v, torch.Tensor))


def _levels(sd: Mapping, pattern: str) -> tuple:
    out = []
    while (w := sd.get(pattern.format(len(out)))) is not None:
        out.append(int(w.shape[0]))
    return tuple(out)


def _count(sd: Mapping, prefix: str) -> int:
    rx = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {m.group(1) for k in sd if (m := rx.match(k))}
    return len(found)


def _shape(sd: Mapping, key: str, dim: int):
    w = sd.get(key)
    return None if w is None or w.ndim <= dim else int(w.shape[dim])


def read_back(cfg: Any, sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The architecture fields of `cfg`'s class as the tensors of `sd` show them (diffusers names;
    fields whose tensors are absent are left out)."""
    if isinstance(cfg, UNetConfig):
        found = {"block_out_channels": _levels(sd, "down_blocks.{}.resnets.0.conv2.weight"),
                 "layers_per_block": _count(sd, "down_blocks.0.resnets."),
                 "cross_attention_dim": _shape(sd, "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", 1)}
    else:
        found = {"block_out_channels": _levels(sd, "encoder.down_blocks.{}.resnets.0.conv2.weight"),
                 "layers_per_block": _count(sd, "encoder.down_blocks.0.resnets."),
                 "latent_channels": _shape(sd, "decoder.conv_in.weight", 1)}
    return {k: v for k, v in found.items() if v}


def check_config_matches(cfg: UNetConfig | VAEConfig, sd: Mapping[str, torch.Tensor], *, config_file: str,
                         weights_file: str) -> None:
    """Raise CheckpointError naming `config_file` when `cfg` cannot describe `sd`.

    Two checks, both before building: the config's lower bound of weights (at MIN_BYTES_PER_WEIGHT each) must fit
    in the tensors read, and its architecture fields must equal the ones read back from the shapes.
    """
    have = state_dict_bytes(sd)
    need = cfg.min_parameter_count() * MIN_BYTES_PER_WEIGHT
    if need > have:
        raise CheckpointError(
            f"{config_file}: describes a model of at least {need / 2**20:,.1f} MiB of weights "
            f"(block_out_channels {list(cfg.block_out_channels)}, layers_per_block {cfg.layers_per_block}), "
            f"but {weights_file} holds {have / 2**20:,.1f} MiB. {_CONFIG_FIX}")
    found = read_back(cfg, sd)
    wrong = [(k, getattr(cfg, k), v) for k, v in found.items() if getattr(cfg, k) != v]
    if wrong:
        listed = "; ".join(f"{k} is {list(c) if isinstance(c, tuple) else c} here, the weights have "
                           f"{list(v) if isinstance(v, tuple) else v}" for k, c, v in wrong)
        raise CheckpointError(f"{config_file}: does not match the weights ({listed}; weights: {weights_file}). "
                              f"{_CONFIG_FIX}")
