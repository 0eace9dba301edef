"""The SD-1.5 UNet weights of a connected ComfyUI MODEL, its weight patches (LoRAs) applied, read on the CPU.

The MODEL is never moved to the GPU for this: each weight is taken in its unpatched form (the
patcher's backup when ComfyUI has patched it in place), copied to the CPU and patched there with
ComfyUI's own `comfy.lora.calculate_weight`, one tensor at a time. `model_fingerprint` names what
the weights depend on (the base model object and every patch with its strengths), so a loader can
skip the read when the same MODEL comes again.
"""

from __future__ import annotations

import numbers

import torch

import comfy.lora
import comfy.model_patcher

UNET_PREFIX = "diffusion_model."


def _identity(value) -> object:
    """A hashable stand-in for a patch value: tensors by storage, shape and dtype, numbers by value."""
    if isinstance(value, torch.Tensor):
        return ("tensor", value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape),
                str(value.dtype), str(value.device))
    if value is None or isinstance(value, (str, bool, numbers.Number)):
        return value
    if isinstance(value, (tuple, list)):
        return tuple(_identity(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _identity(v)) for k, v in value.items()))
    weights = getattr(value, "weights", None)  # comfy.weight_adapter adapters (LoRA, LoHa, ...)
    if weights is not None:
        return (type(value).__name__, _identity(weights))
    return (type(value).__name__, id(value))


def model_fingerprint(model) -> tuple:
    """What the patched UNet weights of `model` (a ComfyUI ModelPatcher) depend on.

    The patch values are identified by their tensors, so a LoRA loader run again with the same file
    and strengths gives the same fingerprint, while another strength or another file gives a new one.
    """
    patches = getattr(model, "patches", {}) or {}
    items = tuple(sorted(
        (key, tuple((float(p[0]), _identity(p[1]), float(p[2]), _identity(p[3:]))
                    for p in entries))
        for key, entries in patches.items() if key.startswith(UNET_PREFIX)
    ))
    return (id(model.model), items)


def read_patched_unet(model, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The UNet state dict of `model` in ComfyUI's LDM names (without `diffusion_model.`), patched, on the CPU.

    Patches are applied in float32 (as ComfyUI does) and each result is stored as `dtype`.
    """
    out = {}
    current = model.model_state_dict(filter_prefix=UNET_PREFIX)
    for key, tensor in current.items():
        backup = model.backup.get(key)  # the unpatched weight while ComfyUI has patched it in place
        weight = (backup.weight if backup is not None else tensor).detach()
        weight = weight.to(device="cpu", dtype=torch.float32, copy=True)
        patches = model.patches.get(key)
        if patches:
            _, _, convert = comfy.model_patcher.get_key_weight(model.model, key)
            if convert is not None:
                weight = convert(weight, inplace=True)
            weight = comfy.lora.calculate_weight(patches, weight, key)
        out[key[len(UNET_PREFIX):]] = weight.to(dtype)
    return out
