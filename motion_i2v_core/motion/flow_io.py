"""Save and load pixel flow as .safetensors with size, frame and stride metadata.

File layout (format "motion-i2v-flow", version 1):

* tensor ``flow``: (F, 2, H, W) float, displacement f(0 -> i) in pixels, ch0 = dx, ch1 = dy;
* tensor ``static_mask`` (optional): (H, W) float, 1 = static (brush-unpainted) pixel;
* metadata (strings): ``format``, ``format_version``, ``width``, ``height``, ``frames``,
  ``units`` ("pixels"), ``stride`` (JSON list, optional) and any extra caller keys as JSON under
  ``extra``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any, Optional

import torch

__all__ = ["FLOW_FORMAT", "FLOW_FORMAT_VERSION", "save_flow", "load_flow"]

FLOW_FORMAT = "motion-i2v-flow"
FLOW_FORMAT_VERSION = 1
_RESERVED = ("format", "format_version", "width", "height", "frames", "units", "stride")


def _static_mask_2d(static_mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if not isinstance(static_mask, torch.Tensor):
        raise ValueError(f"static_mask must be a torch tensor, got {type(static_mask).__name__}")
    if static_mask.shape[-2:] != (height, width) or any(d != 1 for d in static_mask.shape[:-2]):
        raise ValueError(
            f"static_mask must have shape ({height}, {width}) (leading size-1 dims allowed) to match the "
            f"flow, got {tuple(static_mask.shape)}"
        )
    return static_mask.reshape(height, width)


def save_flow(
    path: str | os.PathLike,
    flow: torch.Tensor,
    static_mask: Optional[torch.Tensor] = None,
    metadata: Optional[dict[str, Any]] = None,
) -> None:
    """Write ``flow`` (F, 2, H, W) in pixels to ``path`` atomically (temp file + os.replace).

    :param static_mask: optional (H, W) mask (1 = static), stored as float32.
    :param metadata: optional dict; ``stride`` (list of ints) is stored as its own field, every other
        key must be JSON-serialisable and comes back unchanged from ``load_flow``.
    """
    from safetensors.torch import save_file

    if not isinstance(flow, torch.Tensor) or flow.dim() != 4 or flow.shape[1] != 2 or not flow.is_floating_point():
        raise ValueError(
            "flow must be a float tensor of shape (F, 2, H, W) in pixels, "
            f"got {getattr(flow, 'shape', type(flow).__name__)}"
        )
    frames, _, height, width = flow.shape
    meta_in = dict(metadata or {})
    for key in _RESERVED:
        if key != "stride" and key in meta_in:
            raise ValueError(f"metadata key {key!r} is set from the flow tensor itself; remove it from metadata")
    header = {
        "format": FLOW_FORMAT,
        "format_version": str(FLOW_FORMAT_VERSION),
        "width": str(width),
        "height": str(height),
        "frames": str(frames),
        "units": "pixels",
    }
    stride = meta_in.pop("stride", None)
    if stride is not None:
        # Strides are floats in general (motion speed scales 8, 16, ...); whole numbers stay ints.
        stride = [int(v) if float(v).is_integer() else float(v)
                  for v in (stride.tolist() if isinstance(stride, torch.Tensor) else stride)]
        header["stride"] = json.dumps(stride)
    if meta_in:
        try:
            header["extra"] = json.dumps(meta_in, sort_keys=True)
        except TypeError as e:
            raise ValueError(f"flow metadata must be JSON-serialisable: {e}") from e

    tensors = {"flow": flow.detach().to("cpu").contiguous()}
    if static_mask is not None:
        mask = _static_mask_2d(static_mask, height, width)
        tensors["static_mask"] = mask.detach().to("cpu", torch.float32).contiguous()

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        # mkstemp creates the file owner-only; give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _bad(path: str, problem: str) -> ValueError:
    return ValueError(f"{path} is not a valid Motion-I2V flow file: {problem}")


def load_flow(path: str | os.PathLike) -> tuple[torch.Tensor, Optional[torch.Tensor], dict[str, Any]]:
    """Read a file written by ``save_flow``.

    :return: (flow (F, 2, H, W), static_mask (H, W) or None, metadata) where metadata holds
        ``width``, ``height``, ``frames`` (ints), ``units``, ``format_version``, ``stride`` (list or
        absent) and the extra keys given to ``save_flow``.
    :raises FileNotFoundError: no such file.
    :raises ValueError: the file is truncated, not safetensors, or its tensors and metadata disagree.
    """
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"flow file not found: {path}")
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            header = dict(f.metadata() or {})
            keys = set(f.keys())
            tensors = {k: f.get_tensor(k) for k in keys}
    except Exception as e:  # safetensors raises its own error types for truncated/garbage files
        raise _bad(path, f"cannot be read as .safetensors ({e}); the file may be truncated or of another type") from e

    if header.get("format") != FLOW_FORMAT:
        raise _bad(path, f"metadata 'format' is {header.get('format')!r}, expected {FLOW_FORMAT!r}")
    try:
        version = int(header.get("format_version", ""))
    except ValueError:
        raise _bad(
            path, f"metadata 'format_version' is {header.get('format_version')!r}, expected an integer"
        ) from None
    if version > FLOW_FORMAT_VERSION:
        raise _bad(
            path,
            f"format version {version} is newer than this code supports ({FLOW_FORMAT_VERSION}); update the node pack",
        )
    unexpected = keys - {"flow", "static_mask"}
    if "flow" not in keys or unexpected:
        raise _bad(path, f"expected tensors 'flow' and optionally 'static_mask', found {sorted(keys)}")
    flow = tensors["flow"]
    if flow.dim() != 4 or flow.shape[1] != 2 or not flow.is_floating_point():
        raise _bad(path, f"'flow' must be a float tensor of shape (F, 2, H, W), got {tuple(flow.shape)} {flow.dtype}")
    frames, _, height, width = flow.shape

    meta: dict[str, Any] = {"format_version": version}
    for key, actual in (("width", width), ("height", height), ("frames", frames)):
        try:
            value = int(header[key])
        except (KeyError, ValueError):
            raise _bad(path, f"metadata {key!r} is missing or not an integer ({header.get(key)!r})") from None
        if value != actual:
            raise _bad(path, f"metadata {key}={value} disagrees with the flow tensor shape {tuple(flow.shape)}")
        meta[key] = value
    if header.get("units") != "pixels":
        raise _bad(path, f"metadata 'units' is {header.get('units')!r}, expected 'pixels'")
    meta["units"] = "pixels"
    if "stride" in header:
        try:
            stride = json.loads(header["stride"])
            if not isinstance(stride, list) or not all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in stride
            ):
                raise ValueError
        except ValueError:
            raise _bad(path, f"metadata 'stride' must be a JSON list of numbers, got {header['stride']!r}") from None
        meta["stride"] = stride
    if "extra" in header:
        try:
            extra = json.loads(header["extra"])
            if not isinstance(extra, dict):
                raise ValueError
        except ValueError:
            raise _bad(path, "metadata 'extra' must be a JSON object") from None
        meta.update({k: v for k, v in extra.items() if k not in meta})

    static_mask = tensors.get("static_mask")
    if static_mask is not None and static_mask.shape != (height, width):
        raise _bad(path, f"'static_mask' has shape {tuple(static_mask.shape)}, expected ({height}, {width})")
    return flow, static_mask, meta
