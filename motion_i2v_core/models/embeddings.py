"""Timestep / stride sinusoids, the 2-layer embedding MLP, and the temporal position table."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from motion_i2v_core.models.operations import STORAGE_ONLY_DTYPES, torch_ops


def timestep_sinusoid(
    values: torch.Tensor,
    dim: int,
    flip_sin_to_cos: bool = True,
    freq_shift: float = 0.0,
    max_period: float = 10000.0,
) -> torch.Tensor:
    """Sinusoidal embedding of 1-D ``values`` -> float32 ``(N, dim)`` (diffusers-0.11 ``Timesteps``).

    ``freq_j = exp(-ln(max_period) * j / (dim/2 - freq_shift))``; the halves are ``[sin, cos]``, or
    ``[cos, sin]`` with ``flip_sin_to_cos``. Always computed in float32; callers cast to the model dtype.
    """
    if values.ndim != 1:
        raise ValueError(f"timestep_sinusoid expects a 1-D tensor, got shape {tuple(values.shape)}")
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=values.device)
    freqs = torch.exp(exponent / (half - freq_shift))
    args = values.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    """``linear_1`` -> SiLU -> ``linear_2`` (used for the time and the stage-1 stride embedding).

    The input arrives in the compute dtype (callers cast the float32 sinusoid)."""

    def __init__(self, in_dim: int, out_dim: int, dtype=None, device=None, operations=torch_ops):
        super().__init__()
        self.linear_1 = operations.Linear(in_dim, out_dim, dtype=dtype, device=device)
        self.linear_2 = operations.Linear(out_dim, out_dim, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


def temporal_position_table(channels: int, max_len: int, device=None) -> torch.Tensor:
    """Interleaved sin/cos table ``(1, max_len, channels)``: pe[p, 2m] = sin(p w_m), pe[p, 2m+1] = cos(p w_m),
    w_m = exp(-2m ln(10000) / channels). Float32."""
    position = torch.arange(max_len, dtype=torch.float32, device=device)[:, None]
    omega = torch.exp(
        torch.arange(0, channels, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / channels)
    )
    table = torch.zeros(1, max_len, channels, dtype=torch.float32, device=device)
    table[0, :, 0::2] = torch.sin(position * omega)
    table[0, :, 1::2] = torch.cos(position * omega)
    return table


class PositionalEncoding(nn.Module):
    """Holds the temporal PE table as the persistent buffer ``pe`` (it is part of official checkpoints).

    The table follows ``dtype`` except for float8 storage, where it stays float32 (it is tiny and added
    to activations, so rounding it to 3 mantissa bits would only lose accuracy)."""

    def __init__(self, channels: int, max_len: int = 32, dtype=None, device=None):
        super().__init__()
        if dtype in STORAGE_ONLY_DTYPES:
            dtype = torch.float32
        if device is not None and torch.device(device).type == "meta":
            table = torch.empty(1, max_len, channels, device="meta", dtype=dtype or torch.float32)
        else:
            table = temporal_position_table(channels, max_len, device=device)
            if dtype is not None:
                table = table.to(dtype)
        self.register_buffer("pe", table, persistent=True)

    @property
    def max_len(self) -> int:
        return self.pe.shape[1]

    def table(self, like: torch.Tensor) -> torch.Tensor:
        """``pe`` on ``like``'s device: a host that loads modules partially (ComfyUI's low-VRAM mode) moves
        only layers with parameters, so this buffer can stay on the offload device."""
        return self.pe.to(device=like.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add rows ``0..T-1`` to ``x (..., T, C)``."""
        length = x.shape[-2]
        if length > self.max_len:
            raise ValueError(
                f"temporal sequence of length {length} exceeds the position table ({self.max_len} rows)"
            )
        return x + self.table(x)[0, :length].to(x.dtype)


def batch_timesteps(timestep, batch: int, device) -> torch.Tensor:
    """A scalar / 0-d / (1,) / (B,) timestep -> 1-D tensor of length ``batch``."""
    t = torch.as_tensor(timestep, device=device)
    if t.ndim == 0:
        t = t[None]
    if t.ndim != 1 or t.shape[0] not in (1, batch):
        raise ValueError(f"timestep must be a scalar or have shape (1,) or ({batch},), got {tuple(t.shape)}")
    return t.expand(batch)


def batch_stride(stride, batch: int, frames: int, device) -> torch.Tensor:
    """Stage-1 frame offsets ``(B0, F)`` (or ``(F,)``) repeated along the batch -> ``(B, F)``."""
    s = torch.as_tensor(stride, device=device)
    if s.ndim == 1:
        s = s[None]
    if s.ndim != 2 or s.shape[1] != frames or batch % s.shape[0]:
        raise ValueError(
            f"stride must have shape (B0, {frames}) with B0 dividing the batch {batch}, got {tuple(s.shape)}"
        )
    return s.repeat(batch // s.shape[0], 1)


def time_and_stride_embedding(
    time_embedding: TimestepEmbedding,
    stride_embedding: TimestepEmbedding,
    timesteps: torch.Tensor,
    stride: torch.Tensor,
    dim: int,
    flip_sin_to_cos: bool,
    freq_shift: float,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Stage-1 per-frame embedding ``(B, F, D)``: time MLP of t (broadcast) + stride MLP of each frame offset,
    computed in ``dtype``."""
    batch, frames = stride.shape
    t_emb = time_embedding(timestep_sinusoid(timesteps, dim, flip_sin_to_cos, freq_shift).to(dtype))
    s_emb = stride_embedding(timestep_sinusoid(stride.reshape(-1), dim, flip_sin_to_cos, freq_shift).to(dtype))
    return t_emb[:, None] + s_emb.reshape(batch, frames, -1)
