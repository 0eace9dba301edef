"""The op registry: selection (setter, context manager, environment), clear errors, and the fail-safe rules.

Fake kernels are registered as extra backends of the real ops, so the real dispatchers are tested on CPU.
"""

from __future__ import annotations

import importlib.util
import logging

import pytest
import torch

from motion_i2v_core import ops
from motion_i2v_core.ops import registry
from motion_i2v_core.ops.motion_attention import multihead_attention
from motion_i2v_core.ops.splat import forward_splat

ALWAYS = dict(applies=lambda *args, **kwargs: True)  # a fake kernel that "auto" may use for every call


@pytest.fixture
def backends():
    """``add(op, name, fn, **kw)`` registers a fake backend; everything is undone after the test."""
    added = []
    previous = registry._backend

    def add(op, name, fn, **kwargs):
        ops.register(op, name, fn, **kwargs)
        added.append((op, name))

    yield add
    for op, name in added:
        ops.unregister(op, name)
    registry._backend = previous
    registry.reset_failures()


class FakeKernel:
    """Stands in for a compiled kernel: returns a marked result, or raises what it is told, counting calls."""

    def __init__(self, *errors):
        self.errors = list(errors)  # raised by successive calls; None = succeed
        self.calls = 0

    def __call__(self, x, flow, mode="avg", metric=None):
        self.calls += 1
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        return torch.full_like(x, 42.0)


def _inputs():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 5, 4, generator=gen), torch.randn(2, 2, 5, 4, generator=gen) * 2


def _warnings(caplog):
    return [r for r in caplog.records if r.name == registry.log.name and r.levelno >= logging.WARNING]


# ---------------------------------------------------------------------------------------------------
# selection


def test_reference_and_naive_backends_are_always_there():
    for op in ("forward_splat", "multihead_attention", "motion_augmented_attention", "resize_flow"):
        assert {"torch", "naive"} <= set(ops.status()["backends"][op])
    has_triton = importlib.util.find_spec("triton") is not None
    assert ("triton" in ops.status()["backends"]["forward_splat"]) == has_triton
    assert ("triton" in ops.backend_names()) == has_triton
    assert ops.get_op("forward_splat") is ops.get_op("forward_splat"), "one stable dispatcher per op"


def test_environment_variable_selects_the_backend(monkeypatch, backends):
    for value, expected in (("torch", "torch"), (" Naive ", "naive"), ("", "auto")):
        monkeypatch.setenv(ops.ENV_VAR, value)
        registry._backend = None  # as in a fresh process
        assert ops.get_backend() == expected
    monkeypatch.delenv(ops.ENV_VAR)
    registry._backend = None
    assert ops.get_backend() == "auto"


def test_setter_and_context_manager(backends):
    ops.set_backend("torch")
    with ops.use_backend("naive"):
        assert ops.get_backend() == "naive"
        with pytest.raises(RuntimeError, match="boom"), ops.use_backend("auto"):
            raise RuntimeError("boom")
        assert ops.get_backend() == "naive", "restored after an exception"
    assert ops.get_backend() == "torch"


def test_unknown_names_give_a_clear_error(monkeypatch, backends):
    with pytest.raises(ValueError, match=r"unknown ops backend 'cuda': use one of auto, naive, torch"):
        ops.set_backend("cuda")
    monkeypatch.setenv(ops.ENV_VAR, "fast")
    registry._backend = None
    with pytest.raises(ValueError, match="unknown ops backend 'fast'.*MI2V_OPS_BACKEND"):
        ops.get_backend()
    with pytest.raises(ValueError, match="unknown op 'splat'; known ops: .*forward_splat"):
        ops.get_op("splat")
    with pytest.raises(ValueError, match="unknown op 'nothing'"):
        ops.implementation("nothing", "naive")
    with pytest.raises(ValueError, match="automatic choice"):
        ops.register("forward_splat", "auto", forward_splat)
    with pytest.raises(ValueError, match="no torch reference"):
        ops.register("brand_new_op", "fast", forward_splat)


def test_an_unavailable_backend_says_what_to_do(backends):
    registry.mark_unavailable("fastlib", "fastlib is not installed; `pip install fastlib`")
    try:
        with pytest.raises(RuntimeError, match="'fastlib' is not available: fastlib is not installed; `pip install"):
            ops.set_backend("fastlib")
    finally:
        registry._unavailable.pop("fastlib")


def test_an_explicit_backend_runs_the_reference_for_ops_it_lacks(backends):
    kernel = FakeKernel()
    backends("forward_splat", "fake", kernel)
    x, flow = _inputs()
    q, k, v = (torch.randn(3, n, 8) for n in (2, 5, 5))
    with ops.use_backend("fake"):
        assert torch.all(ops.get_op("forward_splat")(x, flow) == 42.0)
        assert torch.equal(ops.get_op("multihead_attention")(q, k, v, 2), multihead_attention(q, k, v, 2))
    assert kernel.calls == 1
    with ops.use_backend("torch"):
        assert torch.equal(ops.get_op("forward_splat")(x, flow), forward_splat(x, flow))
    assert kernel.calls == 1


def test_auto_honours_applies_and_the_auto_flag(backends):
    picky, manual = FakeKernel(), FakeKernel()
    backends("forward_splat", "picky", picky, applies=lambda x, flow, *a, **k: x.shape[1] == 7)
    backends("forward_splat", "manual", manual, auto=False)
    x, flow = _inputs()
    with ops.use_backend("auto"):
        assert torch.equal(ops.get_op("forward_splat")(x, flow), forward_splat(x, flow))
        assert picky.calls == 0 and manual.calls == 0
        wide = torch.randn(2, 7, 5, 4)
        assert torch.all(ops.get_op("forward_splat")(wide, flow) == 42.0)
    assert picky.calls == 1 and manual.calls == 0


# ---------------------------------------------------------------------------------------------------
# fail-safe under "auto"


def test_a_kernel_that_fails_on_first_use_falls_back_once_and_logs_once(backends, caplog):
    kernel = FakeKernel(RuntimeError("PTX compile failed: sm_61 unsupported"))
    backends("forward_splat", "fake", kernel, **ALWAYS)
    x, flow = _inputs()
    with ops.use_backend("auto"), caplog.at_level(logging.WARNING, logger=registry.log.name):
        first = ops.get_op("forward_splat")(x, flow)
        second = ops.get_op("forward_splat")(x, flow)
    reference = forward_splat(x, flow)
    assert torch.equal(first, reference) and torch.equal(second, reference)
    assert kernel.calls == 1, "a kernel that failed on first use is not tried again"
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "PTX compile failed" in warnings[0].getMessage()
    assert "fake" in warnings[0].getMessage() and "forward_splat" in warnings[0].getMessage()
    assert "forward_splat/fake" in ops.status()["failed"]


def test_errors_after_a_successful_first_use_propagate(backends, caplog):
    kernel = FakeKernel(None, RuntimeError("illegal memory access"))
    backends("forward_splat", "fake", kernel, **ALWAYS)
    x, flow = _inputs()
    with ops.use_backend("auto"), caplog.at_level(logging.WARNING, logger=registry.log.name):
        assert torch.all(ops.get_op("forward_splat")(x, flow) == 42.0)
        with pytest.raises(RuntimeError, match="illegal memory access"):
            ops.get_op("forward_splat")(x, flow)
        assert torch.all(ops.get_op("forward_splat")(x, flow) == 42.0), "still the kernel: nothing was disabled"
    assert kernel.calls == 3 and not _warnings(caplog) and not ops.status()["failed"]


@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("CUDA error: out of memory"),
], ids=["OutOfMemoryError", "RuntimeError"])
def test_out_of_memory_propagates_even_on_first_use(backends, caplog, error):
    kernel = FakeKernel(error, None)
    backends("forward_splat", "fake", kernel, **ALWAYS)
    x, flow = _inputs()
    with ops.use_backend("auto"), caplog.at_level(logging.WARNING, logger=registry.log.name):
        with pytest.raises(type(error), match="out of memory"):
            ops.get_op("forward_splat")(x, flow)
        assert torch.all(ops.get_op("forward_splat")(x, flow) == 42.0), "the kernel stays in use"
    assert not _warnings(caplog) and not ops.status()["failed"]


def test_bad_input_propagates_and_does_not_disable_the_kernel(backends):
    kernel = FakeKernel(ValueError("flow must be (N, 2, H, W)"), None)
    backends("forward_splat", "fake", kernel, **ALWAYS)
    x, flow = _inputs()
    with ops.use_backend("auto"):
        with pytest.raises(ValueError, match="flow must be"):
            ops.get_op("forward_splat")(x, flow)
        assert torch.all(ops.get_op("forward_splat")(x, flow) == 42.0)


def test_an_explicit_backend_never_falls_back(backends):
    kernel = FakeKernel(RuntimeError("PTX compile failed"))
    backends("forward_splat", "fake", kernel, **ALWAYS)
    x, flow = _inputs()
    with ops.use_backend("fake"), pytest.raises(RuntimeError, match="PTX compile failed"):
        ops.get_op("forward_splat")(x, flow)
    assert not ops.status()["failed"]


def test_a_backend_that_does_not_import_falls_back_under_auto_and_raises_when_selected(backends, caplog):
    backends("forward_splat", "missing", "motion_i2v_core.ops.no_such_module:forward_splat", **ALWAYS)
    x, flow = _inputs()
    with ops.use_backend("missing"), pytest.raises(ModuleNotFoundError, match="no_such_module"):
        ops.get_op("forward_splat")(x, flow)
    with ops.use_backend("auto"), caplog.at_level(logging.WARNING, logger=registry.log.name):
        assert torch.equal(ops.get_op("forward_splat")(x, flow), forward_splat(x, flow))
    assert len(_warnings(caplog)) == 1 and "no_such_module" in _warnings(caplog)[0].getMessage()
