"""Numerical ops behind one registry (``ops.registry``), with pure-torch references always present.

Backends registered here:

- ``"torch"``: the exact references (``ops.splat``, ``ops.motion_attention``, ``ops.flow_resize``);
- ``"triton"``: the kernels (``ops.triton_splat``, ``ops.triton_attention``), registered when the triton
  package is installed and imported on first use; "auto" picks them for CUDA tensors;
- ``"naive"``: the official code's way of computing (``ops.naive``), the benchmark's baseline.

Select with ``MI2V_OPS_BACKEND`` = auto (default) | torch | triton | naive, ``set_backend`` or
``use_backend``; models call ``get_op(name)``.
"""

from __future__ import annotations

import importlib.util

from motion_i2v_core.ops import flow_resize, motion_attention, naive, splat
from motion_i2v_core.ops.registry import (
    ENV_VAR,
    backend_names,
    get_backend,
    get_op,
    implementation,
    register,
    set_backend,
    status,
    unregister,
    use_backend,
)
from motion_i2v_core.ops.registry import mark_unavailable as _mark_unavailable

_OPS = ("forward_splat", "multihead_attention", "motion_augmented_attention", "resize_flow")
for _module, _op in zip((splat, motion_attention, motion_attention, flow_resize), _OPS):
    register(_op, "torch", getattr(_module, _op))
for _op in _OPS:
    register(_op, "naive", getattr(naive, _op), auto=False)


def _on_cuda(x, flow, *args, **kwargs) -> bool:
    """"auto" runs a kernel only when its input and flow tensors are on CUDA."""
    return x.is_cuda and flow.is_cuda


if importlib.util.find_spec("triton") is not None:
    register("forward_splat", "triton", "motion_i2v_core.ops.triton_splat:forward_splat_triton", applies=_on_cuda)
    register("motion_augmented_attention", "triton",
             "motion_i2v_core.ops.triton_attention:motion_augmented_attention_triton", applies=_on_cuda)
    # Explicit "triton" only: SDPA stays the attention step under "auto" until a GPU shows the kernel faster.
    register("multihead_attention", "triton", "motion_i2v_core.ops.triton_attention:multihead_attention_triton",
             auto=False)
else:
    _mark_unavailable("triton", "the triton package is not installed; `pip install triton` (needs a CUDA GPU), "
                                "or use backend 'auto' or 'torch'")

__all__ = ["ENV_VAR", "backend_names", "get_backend", "get_op", "implementation", "register", "set_backend",
           "status", "unregister", "use_backend"]
