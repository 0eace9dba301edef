"""The op registry: named backends of every numerical op, chosen in one place.

Each op (``forward_splat``, ``motion_augmented_attention``, ...) has a ``"torch"`` implementation, the
exact pure-torch reference, which is always present. Other backends (``"triton"``, ``"naive"``) add
implementations with the same signature through ``register``. Models call ``get_op(name)``, a stable
dispatcher that picks the implementation at call time from the process-wide selection:

- ``"auto"`` (default): for each call, the first backend registered with ``auto=True`` whose
  ``applies`` predicate accepts the call's arguments (the Triton kernels: CUDA tensors), else torch.
  Fail-safe: the *first* call of an op on a backend may fail (a kernel that does not compile or
  launch on this GPU, triton that does not import); that is logged once and the op uses torch from
  then on. Out-of-memory errors, ``ValueError`` (bad input, which the reference rejects too) and
  every error after a successful first call propagate.
- a backend's name: always that backend; ops it does not implement run the torch reference; errors
  are raised, never hidden.

The selection comes from the environment variable ``MI2V_OPS_BACKEND`` when first needed, and from
``set_backend`` / ``use_backend`` after that.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Union

import torch

log = logging.getLogger(__name__)

ENV_VAR = "MI2V_OPS_BACKEND"
AUTO = "auto"
TORCH = "torch"


@dataclass
class _Impl:
    target: Union[Callable, str]  # the function, or "module:attr" imported on first use
    applies: Optional[Callable[..., bool]]
    auto: bool
    _fn: Optional[Callable] = field(default=None, repr=False)

    def fn(self) -> Callable:
        if self._fn is None:
            if callable(self.target):
                self._fn = self.target
            else:
                module_name, attr = self.target.split(":")
                self._fn = getattr(importlib.import_module(module_name), attr)
        return self._fn


_impls: dict[str, dict[str, _Impl]] = {}  # op -> backend -> implementation, in registration order
_dispatchers: dict[str, Callable] = {}
_unavailable: dict[str, str] = {}  # backend -> why it cannot be selected (e.g. triton not installed)
_backend: Optional[str] = None
_proven: set[tuple[str, str]] = set()  # (op, backend) whose first call under "auto" succeeded
_failed: dict[tuple[str, str], str] = {}  # (op, backend) whose first call under "auto" failed -> why


def register(
    op: str,
    backend: str,
    fn: Union[Callable, str],
    *,
    applies: Optional[Callable[..., bool]] = None,
    auto: bool = True,
) -> None:
    """Add (or replace) ``backend``'s implementation of ``op``.

    :param fn: the function (the op's signature), or ``"module:attr"`` to import on first use, so that a
        backend's dependencies are imported only when it runs.
    :param applies: ``applies(*args, **kwargs) -> bool``: whether "auto" may use this implementation for a
        call (e.g. "all tensors on CUDA"); None = every call. An explicitly selected backend ignores it.
    :param auto: False keeps the implementation out of "auto" (explicit selection only).
    """
    if backend == AUTO:
        raise ValueError(f"{AUTO!r} is the automatic choice, not a backend name")
    if op not in _impls and backend != TORCH:
        raise ValueError(f"op {op!r} has no torch reference yet: register the {TORCH!r} implementation first")
    _impls.setdefault(op, {})[backend] = _Impl(fn, applies, auto)
    _unavailable.pop(backend, None)
    _failed.pop((op, backend), None)
    _proven.discard((op, backend))
    if op not in _dispatchers:
        _dispatchers[op] = _make_dispatcher(op)


def unregister(op: str, backend: str) -> None:
    """Remove ``backend``'s implementation of ``op`` (the torch reference cannot be removed)."""
    if backend == TORCH:
        raise ValueError("the torch reference of an op cannot be unregistered")
    _impls.get(op, {}).pop(backend, None)
    _failed.pop((op, backend), None)
    _proven.discard((op, backend))


def mark_unavailable(backend: str, reason: str) -> None:
    """Record why ``backend`` is not registered, so that selecting it says what to do."""
    _unavailable[backend] = reason


def backend_names() -> tuple[str, ...]:
    """Names ``set_backend`` accepts: "auto" and every registered backend."""
    names = {name for impls in _impls.values() for name in impls}
    return (AUTO, *sorted(names))


def _check_backend(name: str) -> str:
    if not isinstance(name, str):
        raise ValueError(f"ops backend must be a name such as 'auto', got {type(name).__name__}")
    if name in _unavailable:
        raise RuntimeError(f"ops backend {name!r} is not available: {_unavailable[name]}")
    if name not in backend_names():
        raise ValueError(f"unknown ops backend {name!r}: use one of {', '.join(backend_names())} (env {ENV_VAR})")
    return name


def get_backend() -> str:
    """The selected backend name ("auto" unless ``MI2V_OPS_BACKEND`` or ``set_backend`` says otherwise)."""
    global _backend
    if _backend is None:
        _backend = _check_backend(os.environ.get(ENV_VAR, AUTO).strip().lower() or AUTO)
    return _backend


def set_backend(name: str) -> None:
    """Select the backend for the whole process; an unknown or unavailable name raises here."""
    global _backend
    _backend = _check_backend(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """``with use_backend("naive"): ...``: select ``name`` inside the block, restore the previous choice after."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def _known(op: str) -> dict[str, _Impl]:
    if op not in _impls:
        raise ValueError(f"unknown op {op!r}; known ops: {', '.join(sorted(_impls))}")
    return _impls[op]


def get_op(op: str) -> Callable:
    """The dispatcher of ``op``: call it like the op; the backend is chosen per call."""
    _known(op)
    return _dispatchers[op]


def implementation(op: str, backend: str = TORCH) -> Callable:
    """``backend``'s own function for ``op``, bypassing the selection (tests, benchmarks)."""
    impls = _known(op)
    if backend not in impls:
        raise ValueError(f"backend {backend!r} does not implement {op!r}; it has: {', '.join(impls)}")
    return impls[backend].fn()


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an allocator failure (torch's OutOfMemoryError, or a RuntimeError that says so)."""
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def _first_call(op: str, backend: str, impl: _Impl, args, kwargs):
    """The first "auto" call of ``op`` on ``backend``: a failure to run at all falls back to torch, once."""
    try:
        out = impl.fn()(*args, **kwargs)
    except ValueError:
        raise  # bad input: the reference rejects it too
    except Exception as exc:
        if is_out_of_memory(exc):
            raise
        _failed[(op, backend)] = f"{type(exc).__name__}: {exc}"
        log.warning("ops: the %s implementation of %s failed on first use (%s); using torch for it from now on",
                    backend, op, _failed[(op, backend)])
        return _impls[op][TORCH].fn()(*args, **kwargs)
    _proven.add((op, backend))
    return out


def _make_dispatcher(op: str) -> Callable:
    impls = _impls[op]

    def dispatch(*args, **kwargs):
        backend = get_backend()
        if backend != AUTO:
            return impls.get(backend, impls[TORCH]).fn()(*args, **kwargs)
        for name, impl in impls.items():
            if name == TORCH or not impl.auto or (op, name) in _failed:
                continue
            if impl.applies is not None and not impl.applies(*args, **kwargs):
                continue
            if (op, name) in _proven:
                return impl.fn()(*args, **kwargs)
            return _first_call(op, name, impl, args, kwargs)
        return impls[TORCH].fn()(*args, **kwargs)

    dispatch.__name__ = dispatch.__qualname__ = op
    dispatch.__doc__ = f"Dispatcher of op {op!r} (see motion_i2v_core.ops.registry)."
    return dispatch


def reset_failures() -> None:
    """Forget which first calls succeeded or failed (tests; a new GPU)."""
    _proven.clear()
    _failed.clear()


def status() -> dict[str, object]:
    """What is selected and what is registered, for logs and the benchmark."""
    return {
        "backend": get_backend(),
        "backends": {op: list(impls) for op, impls in _impls.items()},
        "unavailable": dict(_unavailable),
        "failed": {f"{op}/{backend}": why for (op, backend), why in _failed.items()},
        "cuda": torch.cuda.is_available(),
    }
