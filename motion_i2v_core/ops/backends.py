"""Choosing between the pure-torch ops and the Triton kernels.

Backends: ``"auto"`` (default), ``"torch"``, ``"triton"``; the environment variable ``MI2V_OPS_BACKEND``
sets the initial choice, ``set_backend`` changes it.

- ``auto``: an op runs its Triton kernel when triton imports and the tensors are on CUDA; otherwise the
  exact pure-torch reference (so CPU results are bitwise those of the reference). If a kernel fails,
  the failure is logged once, that op uses torch for the rest of the process, and the call is redone
  in torch.
- ``torch``: always the reference ops.
- ``triton``: always the kernels; an error (no triton, CPU tensors) is raised, not hidden.

The registry in ``ops/__init__.py`` resolves ``forward_splat`` and ``motion_augmented_attention`` to the
dispatchers below.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Optional

import torch

from motion_i2v_core.ops import motion_attention as _torch_attention
from motion_i2v_core.ops import splat as _torch_splat

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "triton")
ENV_VAR = "MI2V_OPS_BACKEND"

_triton_error: Optional[str] = None  # why the kernels cannot be imported (None = not tried yet or fine)
_triton_module = None
_disabled: dict[str, str] = {}  # op -> reason, ops whose kernel failed under "auto"
_backend: Optional[str] = None


def _check_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown ops backend {name!r}: use one of {', '.join(BACKENDS)} (env {ENV_VAR})")
    return name


def get_backend() -> str:
    global _backend
    if _backend is None:
        _backend = _check_name(os.environ.get(ENV_VAR, "auto").strip().lower() or "auto")
    return _backend


def set_backend(name: str) -> None:
    """Select the ops backend for the process; ``"triton"`` fails here when triton cannot be imported."""
    global _backend
    _check_name(name)
    if name == "triton":
        _kernels(required=True)
    _backend = name
    _disabled.clear()


def _kernels(required: bool):
    """The Triton kernel modules, or None (``required`` raises instead) when triton is unusable."""
    global _triton_error, _triton_module
    if _triton_module is None and _triton_error is None:
        try:
            from motion_i2v_core.ops import triton_attention, triton_splat

            _triton_module = (triton_splat, triton_attention)
        except Exception as exc:  # ImportError, or a triton that fails to initialise
            _triton_error = f"{type(exc).__name__}: {exc}"
    if _triton_module is None and required:
        raise RuntimeError(
            f"the Triton backend was requested but triton is not usable ({_triton_error}); "
            f"install it with `pip install triton` (CUDA GPU needed) or use backend 'auto' or 'torch'"
        )
    return _triton_module


def triton_available() -> bool:
    """True when the Triton kernels import (they still need CUDA tensors at run time)."""
    return _kernels(required=False) is not None


def _use_kernel(op: str, *tensors: torch.Tensor) -> bool:
    backend = get_backend()
    if backend == "torch":
        return False
    if backend == "triton":
        _kernels(required=True)
        return True
    return op not in _disabled and all(t.is_cuda for t in tensors) and triton_available()


def _fallback(op: str, exc: Exception) -> None:
    if op not in _disabled:
        _disabled[op] = f"{type(exc).__name__}: {exc}"
        log.warning("Triton kernel for %s failed (%s); using the torch op from now on", op, _disabled[op])


def forward_splat(x: torch.Tensor, flow: torch.Tensor, mode: str = "avg", metric: Optional[torch.Tensor] = None):
    """``ops.splat.forward_splat`` contract; the Triton kernel on CUDA (modes "sum"/"avg")."""
    if not _use_kernel("forward_splat", x, flow):
        return _torch_splat.forward_splat(x, flow, mode, metric)
    triton_splat = _kernels(required=True)[0]
    if get_backend() == "triton":
        return triton_splat.forward_splat_triton(x, flow, mode, metric)
    try:
        return triton_splat.forward_splat_triton(x, flow, mode, metric)
    except ValueError:
        raise  # bad input: the reference would reject it too
    except Exception as exc:
        _fallback("forward_splat", exc)
        return _torch_splat.forward_splat(x, flow, mode, metric)


def motion_augmented_attention(x: torch.Tensor, flow: torch.Tensor, **kwargs):
    """``ops.motion_attention.motion_augmented_attention`` contract; Triton warp + SDPA on CUDA."""
    if kwargs.get("splat") is not None or not _use_kernel("motion_augmented_attention", x, flow):
        return _torch_attention.motion_augmented_attention(x, flow, **kwargs)
    triton_attention = _kernels(required=True)[1]
    if get_backend() == "triton":
        return triton_attention.motion_augmented_attention_triton(x, flow, **kwargs)
    try:
        return triton_attention.motion_augmented_attention_triton(x, flow, **kwargs)
    except ValueError:
        raise
    except Exception as exc:
        _fallback("motion_augmented_attention", exc)
        return _torch_attention.motion_augmented_attention(x, flow, **kwargs)


def status() -> dict[str, object]:
    """What runs where, for logs and the benchmark."""
    return {
        "backend": get_backend(),
        "triton": triton_available(),
        "triton_error": _triton_error,
        "cuda": torch.cuda.is_available(),
        "disabled": dict(_disabled),
    }


OPS: dict[str, Callable] = {
    "forward_splat": forward_splat,
    "motion_augmented_attention": motion_augmented_attention,
}
