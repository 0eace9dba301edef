"""ComfyUI's layer classes for the core's networks (the `operations` namespace of motion_i2v_core.models).

With them ComfyUI can load a module partially (--lowvram, or when memory is short) and cast the
offloaded or fp8-stored weights at run time, as it does for its own models. This module imports
only ComfyUI's comfy.ops / comfy.model_management and the core, so tests can load it on its own.
"""

from __future__ import annotations

import torch

import comfy.model_management as mm
import comfy.ops

from motion_i2v_core.loading.official import LayerOptions


class _ComfyCastWeight:
    """The cast hook the core's fused motion attention uses for raw projection weights: ComfyUI's own
    cast, so offloaded weights and run-time patches (LoRA in low-VRAM mode) apply there too."""

    @staticmethod
    def cast_weight(layer, like):
        return comfy.ops.cast_bias_weight(layer, like)[0]


_OPERATIONS: dict = {}


def comfy_layers(weight_dtype: torch.dtype, compute_dtype: torch.dtype) -> LayerOptions:
    """ComfyUI's layer classes, picked as ComfyUI picks them for its own models (comfy.ops.pick_operations):
    disable_weight_init when the weights compute in their own dtype, manual_cast when they are cast (fp8).
    Both let ComfyUI load a module partially and cast the offloaded weights at run time."""
    base = comfy.ops.pick_operations(weight_dtype, compute_dtype, load_device=mm.get_torch_device())
    if base not in _OPERATIONS:
        _OPERATIONS[base] = type(f"MotionI2V{base.__name__}", (_ComfyCastWeight, base), {})
    return LayerOptions(operations=_OPERATIONS[base], compute_dtype=compute_dtype)
