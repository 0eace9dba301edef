"""Numerical ops with pure-torch reference implementations.

One registry chooses the implementation of each op in one place, so a GPU kernel can be swapped in
(``set_op``) without touching the models. Defaults are resolved lazily, on first use. ``forward_splat``
and ``motion_augmented_attention`` default to the dispatchers of ``ops.backends``: Triton kernels on
CUDA when triton imports, else exactly the pure-torch reference (``backends.set_backend`` /
``MI2V_OPS_BACKEND`` = auto | torch | triton).
"""

from __future__ import annotations

import importlib
from typing import Callable, Optional

from motion_i2v_core.ops.motion_attention import motion_augmented_attention, multihead_attention, warp_source_index

_DEFAULTS = {
    "forward_splat": "motion_i2v_core.ops.backends:forward_splat",
    "multihead_attention": "motion_i2v_core.ops.motion_attention:multihead_attention",
    "motion_augmented_attention": "motion_i2v_core.ops.backends:motion_augmented_attention",
}
_overrides: dict[str, Callable] = {}
_resolved: dict[str, Callable] = {}


def get_op(name: str) -> Callable:
    """Current implementation of op ``name`` (an override if set, else the pure-torch default)."""
    if name in _overrides:
        return _overrides[name]
    if name not in _resolved:
        if name not in _DEFAULTS:
            raise KeyError(f"unknown op {name!r}; known ops: {sorted(_DEFAULTS)}")
        module_name, attr = _DEFAULTS[name].split(":")
        _resolved[name] = getattr(importlib.import_module(module_name), attr)
    return _resolved[name]


def set_op(name: str, fn: Optional[Callable]) -> None:
    """Replace op ``name`` by ``fn`` (same signature); ``None`` restores the default."""
    if name not in _DEFAULTS:
        raise KeyError(f"unknown op {name!r}; known ops: {sorted(_DEFAULTS)}")
    if fn is None:
        _overrides.pop(name, None)
    else:
        _overrides[name] = fn


__all__ = ["get_op", "set_op", "motion_augmented_attention", "multihead_attention", "warp_source_index"]
