"""Model configurations: the UNet (both stages) and the VAEs.

Values come from diffusers-style ``config.json`` dicts (``from_diffusers``); the SD1.5 presets only
fill in what a checkpoint folder would otherwise provide. Every field is checked against a plausible
range (generous around SD-1.5's values) before anything is built, so a mistyped config.json is one
readable error instead of a model that takes minutes and gigabytes to build; ``min_parameter_count``
gives a lower bound of the weights a config needs, for comparing with a file's size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

_DOWN_CROSS = ("CrossAttnDownBlock2D", "CrossAttnDownBlock3D")
_DOWN_PLAIN = ("DownBlock2D", "DownBlock3D")
_UP_CROSS = ("CrossAttnUpBlock2D", "CrossAttnUpBlock3D")
_UP_PLAIN = ("UpBlock2D", "UpBlock3D")


# Accepted ranges (inclusive); SD-1.5 values in the comments.
MAX_CHANNELS = 4096          # block_out_channels entries (SD-1.5 UNet 1280, VAE 512)
LEVELS = (2, 6)              # entries of block_out_channels (SD-1.5: 4)
UNET_RANGES = {
    "in_channels": (1, 64), "out_channels": (1, 64),            # 8/4 (flow UNet), 4/4 (render UNet)
    "layers_per_block": (1, 8),                                  # 2
    "attention_heads": (1, 64),                                  # 8
    "cross_attention_dim": (1, 4096),                            # 768
    "norm_num_groups": (1, 128),                                 # 32
    "motion_module_heads": (1, 64),                              # 8
    "motion_module_pe_max_len": (1, 1024),                       # 32
    "motion_module_norm_groups": (1, 128),                       # 32
    "controlnet_conditioning_channels": (1, 64),                 # 5
    "controlnet_conditioning_hidden": (1, MAX_CHANNELS),         # 512
    "freq_shift": (-1000, 1000),                                 # 0
}
VAE_RANGES = {
    "in_channels": (1, 16), "out_channels": (1, 16),             # 3 (image), 2 (flow)
    "latent_channels": (1, 64),                                  # 4
    "layers_per_block": (1, 8),                                  # 2
    "norm_num_groups": (1, 128),                                 # 32
}


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer from {lo} to {hi}, got {_shown(value)}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} = {value} is outside the supported range {lo}..{hi}")


def _check_number(name: str, value: Any, lo: float, hi: float) -> None:
    """A positive float field within (lo, hi]."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo < value <= hi:
        raise ValueError(f"{name} must be a number greater than {lo:g} and at most {hi:g}, got {_shown(value)}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {_shown(value)}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def int_list(name: str, value: Any) -> tuple:
    """A config.json list of integers as a tuple (a string is not read as its characters)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list of integers such as [320, 640, 1280, 1280], got {_shown(value)}")
    return tuple(value)


def _check_channels(name: str, channels: Any, divisors: Mapping[str, int]) -> tuple:
    channels = int_list(name, channels)
    if not LEVELS[0] <= len(channels) <= LEVELS[1]:
        raise ValueError(f"{name} needs {LEVELS[0]} to {LEVELS[1]} levels, got {len(channels)}: {_shown(list(channels))}")
    for c in channels:
        _check_int(f"{name} entry", c, 1, MAX_CHANNELS)
        for div_name, div in divisors.items():
            if c % div:
                raise ValueError(f"{name} entry {c} is not divisible by {div_name}={div}")
    return channels


def _resnet_lower_bound(channels: tuple, convs_per_level: int, extra_convs_last: int) -> int:
    """Weights of the c -> c 3x3 convolutions alone: a lower bound of the whole network."""
    return 9 * (convs_per_level * sum(c * c for c in channels) + extra_convs_last * channels[-1] ** 2)


def _single_head_count(value: Any) -> int:
    """diffusers 0.11 ``attention_head_dim`` is the number of heads; lists must be uniform."""
    if isinstance(value, (list, tuple)):
        if len(set(map(repr, value))) != 1:
            raise ValueError(
                f"attention_head_dim={_shown(list(value))}: per-level head counts are not supported "
                "(Motion-I2V uses one head count, 8, at every level)"
            )
        value = value[0]
    return value


def _names(cfg: Mapping[str, Any], key: str) -> tuple:
    value = cfg.get(key) or ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list of block names such as [\"CrossAttnDownBlock2D\", ...], got {_shown(value)}")
    return tuple(value)


@dataclass(frozen=True)
class UNetConfig:
    """Inflated SD-style 3-D UNet (stage-1 flow UNet and stage-2 render UNet).

    ``attention_heads`` is diffusers-0.11's ``attention_head_dim``: the number of heads of every spatial
    attention (head dim = channels / heads). The motion-module fields mirror the official
    ``unet_additional_kwargs``; ``motion_module_norm_groups`` is hard-coded to 32 in the official code.
    """

    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    attention_heads: int = 8
    cross_attention_dim: int = 768
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    motion_module_heads: int = 8
    motion_module_pe_max_len: int = 32
    motion_module_norm_groups: int = 32
    stride_embedding: bool = False
    controlnet_conditioning_channels: int = 5
    # Width of the ControlNet condition stem; official hard default, independent of the UNet size.
    controlnet_conditioning_hidden: int = 512

    def __post_init__(self) -> None:
        for name, (lo, hi) in UNET_RANGES.items():
            _check_int(name, getattr(self, name), lo, hi)
        _check_number("norm_eps", self.norm_eps, 0.0, 1.0)
        _check_bool("flip_sin_to_cos", self.flip_sin_to_cos)
        _check_bool("stride_embedding", self.stride_embedding)
        channels = _check_channels(
            "block_out_channels",
            self.block_out_channels,
            {
                "norm_num_groups": self.norm_num_groups,
                "attention_heads": self.attention_heads,
                "motion_module_heads": self.motion_module_heads,
                "motion_module_norm_groups": self.motion_module_norm_groups,
            },
        )
        object.__setattr__(self, "block_out_channels", channels)
        if self.block_out_channels[0] % 2:
            raise ValueError(
                f"block_out_channels[0]={self.block_out_channels[0]} must be even (sinusoidal embedding width)"
            )

    def min_parameter_count(self) -> int:
        """A lower bound of the UNet's weights (its resnets' second convolutions: layers_per_block per
        level down, one more up, two in the mid block); the motion modules and attentions come on top."""
        return _resnet_lower_bound(self.block_out_channels, 2 * self.layers_per_block + 1, 2)

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.block_out_channels[0]

    def replace(self, **changes: Any) -> "UNetConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_diffusers(cls, config: Mapping[str, Any], **overrides: Any) -> "UNetConfig":
        """Read a diffusers ``UNet2DConditionModel`` config.json dict (0.11 semantics).

        Only the SD1.5 block layout (cross-attention down blocks + one plain down block, mirrored on the
        way up) is supported; other layouts raise ValueError.
        """
        cfg = dict(config)
        down = _names(cfg, "down_block_types")
        up = _names(cfg, "up_block_types")
        if down and (any(t not in _DOWN_CROSS for t in down[:-1]) or down[-1] not in _DOWN_PLAIN):
            raise ValueError(
                f"down_block_types={list(down)!r} is not the SD1.5 layout (CrossAttnDownBlock2D x N-1, DownBlock2D)"
            )
        if up and (up[0] not in _UP_PLAIN or any(t not in _UP_CROSS for t in up[1:])):
            raise ValueError(
                f"up_block_types={list(up)!r} is not the SD1.5 layout (UpBlock2D, CrossAttnUpBlock2D x N-1)"
            )
        if cfg.get("use_linear_projection", False):
            raise ValueError("use_linear_projection=True (SD2-style) is not supported: Motion-I2V uses 1x1 convs")
        if cfg.get("class_embed_type") is not None or cfg.get("num_class_embeds") is not None:
            raise ValueError("class embeddings are not supported by the Motion-I2V UNet")
        if cfg.get("act_fn", "silu") != "silu":
            raise ValueError(f"act_fn={cfg['act_fn']!r} is not supported (expected 'silu')")

        values: dict[str, Any] = {}
        mapping = {
            "in_channels": "in_channels",
            "out_channels": "out_channels",
            "layers_per_block": "layers_per_block",
            "cross_attention_dim": "cross_attention_dim",
            "norm_num_groups": "norm_num_groups",
            "norm_eps": "norm_eps",
            "flip_sin_to_cos": "flip_sin_to_cos",
            "freq_shift": "freq_shift",
        }
        for src, dst in mapping.items():
            if src in cfg:
                values[dst] = cfg[src]
        if "block_out_channels" in cfg:
            values["block_out_channels"] = int_list("block_out_channels", cfg["block_out_channels"])
            if down and len(down) != len(values["block_out_channels"]):
                raise ValueError(
                    f"down_block_types has {len(down)} entries but block_out_channels has "
                    f"{len(values['block_out_channels'])}"
                )
        if "attention_head_dim" in cfg:
            values["attention_heads"] = _single_head_count(cfg["attention_head_dim"])
        values.update(overrides)
        return cls(**values)

    @staticmethod
    def motion_overrides(unet_additional_kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Map the official ``unet_additional_kwargs`` (inference.yaml) to UNetConfig overrides.

        Raises ValueError for settings this implementation does not build (it always places one
        Vanilla motion module with two temporal self-attentions after every layer, mid block included).
        """
        kw = dict(unet_additional_kwargs)
        expect = {
            "use_inflated_groupnorm": True,
            "unet_use_cross_frame_attention": False,
            "unet_use_temporal_attention": False,
            "use_motion_module": True,
            "motion_module_mid_block": True,
            "motion_module_decoder_only": False,
            "motion_module_type": "Vanilla",
        }
        for key, want in expect.items():
            if key in kw and kw[key] != want:
                raise ValueError(f"unet_additional_kwargs.{key}={kw[key]!r} is not supported (expected {want!r})")
        if "motion_module_resolutions" in kw and sorted(kw["motion_module_resolutions"]) != [1, 2, 4, 8]:
            raise ValueError(
                f"unet_additional_kwargs.motion_module_resolutions={kw['motion_module_resolutions']!r} "
                "is not supported (expected [1, 2, 4, 8]: a motion module at every level)"
            )
        mm = dict(kw.get("motion_module_kwargs") or {})
        mm_expect = {
            "num_transformer_block": 1,
            "temporal_position_encoding": True,
            "temporal_attention_dim_div": 1,
        }
        for key, want in mm_expect.items():
            if key in mm and mm[key] != want:
                raise ValueError(f"motion_module_kwargs.{key}={mm[key]!r} is not supported (expected {want!r})")
        if "attention_block_types" in mm and list(mm["attention_block_types"]) != ["Temporal_Self", "Temporal_Self"]:
            raise ValueError(
                f"motion_module_kwargs.attention_block_types={mm['attention_block_types']!r} is not supported "
                "(expected ['Temporal_Self', 'Temporal_Self'])"
            )
        out: dict[str, Any] = {}
        if "num_attention_heads" in mm:
            out["motion_module_heads"] = mm["num_attention_heads"]
        if "temporal_position_encoding_max_len" in mm:
            out["motion_module_pe_max_len"] = mm["temporal_position_encoding_max_len"]
        return out

    @classmethod
    def sd15_flow(cls, **overrides: Any) -> "UNetConfig":
        """Stage-1 flow UNet at SD1.5 size: image latent ++ noisy flow latent in, flow eps out."""
        return cls(**{"in_channels": 8, "out_channels": 4, "stride_embedding": True, **overrides})

    @classmethod
    def sd15_render(cls, **overrides: Any) -> "UNetConfig":
        """Stage-2 render UNet at SD1.5 size."""
        return cls(**{"in_channels": 4, "out_channels": 4, "stride_embedding": False, **overrides})


@dataclass(frozen=True)
class VAEConfig:
    """SD-style KL autoencoder (flow VAE: 2 channels, image VAE: 3 channels)."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    scaling_factor: float = 0.18215

    def __post_init__(self) -> None:
        for name, (lo, hi) in VAE_RANGES.items():
            _check_int(name, getattr(self, name), lo, hi)
        channels = _check_channels("block_out_channels", self.block_out_channels, {"norm_num_groups": self.norm_num_groups})
        object.__setattr__(self, "block_out_channels", channels)
        _check_number("scaling_factor", self.scaling_factor, 0.0, 100.0)

    def min_parameter_count(self) -> int:
        """A lower bound of the VAE's weights (resnet second convolutions: layers_per_block per encoder
        level, one more per decoder level, two mid blocks of two each)."""
        return _resnet_lower_bound(self.block_out_channels, 2 * self.layers_per_block + 1, 4)

    def replace(self, **changes: Any) -> "VAEConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_diffusers(cls, config: Mapping[str, Any], **overrides: Any) -> "VAEConfig":
        """Read a diffusers ``AutoencoderKL`` config.json dict."""
        cfg = dict(config)
        if cfg.get("act_fn", "silu") != "silu":
            raise ValueError(f"act_fn={cfg['act_fn']!r} is not supported (expected 'silu')")
        values: dict[str, Any] = {}
        for key in ("in_channels", "out_channels", "latent_channels", "layers_per_block", "norm_num_groups",
                    "scaling_factor"):
            if key in cfg and cfg[key] is not None:
                values[key] = cfg[key]
        if "block_out_channels" in cfg:
            values["block_out_channels"] = int_list("block_out_channels", cfg["block_out_channels"])
        values.update(overrides)
        return cls(**values)

    @classmethod
    def sd15(cls, in_out_channels: int = 3, **overrides: Any) -> "VAEConfig":
        """SD1.5 KL-f8 VAE; ``in_out_channels=2`` gives the Motion-I2V flow VAE."""
        return cls(**{"in_channels": in_out_channels, "out_channels": in_out_channels, **overrides})
