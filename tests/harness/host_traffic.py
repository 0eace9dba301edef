"""Record host <-> device traffic inside a region of code (sampling loops), on a CPU-only machine.

Run the code on the "meta" device and wrap it in ``HostTraffic()``; call ``start()`` where the
region begins (e.g. from the first ``cancel()`` poll of a sampling loop). From then on it records:

- tensors made from Python data (``torch.tensor`` / ``as_tensor`` / ``scalar_tensor`` /
  ``new_tensor`` / ``asarray`` of numbers or lists): on a GPU each is a host-to-device copy, and
  under ``torch.compile`` a Python number baked into a graph is a recompilation per value;
- copies from a CPU tensor to another device (``aten._to_copy`` / ``aten.copy_``), and CPU tensors
  used as operands of an op on another device;
- device-to-host syncs: ``item()`` / ``bool()`` / ``nonzero`` (``aten._local_scalar_dense``,
  ``aten.is_nonzero``, ``aten.nonzero``).

The Python-data check sits at the torch-function level because those factories do their copy
inside one C++ call that a dispatch mode does not see.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

_FROM_DATA = {torch.tensor, torch.as_tensor, torch.scalar_tensor, torch.asarray, torch.Tensor.new_tensor}
_SYNCS = {"aten._local_scalar_dense", "aten.is_nonzero", "aten.nonzero", "aten.item"}


def _tensors(tree):
    return [t for t in tree_leaves(tree) if isinstance(t, torch.Tensor)]


class _Functions(TorchFunctionMode):
    def __init__(self, owner):
        super().__init__()
        self.owner = owner

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.owner.active and func in _FROM_DATA:
            data = args[1] if func is torch.Tensor.new_tensor else (args[0] if args else kwargs.get("data"))
            if not isinstance(data, torch.Tensor):
                self.owner.events.append(f"{getattr(func, '__name__', func)} from Python data {type(data).__name__}")
        return func(*args, **kwargs)


class _Dispatch(TorchDispatchMode):
    def __init__(self, owner):
        super().__init__()
        self.owner = owner

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.owner.active:
            name = str(func.overloadpacket) if hasattr(func, "overloadpacket") else str(func)
            inputs = _tensors((args, kwargs))
            if name in _SYNCS:
                self.owner.events.append(f"sync {name}")
            out = func(*args, **kwargs)
            outputs = _tensors(out)
            on_device = [t for t in inputs + outputs if t.device.type != "cpu"]
            on_cpu = [t for t in inputs if t.device.type == "cpu"]
            if on_device and on_cpu:
                self.owner.events.append(f"host tensor into device op {name} {tuple(on_cpu[0].shape)}")
            return out
        return func(*args, **kwargs)


class HostTraffic:
    """``with HostTraffic() as traffic: ...; traffic.start() ...; assert traffic.events == []``."""

    def __init__(self):
        self.active = False
        self.events: list[str] = []
        self._modes = (_Functions(self), _Dispatch(self))

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False

    def __enter__(self):
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc):
        for mode in reversed(self._modes):
            mode.__exit__(*exc)
        return False
