"""Layer namespaces ("operations") the networks are built from, and the compute-dtype rule.

Every network module takes ``dtype=None, device=None, operations=torch_ops`` and builds its layers as
``operations.Linear(..., dtype=dtype, device=device)`` (likewise ``Conv2d``, ``Conv3d``, ``GroupNorm``,
``LayerNorm``), handing all three on to its children, as ComfyUI's own UNet does. ``dtype`` is the storage
dtype of the weights, ``device`` where they are created (``"meta"`` builds without memory).

An operations namespace is any object (a class is enough) with those five attributes, each a subclass of the
``torch.nn`` layer of the same name with its constructor and parameter names, so state-dict keys never depend
on the namespace:

- ``torch_ops`` (default): the plain ``torch.nn`` layers; weights are used as stored.
- ``cast_ops``: every call casts the layer's weight and bias to the input's dtype and device. Weights can
  then be stored in a dtype torch cannot compute in (``torch.float8_e4m3fn``) or on another device, and the
  network computes in its ``compute_dtype`` (see ``resolve_compute_dtype``).
- ComfyUI's ``comfy.ops.disable_weight_init`` / ``comfy.ops.manual_cast`` (what the nodes pass): the same
  contract, plus ComfyUI's partial loading and run-time weight patches (LoRA in low-VRAM mode).

A namespace may also define ``cast_weight(layer, like) -> Tensor``: the weight of ``layer`` exactly as its
forward would use it for the input ``like``. The stage-2 motion attention hands raw projection weights to a
fused op, so it asks the namespace for them (``weight_caster``); without the attribute the weight is cast with
``.to(like)``, which is right for both core namespaces. A ComfyUI namespace should define it with
``comfy.ops.cast_bias_weight(layer, like)[0]`` so that run-time patches apply there too.

Example (fp8 weights, bf16 compute, core only)::

    unet = RenderUNet(cfg, dtype=torch.float8_e4m3fn, operations=cast_ops, compute_dtype=torch.bfloat16)
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

# Dtypes that store weights but that torch kernels do not compute in.
STORAGE_ONLY_DTYPES = frozenset(
    getattr(torch, name) for name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
    if hasattr(torch, name)
)


class torch_ops:
    """Plain ``torch.nn`` layers (the default namespace)."""

    Linear = nn.Linear
    Conv2d = nn.Conv2d
    Conv3d = nn.Conv3d
    GroupNorm = nn.GroupNorm
    LayerNorm = nn.LayerNorm


def cast_weight(layer: nn.Module, like: torch.Tensor) -> torch.Tensor:
    """``layer.weight`` in the dtype and on the device of ``like`` (no copy when they already match)."""
    return layer.weight.to(device=like.device, dtype=like.dtype)


def weight_caster(operations) -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    """The namespace's ``cast_weight`` if it has one, else ``cast_weight`` above."""
    return getattr(operations, "cast_weight", cast_weight)


def _cast_params(layer: nn.Module, x: torch.Tensor):
    weight = None if layer.weight is None else cast_weight(layer, x)
    bias = None if layer.bias is None else layer.bias.to(device=x.device, dtype=x.dtype)
    return weight, bias


class _StorageInit:
    """``reset_parameters`` that also works for float8 storage (torch cannot draw random float8 numbers):
    the initialisation runs on float32 copies that are then stored in the layer's dtype."""

    def reset_parameters(self) -> None:
        params = list(self.parameters(recurse=False))
        if not any(p.dtype in STORAGE_ONLY_DTYPES for p in params):
            return super().reset_parameters()
        stored = [p.dtype for p in params]
        for p in params:
            p.data = p.data.float()
        super().reset_parameters()
        for p, dtype in zip(params, stored):
            p.data = p.data.to(dtype)


class cast_ops:
    """Layers whose weights are cast to the input's dtype and device at every call (fp8 storage, offload)."""

    class Linear(_StorageInit, nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.linear(x, *_cast_params(self, x))

    class Conv2d(_StorageInit, nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self._conv_forward(x, *_cast_params(self, x))

    class Conv3d(_StorageInit, nn.Conv3d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self._conv_forward(x, *_cast_params(self, x))

    class GroupNorm(_StorageInit, nn.GroupNorm):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.group_norm(x, self.num_groups, *_cast_params(self, x), self.eps)

    class LayerNorm(_StorageInit, nn.LayerNorm):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.layer_norm(x, self.normalized_shape, *_cast_params(self, x), self.eps)


def resolve_compute_dtype(weight_dtype: torch.dtype, compute_dtype: Optional[torch.dtype]) -> torch.dtype:
    """The dtype a network computes in: ``compute_dtype`` if set, else that of its weights.

    Weights stored in float8 need an explicit compute dtype (and a casting namespace such as ``cast_ops``).
    """
    if compute_dtype is not None:
        if compute_dtype in STORAGE_ONLY_DTYPES:
            raise ValueError(f"compute_dtype={compute_dtype} only stores weights: use torch.float16 or torch.bfloat16")
        return compute_dtype
    if weight_dtype in STORAGE_ONLY_DTYPES:
        raise ValueError(
            f"the weights are stored in {weight_dtype}, which torch cannot compute in: build the network with "
            "compute_dtype=torch.float16 or torch.bfloat16 (and a casting operations namespace, e.g. cast_ops)"
        )
    return weight_dtype
