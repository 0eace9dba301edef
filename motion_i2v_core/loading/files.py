"""Safe reading of weight files.

`.safetensors` are read with safetensors; torch pickles (`.bin`, `.pt`, `.pth`, `.ckpt`) only with
`torch.load(..., weights_only=True)`, which refuses any Python object that is not plain data or a
tensor. Every failure becomes a `CheckpointError` that names the file and says what to do.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from motion_i2v_core.loading.validate import CheckpointError

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
WEIGHT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES

# containers that training scripts wrap a state dict in
_WRAPPER_KEYS = ("state_dict", "module", "model_state_dict", "model")

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # first byte of a protocol >= 2 pickle (the legacy torch format)


def read_state_dict(path: str | os.PathLike, *, return_metadata: bool = False, device: str = "cpu"):
    """Read a weight file into a flat {name: tensor} dict.

    Returns the dict, or (dict, metadata) with `return_metadata=True` (metadata is the
    safetensors header metadata, `{}` for pickles). Nested {"state_dict": ...} / {"module": ...}
    wrappers are unwrapped; non-tensor entries (epoch counters, ...) are dropped.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: file not found.")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a weight file (.safetensors or .bin).")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes); the download probably failed. Re-download it.")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES or (suffix not in PICKLE_SUFFIXES and _looks_like_safetensors(path)):
        sd, meta = _read_safetensors(path, device)
    else:
        sd, meta = _read_pickle(path, device), {}
    sd = _flatten(sd, path)
    return (sd, meta) if return_metadata else sd


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors header metadata of `path` (empty dict when there is none)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found.") from None
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise CheckpointError(_corrupt_message(path, e)) from None


def _looks_like_safetensors(path: Path) -> bool:
    # 8-byte little-endian header length followed by a JSON object
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _read_safetensors(path: Path, device: str):
    from safetensors import safe_open

    try:
        sd = {}
        with safe_open(str(path), framework="pt", device=device) as f:
            meta = dict(f.metadata() or {})
            for key in f.keys():
                tensor = f.get_tensor(key)
                # Tensors straight from the file can start at unaligned addresses, where CPU
                # kernels take other code paths and round differently: copy those, so a
                # converted file computes exactly what the original weights compute.
                sd[key] = tensor if tensor.data_ptr() % 64 == 0 else tensor.clone()
        return sd, meta
    except Exception as e:
        raise CheckpointError(_corrupt_message(path, e)) from None


def _read_pickle(path: Path, device: str) -> Any:
    with open(path, "rb") as f:
        head = f.read(64)
    if head[:4] != _ZIP_MAGIC and head[:1] != bytes([_PICKLE_PROTO]):
        # Say what it looks like, never the bytes themselves (they may be anything, e.g. a private file).
        looks = ("a text file (an HTML page or a Git LFS pointer instead of the real download?)"
                 if head and all(32 <= c < 127 or c in b"\t\r\n" for c in head) else "some other binary format")
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint nor a safetensors file: it looks like {looks}. "
            f"The file is corrupt or of another kind. Re-download it.")
    try:
        return torch.load(str(path), map_location=device, weights_only=True)
    except Exception as e:
        text = str(e)
        refused = re.search(r"GLOBAL\s+([\w.]+)", text) or "Unsupported global" in text
        if refused and "Weights only load failed" in text:
            what = refused.group(1) if isinstance(refused, re.Match) else "a Python object"
            raise CheckpointError(
                f"{path}: refused to load. The pickle contains Python objects besides tensors "
                f"({what}); unpickling them could run arbitrary code, so only plain weight files are "
                f"supported. Use a .safetensors version of this model, or convert it to .safetensors "
                f"in a trusted environment.") from None
        raise CheckpointError(_corrupt_message(path, e)) from None


def _corrupt_message(path: Path, err: Exception) -> str:
    detail = " ".join(str(err).split())
    if len(detail) > 160:
        detail = detail[:157] + "..."
    return (f"{path}: could not be read ({type(err).__name__}: {detail}). The file looks truncated "
            f"or corrupt (an interrupted download?). Re-download it.")


def _flatten(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path}: contains a {type(obj).__name__}, not a dictionary of weights; it is not a "
            f"model state dict.")
    # unwrap {"state_dict": {...}} and similar (possibly nested, e.g. {"module": {"state_dict": ...}})
    for _ in range(4):
        # in a flat state dict every value is a tensor, so a dict under these names is a wrapper
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointError(f"{path}: contains no tensors (keys: {_preview(list(obj))}); it is not a model state dict.")
    # DataParallel checkpoints prefix every key with "module."
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _preview(items: list, n: int = 5) -> str:
    shown = ", ".join(map(str, items[:n]))
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


def find_weight_file(folder: str | os.PathLike, stems: tuple[str, ...]) -> Path | None:
    """First existing `folder/<stem><suffix>` over stems x (.safetensors, .bin, ...)."""
    folder = Path(folder)
    for stem in stems:
        for suffix in (".safetensors",) + PICKLE_SUFFIXES:
            p = folder / f"{stem}{suffix}"
            if p.is_file():
                return p
    return None
