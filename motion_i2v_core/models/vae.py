"""KL autoencoder (the SD-1.5 "KL-f8" VAE) with diffusers-0.11 parameter names.

Used three times in Motion-I2V: the 2-channel flow VAE of stage 1, the 3-channel image VAE of
stage 1 and the stage-2 VAE. The official files use the *old* diffusers attention names
(`mid_block.attentions.0.{group_norm,query,key,value,proj_attn}`), so those are the module names
here; files with the newer names (`to_q/to_k/to_v/to_out.0`) are renamed on load
(`rename_attention_keys`).

Images are (N, C, H, W); callers encode / decode video frame by frame. Every module takes
``dtype``, ``device`` and ``operations`` (the layer namespace, see ``models.operations``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from motion_i2v_core.models.config import VAEConfig
from motion_i2v_core.models.operations import torch_ops

VAE_NORM_EPS = 1e-6  # diffusers' VAE blocks use 1e-6 everywhere (not the UNet's 1e-5)
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


class DiagonalGaussian:
    """Posterior N(mean, exp(logvar)) of the encoder; logvar clamped to [-30, 20] as diffusers does."""

    def __init__(self, moments: torch.Tensor):
        self.mean, logvar = torch.chunk(moments, 2, dim=1)
        self.logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * noise. Pass `noise` to reproduce a recorded draw."""
        if noise is None:
            noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype,
                                device=self.mean.device if generator is None else generator.device)
            noise = noise.to(self.mean.device)
        if noise.shape != self.mean.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} does not match the posterior {tuple(self.mean.shape)}")
        return self.mean + self.std * noise.to(self.mean.dtype)

    def mode(self) -> torch.Tensor:
        return self.mean


def _group_norm(channels: int, groups: int, dtype, device, operations) -> nn.GroupNorm:
    return operations.GroupNorm(groups, channels, eps=VAE_NORM_EPS, affine=True, dtype=dtype, device=device)


class ResnetBlock2D(nn.Module):
    """GN-SiLU-conv twice plus a 1x1 shortcut when the width changes (no time embedding in a VAE)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, dtype=None, device=None,
                 operations=torch_ops):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        ops = operations
        self.norm1 = _group_norm(in_channels, groups, operations=ops, **kw)
        self.conv1 = ops.Conv2d(in_channels, out_channels, 3, padding=1, **kw)
        self.norm2 = _group_norm(out_channels, groups, operations=ops, **kw)
        self.conv2 = ops.Conv2d(out_channels, out_channels, 3, padding=1, **kw)
        self.conv_shortcut = (ops.Conv2d(in_channels, out_channels, 1, **kw)
                              if in_channels != out_channels else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return h.add_(skip)  # == skip + h bitwise, without another full-size temporary


class AttentionBlock(nn.Module):
    """Single-head self-attention over the H*W positions (old diffusers `AttentionBlock` names)."""

    def __init__(self, channels: int, groups: int, dtype=None, device=None, operations=torch_ops):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        self.group_norm = _group_norm(channels, groups, operations=operations, **kw)
        self.query = operations.Linear(channels, channels, **kw)
        self.key = operations.Linear(channels, channels, **kw)
        self.value = operations.Linear(channels, channels, **kw)
        self.proj_attn = operations.Linear(channels, channels, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        tokens = self.group_norm(x).reshape(n, c, h * w).transpose(1, 2)  # (n, hw, c)
        q, k, v = self.query(tokens), self.key(tokens), self.value(tokens)
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(c))
        out = self.proj_attn(out)
        # contiguous NCHW: a channels-last-strided residual would send later GroupNorms down a
        # less accurate CPU kernel (see parity README, run-time substitution 4)
        return out.transpose(1, 2).reshape(n, c, h, w).contiguous().add_(x)


class MidBlock2D(nn.Module):
    def __init__(self, channels: int, groups: int, dtype=None, device=None, operations=torch_ops):
        super().__init__()
        kw = dict(dtype=dtype, device=device, operations=operations)
        # registration order = official key order: attentions before resnets
        self.attentions = nn.ModuleList([AttentionBlock(channels, groups, **kw)])
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, groups, **kw),
                                      ResnetBlock2D(channels, channels, groups, **kw)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        x = self.attentions[0](x)
        return self.resnets[1](x)


class Downsample2D(nn.Module):
    """Asymmetric zero pad (right, bottom) then 3x3 stride-2 conv without padding."""

    def __init__(self, channels: int, dtype=None, device=None, operations=torch_ops):
        super().__init__()
        self.conv = operations.Conv2d(channels, channels, 3, stride=2, padding=0, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2D(nn.Module):
    """Nearest x2 then 3x3 conv."""

    def __init__(self, channels: int, dtype=None, device=None, operations=torch_ops):
        super().__init__()
        self.conv = operations.Conv2d(channels, channels, 3, padding=1, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.bfloat16:  # nearest upsampling has no bf16 kernel on some backends
            x = F.interpolate(x.float(), scale_factor=2.0, mode="nearest").to(torch.bfloat16)
        else:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x)


class _ResnetStack(nn.Module):
    """``num_layers`` ResNets, then (``add_resampler``) the block's resampler under its official name."""

    resampler_name: str
    resampler_class: type

    def __init__(self, in_channels, out_channels, num_layers, groups, add_resampler, dtype=None, device=None,
                 operations=torch_ops):
        super().__init__()
        kw = dict(dtype=dtype, device=device, operations=operations)
        self.resnets = nn.ModuleList([
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, groups, **kw)
            for i in range(num_layers)])
        resampler = nn.ModuleList([self.resampler_class(out_channels, **kw)]) if add_resampler else None
        setattr(self, self.resampler_name, resampler)

    def forward(self, x):
        for resnet in self.resnets:
            x = resnet(x)
        resampler = getattr(self, self.resampler_name)
        return x if resampler is None else resampler[0](x)


class DownEncoderBlock2D(_ResnetStack):
    resampler_name, resampler_class = "downsamplers", Downsample2D


class UpDecoderBlock2D(_ResnetStack):
    resampler_name, resampler_class = "upsamplers", Upsample2D


class Encoder(nn.Module):
    """conv_in -> down blocks -> mid block -> GN, SiLU -> conv_out to mean + logvar."""

    def __init__(self, cfg: VAEConfig, dtype=None, device=None, operations=torch_ops):
        super().__init__()
        kw = dict(dtype=dtype, device=device, operations=operations)
        chans, groups = list(cfg.block_out_channels), cfg.norm_num_groups
        self.conv_in = operations.Conv2d(cfg.in_channels, chans[0], 3, padding=1, dtype=dtype, device=device)
        self.down_blocks = nn.ModuleList([
            DownEncoderBlock2D(chans[max(i - 1, 0)], ch, cfg.layers_per_block, groups, i < len(chans) - 1, **kw)
            for i, ch in enumerate(chans)])
        self.mid_block = MidBlock2D(chans[-1], groups, **kw)
        self.conv_norm_out = _group_norm(chans[-1], groups, **kw)
        self.conv_out = operations.Conv2d(chans[-1], 2 * cfg.latent_channels, 3, padding=1, dtype=dtype, device=device)

    def forward(self, x):
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x), inplace=True))


class Decoder(nn.Module):
    """conv_in -> mid block -> up blocks (one more resnet each than the encoder's) -> GN, SiLU -> conv_out."""

    def __init__(self, cfg: VAEConfig, dtype=None, device=None, operations=torch_ops):
        super().__init__()
        kw = dict(dtype=dtype, device=device, operations=operations)
        rev, groups = list(reversed(cfg.block_out_channels)), cfg.norm_num_groups
        self.conv_in = operations.Conv2d(cfg.latent_channels, rev[0], 3, padding=1, dtype=dtype, device=device)
        self.up_blocks = nn.ModuleList([
            UpDecoderBlock2D(rev[max(i - 1, 0)], ch, cfg.layers_per_block + 1, groups, i < len(rev) - 1, **kw)
            for i, ch in enumerate(rev)])
        self.mid_block = MidBlock2D(rev[0], groups, **kw)
        self.conv_norm_out = _group_norm(rev[-1], groups, **kw)
        self.conv_out = operations.Conv2d(rev[-1], cfg.out_channels, 3, padding=1, dtype=dtype, device=device)

    def forward(self, z):
        x = self.conv_in(z)
        x = self.mid_block(x)
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x), inplace=True))


class AutoencoderKL(nn.Module):
    """diffusers-0.11 `AutoencoderKL` (state-dict compatible), shaped by a VAEConfig (or by its
    fields as keywords: `AutoencoderKL(in_channels=2, out_channels=2, ...)`).

    No latent scaling inside: callers multiply by `scaling_factor` (0.18215) where the official code does.
    """

    def __init__(self, cfg: VAEConfig | None = None, dtype=None, device=None, operations=torch_ops, **shape):
        super().__init__()
        if cfg is None:
            cfg = VAEConfig(**shape)
        elif shape:
            raise TypeError("pass either cfg or keyword shape arguments, not both")
        self.config = cfg
        kw = dict(dtype=dtype, device=device, operations=operations)
        layer = dict(dtype=dtype, device=device)
        self.encoder = Encoder(cfg, **kw)
        self.decoder = Decoder(cfg, **kw)
        self.quant_conv = operations.Conv2d(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1, **layer)
        self.post_quant_conv = operations.Conv2d(cfg.latent_channels, cfg.latent_channels, 1, **layer)

    @classmethod
    def from_config(cls, config: Mapping | VAEConfig, dtype=None, device=None,
                    operations=torch_ops) -> "AutoencoderKL":
        """Build from a diffusers `vae/config.json` dict (or a VAEConfig)."""
        if isinstance(config, Mapping):
            config = VAEConfig.from_diffusers(config)
        return cls(config, dtype=dtype, device=device, operations=operations)

    @property
    def scaling_factor(self) -> float:
        return self.config.scaling_factor

    @property
    def downscale_factor(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"VAE.encode expects (N, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        f = self.downscale_factor
        if x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(f"VAE.encode: height and width must be multiples of {f}, got {tuple(x.shape[-2:])}")
        # contiguous NCHW: channels-last input reaches a less accurate CPU GroupNorm kernel
        moments = self.quant_conv(self.encoder(x.contiguous()))
        return DiagonalGaussian(moments)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 4 or z.shape[1] != self.config.latent_channels:
            raise ValueError(f"VAE.decode expects (N, {self.config.latent_channels}, h, w), got {tuple(z.shape)}")
        return self.decoder(self.post_quant_conv(z.contiguous()))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        posterior = self.encode(x)
        return self.decode(posterior.sample(noise) if noise is not None else posterior.mean)


# new diffusers attention names -> old (the names of this module)
_NEW_TO_OLD_ATTENTION = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def attention_key_style(sd: Mapping[str, Any]) -> str:
    """'old' (query/key/value/proj_attn), 'new' (to_q/... ), 'mixed' or 'none' for a VAE state dict."""
    old = any(".mid_block.attentions.0.query." in k or ".mid_block.attentions.0.proj_attn." in k for k in sd)
    new = any(".mid_block.attentions.0.to_q." in k or ".mid_block.attentions.0.to_out.0." in k for k in sd)
    return {(True, False): "old", (False, True): "new", (True, True): "mixed"}.get((old, new), "none")


def rename_attention_keys(sd: Mapping[str, Any]) -> tuple[dict, str]:
    """Rename new-style VAE mid-block attention keys to the old names used here.

    Returns (state_dict, style found). Newer diffusers also stores `group_norm` under the same
    name, so only the four projections change. 4-D (1x1 conv) projection weights are flattened.
    """
    style = attention_key_style(sd)
    if style != "new":
        return dict(sd), style
    out = {}
    for key, value in sd.items():
        new_key = key
        if ".mid_block.attentions.0." in key:
            head, tail = key.split(".mid_block.attentions.0.", 1)
            for new, old in _NEW_TO_OLD_ATTENTION.items():
                if tail.startswith(new + "."):
                    tail = old + tail[len(new):]
                    if tail.endswith(".weight") and getattr(value, "ndim", 2) == 4:
                        value = value.reshape(value.shape[0], value.shape[1])
                    break
            new_key = f"{head}.mid_block.attentions.0.{tail}"
        out[new_key] = value
    return out, style
