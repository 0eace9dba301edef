"""What a state dict is, and a strict check of a state dict against a module with a short summary.

A wrong, truncated or mismatched file must give one readable `CheckpointError` that names the file,
says what the file looks like and what was expected, and summarises missing / unexpected /
mis-shaped keys (counts + a few examples per top-level prefix), never a dump of thousands of keys.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

PE_SUFFIX = "pos_encoder.pe"
MAX_MESSAGE = 1400  # characters; keeps errors readable in a UI toast


class CheckpointError(ValueError):
    """A weight file is missing, unreadable, unsafe, or does not fit the model it is loaded into."""


def is_pe_key(key: str) -> bool:
    """Temporal position-encoding buffers: a deterministic constant, may be absent from files."""
    return key.endswith(PE_SUFFIX)


# ------------------------------------------------------------------------------------------------
# identification


def _has(sd: Mapping, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in sd)


def _contains(sd: Mapping, part: str) -> bool:
    return any(part in k for k in sd)


def _shape(sd: Mapping, key: str):
    v = sd.get(key)
    return tuple(v.shape) if v is not None and hasattr(v, "shape") else None


def identify_state_dict(sd: Mapping[str, torch.Tensor]) -> tuple[str, str]:
    """Guess what `sd` holds from its key names and a few shapes.

    Returns (kind, description). Kinds: 'ldm_checkpoint', 'ldm_unet', 'ldm_vae', 'flow_unet',
    'flow_unet_with_controlnet', 'controlnet', 'controlnet_unprefixed', 'sd_unet', 'sd_unet_3d',
    'motion_module', 'vae', 'text_encoder', 'lora', 'empty', 'unknown'.
    """
    n = len(sd)
    if n == 0:
        return "empty", "an empty state dict"
    keys = list(sd)
    if _has(sd, "model.diffusion_model.") or _has(sd, "first_stage_model."):
        parts = [p for p, name in (("model.diffusion_model.", "UNet"), ("first_stage_model.", "VAE"),
                                   ("cond_stage_model.", "text encoder")) if _has(sd, p)]
        return "ldm_checkpoint", (f"a single-file Stable Diffusion checkpoint in original LDM naming "
                                  f"({', '.join(parts)}; {n} tensors)")
    if _contains(sd, "lora_") or _contains(sd, ".lora."):
        return "lora", f"a LoRA file ({n} tensors), not full model weights"
    if _has(sd, "text_model.") or _has(sd, "transformer.text_model."):
        return "text_encoder", f"a CLIP text encoder ({n} tensors)"
    if _has(sd, "input_blocks.") or _has(sd, "diffusion_model.input_blocks."):
        return "ldm_unet", f"a Stable Diffusion UNet in original LDM naming (input_blocks...; {n} tensors)"
    if _has(sd, "encoder.down.") or _has(sd, "decoder.up."):
        return "ldm_vae", f"a VAE in original LDM naming (encoder.down...; {n} tensors)"
    if _has(sd, "encoder.down_blocks.") or _has(sd, "decoder.up_blocks."):
        cin = _shape(sd, "encoder.conv_in.weight")
        cout = _shape(sd, "decoder.conv_out.weight")
        chans = f"{cin[1] if cin else '?'} -> {cout[0] if cout else '?'} channels"
        what = "flow VAE" if cin and cin[1] == 2 else "image VAE" if cin and cin[1] == 3 else "VAE"
        from motion_i2v_core.models.vae import attention_key_style
        article = "an" if what[0] in "aeiou" else "a"
        return "vae", f"{article} {what} (AutoencoderKL, diffusers names, {chans}, {attention_key_style(sd)} attention names)"
    motion = [k for k in keys if ".motion_modules." in k]
    ctrl_pref = [k for k in keys if k.startswith("controlnet.")]
    if ctrl_pref and len(ctrl_pref) == n:
        return "controlnet", f"a ControlNet overlay (every key prefixed 'controlnet.'; {n} tensors)"
    if _has(sd, "controlnet_cond_embedding.") or _has(sd, "controlnet_down_blocks."):
        return "controlnet_unprefixed", f"a ControlNet without the 'controlnet.' prefix ({n} tensors)"
    if motion and len(motion) == n:
        return "motion_module", f"a motion-module file (only *.motion_modules.* keys; {n} tensors)"
    if _has(sd, "conv_in.") or _has(sd, "down_blocks."):
        cin = _shape(sd, "conv_in.weight")
        chans = f"in_channels {cin[1]}" if cin else "no conv_in"
        if _has(sd, "stride_embedding."):
            extra = ", with ControlNet" if ctrl_pref else ""
            kind = "flow_unet_with_controlnet" if ctrl_pref else "flow_unet"
            return kind, f"a Motion-I2V stage-1 flow UNet (stride embedding, {chans}{extra}; {n} tensors)"
        if motion:
            return "sd_unet_3d", f"a 3-D (AnimateDiff-style) UNet with motion modules (diffusers names, {chans}; {n} tensors)"
        return "sd_unet", f"a 2-D Stable Diffusion UNet (diffusers names, {chans}; {n} tensors)"
    return "unknown", f"an unrecognised state dict ({n} tensors, e.g. {', '.join(keys[:3])})"


# ------------------------------------------------------------------------------------------------
# strict comparison


def _group_key(key: str) -> str:
    parts = key.split(".")
    # one level deeper under containers so the groups say something (encoder.down_blocks, ...)
    if parts[0] in ("encoder", "decoder", "controlnet") and len(parts) > 2:
        return ".".join(parts[:2])
    return parts[0]


def summarize_keys(keys: Iterable[str], max_groups: int = 4, per_group: int = 2) -> str:
    """'N keys: group (count): ex1, ex2; group2 (count): ...' in at most a few lines."""
    keys = list(keys)
    groups: "OrderedDict[str, list[str]]" = OrderedDict()
    for k in keys:
        groups.setdefault(_group_key(k), []).append(k)
    lines = []
    for g, ks in list(groups.items())[:max_groups]:
        ex = ", ".join(ks[:per_group]) + (", ..." if len(ks) > per_group else "")
        lines.append(f"    {g} ({len(ks)}): {ex}")
    if len(groups) > max_groups:
        rest = sum(len(v) for v in list(groups.values())[max_groups:])
        lines.append(f"    ... and {rest} more in {len(groups) - max_groups} other groups")
    return "\n".join(lines)


def compare_state_dict(sd: Mapping[str, torch.Tensor], expected: Mapping[str, tuple],
                       optional: Callable[[str], bool] = is_pe_key):
    """-> (missing, unexpected, mis-shaped [(key, file_shape, expected_shape)])."""
    missing = [k for k in expected if k not in sd and not optional(k)]
    unexpected = [k for k in sd if k not in expected]
    mis = [(k, tuple(sd[k].shape), tuple(expected[k])) for k in expected
           if k in sd and tuple(sd[k].shape) != tuple(expected[k])]
    return missing, unexpected, mis


def expected_shapes(module: nn.Module) -> "OrderedDict[str, tuple]":
    """Key -> shape of a module's state dict (works on the meta device)."""
    return OrderedDict((k, tuple(v.shape)) for k, v in module.state_dict().items())


def format_mismatch(file: str, expected_what: str, sd: Mapping, missing: list, unexpected: list,
                    mis: list, hint: str | None = None) -> str:
    """The one error message for a state dict that does not fit (short by construction)."""
    _, looks = identify_state_dict(sd)
    lines = [f"{file}: does not fit the {expected_what}.", f"  The file looks like {looks}."]
    if missing:
        lines.append(f"  Missing {len(missing)} keys:")
        lines.append(summarize_keys(missing))
    if unexpected:
        lines.append(f"  Unexpected {len(unexpected)} keys:")
        lines.append(summarize_keys(unexpected))
    if mis:
        lines.append(f"  {len(mis)} tensors with the wrong shape, e.g.:")
        for k, got, want in mis[:3]:
            lines.append(f"    {k}: file {list(got)}, model {list(want)}")
        if len(mis) > 3:
            lines.append(f"    ... and {len(mis) - 3} more")
    lines.append("  " + (hint or "Check that this is the right file for this slot and that its config.json "
                                  "matches the weights."))
    msg = "\n".join(lines)
    if len(msg) > MAX_MESSAGE:  # very long key names; keep the head, which names the file
        msg = msg[:MAX_MESSAGE - 4] + " ..."
    return msg


def check_state_dict(sd: Mapping[str, torch.Tensor], module_or_shapes, *, file: str, expected_what: str,
                     optional: Callable[[str], bool] = is_pe_key, hint: str | None = None) -> None:
    """Raise CheckpointError unless `sd` has exactly the module's keys and shapes.

    Keys for which `optional(key)` is true may be missing (pos_encoder.pe); when present their
    shape is checked like every other key.
    """
    expected = (expected_shapes(module_or_shapes) if isinstance(module_or_shapes, nn.Module)
                else module_or_shapes)
    missing, unexpected, mis = compare_state_dict(sd, expected, optional)
    if missing or unexpected or mis:
        raise CheckpointError(format_mismatch(file, expected_what, sd, missing, unexpected, mis, hint))


def check_shapes(sd: Mapping[str, torch.Tensor], required: Mapping[str, tuple], *, file: str,
                 expected_what: str) -> None:
    """Spot checks of a few decisive shapes (e.g. conv_in has 8 input channels)."""
    for key, shape in required.items():
        got = _shape(sd, key)
        if got is not None and got != tuple(shape):
            _, looks = identify_state_dict(sd)
            raise CheckpointError(f"{file}: {key} has shape {list(got)}, the {expected_what} needs "
                                  f"{list(shape)}. The file looks like {looks}.")
