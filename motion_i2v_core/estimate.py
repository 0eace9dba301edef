"""Memory and FLOP estimate of a whole generation, without a GPU.

``python -m motion_i2v_core.bench --estimate --size sd15 --json FILE`` calls this module.

What runs: the real generation path, ``predict_flow`` (neutral control encoded by the flow VAE,
reference image encode, the flow UNet + ControlNet step loop with CFG, flow decode) then
``render_video`` (reference encode, the render UNet step loop with CFG, image decode), with the
pipelines' own defaults, on weights and activations that are **meta tensors**: they have shapes,
dtypes and storages of a given size but no data, so nothing is computed or allocated and an SD-1.5
generation takes seconds on a CPU.

The CUDA code path: meta tensors stand in for CUDA tensors. While the estimate runs,

- ``Tensor.is_cuda`` is True for meta tensors, so the ops backend takes its CUDA branch (the Triton
  kernels under ``auto`` when triton imports); Triton kernel launches are stubbed (counted, not run)
  and ``torch.cuda.device`` is a no-op for meta devices, so the kernels' wrappers allocate exactly
  what they allocate on a GPU;
- ``F.scaled_dot_product_attention`` calls the kernel CUDA would pick on an Ampere-or-newer GPU
  (flash for fp16/bf16 with head dim <= 256, memory-efficient otherwise, each with a meta kernel),
  not the math fallback that a CPU build would take and that materialises the score matrix;
- data leaving the device (``.cpu()``) becomes zero-filled CPU tensors, and the one data-dependent
  Python branch kind in the path, ``bool(t.any())`` / ``bool(t.all())``, reads False / True: all
  values finite, no motion brush painted, i.e. the default generation. Any other read of a device
  value raises, naming the op, rather than guessing.

Peak accounting: a ``TorchDispatchMode`` sees every op's outputs. Each new storage on the device is
added to a live set with its byte size rounded up to 512 bytes (the CUDA caching allocator's block
granularity), and a ``weakref.finalize`` on the storage removes it when the storage is freed, which
is when CUDA's allocator would get the block back. Views share their base's storage and are not
counted twice. The running total and its maximum are kept overall and per phase (the call that is
running: control encode, image encode, stage-1 UNet step, flow decode, stage-2 UNet step, image
decode, else "other" for the sampler arithmetic in between). The weights are built before the
tracking starts, so the live set holds the activations (with the latents, noise, text and control
carried between phases); weights are added per mode:

- ``resident_*``: all four models on the device for the whole run;
- ``low_vram_*``: only the model that the phase calls (ComfyUI evicting the others when a run does
  not fit), the last-used model staying during "other";
- ``mode_report(trace, "stagewise")``: the running stage's models (the bench's ``--low-vram``), for
  comparisons with the bench's measured peaks (``scripts/gpu_check.py``).

Each mode is traced on the card its issue-13 target is for (8 GiB resident, 6 GiB low-VRAM fp16,
4 GiB low-VRAM fp8): where the pipelines size VAE chunks from the free device memory, the query
answers that card's size less the weights held during VAE calls and the live tensors.

``fp8`` modes store the UNets' (flow UNet, ControlNet, render UNet) weights in float8_e4m3fn with
fp16 compute, built with ``models.operations.cast_ops``: every layer call casts its weight, and the
copy is freed when the call returns, as ComfyUI's casting ops do (the copies count as activations).
The VAEs stay in fp16.

Not counted: cuBLAS / cuDNN workspaces, the CUDA context, the caching allocator's fragmentation
and its reserve beyond allocated bytes; so the numbers compare with ``torch.cuda.max_memory_allocated``
less the workspaces, not with ``nvidia-smi``. FLOPs come from ``torch.utils.flop_counter`` (matmuls,
convolutions, attention; elementwise work is not counted), for the whole generation with CFG.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import weakref
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_unflatten
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakIdKeyDictionary

from motion_i2v_core.loading.official import Stage1Models, Stage2Models
from motion_i2v_core.models.operations import cast_ops
from motion_i2v_core.models.unet3d import FlowUNet, RenderUNet
from motion_i2v_core.models.vae import AutoencoderKL
from motion_i2v_core.ops import get_backend, registry
from motion_i2v_core.pipelines import predict_flow, render_video

aten = torch.ops.aten
GIB = 2**30
BLOCK = 512  # CUDA caching allocator rounding
FP8 = torch.float8_e4m3fn
DEVICE = torch.device("meta")

PHASES = ("control_encode", "image_encode", "stage1_unet_step", "flow_decode", "stage2_unet_step",
          "image_decode", "other")
# phase -> the model that must be on the device for it (low-VRAM modes)
PHASE_MODEL = {"control_encode": "flow_vae", "image_encode": "image_vae", "stage1_unet_step": "flow_unet",
               "flow_decode": "flow_vae", "stage2_unet_step": "render_unet", "image_decode": "image_vae"}


class EstimateError(RuntimeError):
    """The generation path did something the estimator cannot model on meta tensors."""


def _rounded(nbytes: int) -> int:
    return -(-nbytes // BLOCK) * BLOCK


class LiveMemory(TorchDispatchMode):
    """Live bytes of the storages of ``device``-type tensors created while active, overall and per phase."""

    def __init__(self, device_type: str = "meta"):
        super().__init__()
        self.device_type = device_type
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self.phase = "other"
        self.phase_peak: dict[str, int] = {}
        self.phase_calls: dict[str, int] = {}
        self.call_peak = 0  # peak since the current model call began
        self._flags = WeakIdKeyDictionary()  # bool tensors from any/all -> the value the branch reads

    # -- accounting
    def _on_device(self, t) -> bool:
        return isinstance(t, torch.Tensor) and t.device.type == self.device_type

    def track(self, tensor: torch.Tensor) -> None:
        """Count ``tensor``'s storage as allocated now (again with its current size if already counted)."""
        if not self._on_device(tensor):
            return
        storage = tensor.untyped_storage()
        key = id(storage)
        size = _rounded(storage.nbytes())
        old = self.live.get(key)
        if old is None:
            weakref.finalize(storage, self._free, key)
        self.live[key] = size
        self.current += size - (old or 0)
        self._note()

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def _note(self, extra: int = 0) -> None:
        now = self.current + extra
        self.peak = max(self.peak, now)
        self.phase_peak[self.phase] = max(self.phase_peak.get(self.phase, 0), now)
        self.call_peak = max(self.call_peak, now)

    @contextlib.contextmanager
    def in_phase(self, name: str):
        previous, self.phase = self.phase, name
        self.phase_calls[name] = self.phase_calls.get(name, 0) + 1
        self._note()
        try:
            yield
        finally:
            self.phase = previous
            self._note()

    # -- dispatch
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        meta = self.device_type == "meta"
        if meta and func is aten._local_scalar_dense.default and args[0].device.type == "meta":
            if args[0] in self._flags:
                return self._flags[args[0]]
            raise EstimateError(f"the generation reads a device value ({func}) that meta tensors do not have")
        if meta and func is aten._to_copy.default and args[0].device.type == "meta":
            target = kwargs.get("device")
            if target is not None and torch.device(target).type == "cpu":
                return torch.zeros(args[0].shape, dtype=kwargs.get("dtype") or args[0].dtype)
        out = func(*args, **kwargs)
        if not func.is_view:  # a view's storage is its base's: counted when the base was made (or a weight)
            given = {id(a.untyped_storage()) for a in tree_flatten((args, kwargs))[0] if self._on_device(a)}
            for t in tree_flatten(out)[0]:
                # an output that writes into an input (in-place, out=) is new only if its storage was
                if self._on_device(t) and (id(t.untyped_storage()) not in given or id(t.untyped_storage()) in self.live):
                    self.track(t)
        if func in (aten.any.default, aten.any.dim, aten.any.dims):
            self._flags[out] = False
        elif func in (aten.all.default, aten.all.dim, aten.all.dims):
            self._flags[out] = True
        return out


# -------------------------------------------------------------------------------------------------
# the CUDA code path on meta tensors


def _fused_attention_ok(query, key, value, attn_mask, dropout_p, enable_gqa) -> bool:
    """The fused kernels' common conditions: 4-D (B, H, L, D) inputs, one head dim, no mask or dropout."""
    d = query.shape[-1]
    return (attn_mask is None and dropout_p == 0.0 and not enable_gqa and query.dim() == key.dim() == value.dim() == 4
            and key.shape[-1] == d == value.shape[-1])


def _sdpa_as_cuda(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """The attention kernel CUDA picks on sm80+: flash (fp16/bf16, head dim <= 256), else memory-efficient,
    else (3-D inputs, as the VAE's, or odd head dims) the math path that materialises the scores."""
    if _fused_attention_ok(query, key, value, attn_mask, dropout_p, enable_gqa):
        d = query.shape[-1]
        if query.dtype in (torch.float16, torch.bfloat16) and d <= 256 and d % 8 == 0:
            return aten._scaled_dot_product_flash_attention(query, key, value, is_causal=is_causal, scale=scale)[0]
        if d % (8 if query.element_size() == 2 else 4) == 0:
            return aten._scaled_dot_product_efficient_attention(query, key, value, None, False, is_causal=is_causal,
                                                                scale=scale)[0]
    return _ORIGINAL_SDPA(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                          scale=scale, enable_gqa=enable_gqa)


def _sdpa_as_cpu(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """The attention kernel a CPU picks: its flash kernel for 4-D inputs, else the math path."""
    if _fused_attention_ok(query, key, value, attn_mask, dropout_p, enable_gqa):
        return aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, is_causal=is_causal, scale=scale)[0]
    return _ORIGINAL_SDPA(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                          scale=scale, enable_gqa=enable_gqa)


_ORIGINAL_SDPA = F.scaled_dot_product_attention


class _NoCudaDevice:
    """``torch.cuda.device`` that accepts meta devices (and does nothing for them)."""

    def __init__(self, device):
        self.inner = None if isinstance(device, torch.device) and device.type == "meta" else _ORIGINAL_CUDA_DEVICE(device)

    def __enter__(self):
        return self.inner.__enter__() if self.inner is not None else None

    def __exit__(self, *exc):
        return self.inner.__exit__(*exc) if self.inner is not None else False


_ORIGINAL_CUDA_DEVICE = torch.cuda.device


@dataclass
class KernelStubs:
    launches: dict[str, int] = field(default_factory=dict)  # kernel name -> stubbed launches
    failed: dict[str, str] = field(default_factory=dict)  # kernels that failed on meta (the torch op ran)


def _optional_module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


@contextlib.contextmanager
def code_path(device_type: str = "cuda", free_bytes: Optional[Callable[[], int]] = None):
    """Meta tensors take the code path of ``device_type`` (see the module docstring); yields the stubs.

    "cuda": the CUDA branches, SDPA kernel choice and stubbed Triton launches; "cpu": only the CPU's
    SDPA kernel choice (the rest of the path is what meta tensors take anyway: the torch ops).
    ``free_bytes``: what the pipelines' free-memory query (``models.vae_frames.free_memory``, which
    sizes the VAE chunks) answers for meta tensors, like a card of that much free memory would.
    """
    stubs = KernelStubs()
    saved_env = os.environ.get("TRITON_INTERPRET")
    patches = []

    def patch(owner, name, value):
        patches.append((owner, name, owner.__dict__.get(name, _MISSING)))
        setattr(owner, name, value)

    if device_type not in ("cuda", "cpu"):
        raise ValueError(f"code path {device_type!r}: use 'cuda' or 'cpu'")
    patch(F, "scaled_dot_product_attention", _sdpa_as_cuda if device_type == "cuda" else _sdpa_as_cpu)
    if device_type == "cuda":
        patch(torch.Tensor, "is_cuda", property(lambda t: t.device.type in ("cuda", "meta")))
        patch(torch.cuda, "device", _NoCudaDevice)
    vae_frames = _optional_module("motion_i2v_core.models.vae_frames")
    if free_bytes is not None and vae_frames is not None and hasattr(vae_frames, "free_memory"):
        ask = vae_frames.free_memory
        patch(vae_frames, "free_memory",
              lambda device: max(0, int(free_bytes())) if torch.device(device).type == "meta" else ask(device))
    if device_type == "cuda" and triton_installed():
        from triton.runtime.jit import KernelInterface

        def launcher(kernel, grid):
            name = getattr(kernel, "__name__", None) or getattr(getattr(kernel, "fn", None), "__name__", "kernel")

            def launch(*args, **kwargs):
                stubs.launches[name] = stubs.launches.get(name, 0) + 1

            return launch

        patch(KernelInterface, "__getitem__", launcher)
        # The kernel wrappers accept non-CUDA tensors only in Triton's interpreter mode; the launches
        # are stubbed above, so nothing is interpreted.
        os.environ["TRITON_INTERPRET"] = "1"
    # What the registry learns about first calls on meta tensors is not true of a real GPU: restored after.
    proven, failed = set(registry._proven), dict(registry._failed)
    try:
        yield stubs
    finally:
        stubs.failed = {f"{op}/{b}": why for (op, b), why in registry._failed.items() if (op, b) not in failed}
        registry._proven.clear()
        registry._proven.update(proven)
        registry._failed.clear()
        registry._failed.update(failed)
        for owner, name, old in reversed(patches):
            if old is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, old)
        if saved_env is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = saved_env


_MISSING = object()


# -------------------------------------------------------------------------------------------------
# models and phases


def build_models(size, dtype: torch.dtype, device=DEVICE, fp8_unets: bool = False):
    """The four models at ``size`` (a ``bench.BenchSize``) on ``device``, weights uninitialised on meta."""
    from motion_i2v_core.models.config import UNetConfig, VAEConfig

    unet_kw = dict(block_out_channels=size.unet_channels, layers_per_block=size.layers_per_block,
                   cross_attention_dim=size.cross_dim)
    vae_kw = dict(block_out_channels=size.vae_channels, layers_per_block=size.layers_per_block)
    kw = dict(dtype=dtype, device=device)
    # fp8: the UNets store float8 weights and cast them per layer call (cast_ops), as ComfyUI's ops do
    unet = dict(dtype=FP8, device=device, operations=cast_ops, compute_dtype=dtype) if fp8_unets else kw
    models = {
        "flow_unet": FlowUNet(UNetConfig.sd15_flow(**unet_kw), with_controlnet=True, **unet).eval(),
        "render_unet": RenderUNet(UNetConfig.sd15_render(**unet_kw), **unet).eval(),
        "flow_vae": AutoencoderKL(VAEConfig.sd15(2, **vae_kw), **kw).eval(),
        "image_vae": AutoencoderKL(VAEConfig.sd15(3, **vae_kw), **kw).eval(),
    }
    for name in ("flow_unet", "render_unet") if fp8_unets else ():
        keep_first_parameter_in(models[name], dtype)
    return models


def keep_first_parameter_in(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Store a float8 network's first parameter (``conv_in.weight``, a few KiB) in its compute dtype:
    the pipelines read the compute dtype from the first parameter; cast_ops casts it per call anyway."""
    name, p = next(module.named_parameters())
    owner = module.get_submodule(name.rpartition(".")[0])
    setattr(owner, name.rpartition(".")[2], torch.nn.Parameter(p.detach().to(dtype), requires_grad=False))


def storage_bytes(module: torch.nn.Module) -> int:
    seen = {}
    for t in list(module.parameters()) + list(module.buffers()):
        s = t.untyped_storage()
        seen[id(s)] = _rounded(s.nbytes())
    return sum(seen.values())


def model_weights(models) -> dict[str, int]:
    """Bytes per model; the ControlNet reported apart from the flow UNet that holds it."""
    out = {name: storage_bytes(m) for name, m in models.items()}
    controlnet = getattr(models["flow_unet"], "controlnet", None)
    if controlnet is not None:
        out["controlnet"] = storage_bytes(controlnet)
    return out


@dataclass
class _CallRecord:
    rise: int  # call peak minus the live bytes at its start, less what the call left allocated besides its outputs
    outputs: list  # (size, stride, dtype) of each tensor leaf, or the leaf itself
    spec: object
    flops: int


def _signature(args, kwargs):
    """What decides a model call's shapes: tensor metadata; numbers (the timestep) match any value."""
    leaves, spec = tree_flatten((args, kwargs))

    def key(a):
        if isinstance(a, torch.Tensor):
            return ("T", tuple(a.shape), a.stride(), a.dtype, a.device.type)
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            return ("N", type(a).__name__)
        return ("V", repr(a))

    return str(spec), tuple(key(a) for a in leaves)


@contextlib.contextmanager
def phase_hooks(tracker: LiveMemory, models, flop_counter=None, replay: bool = True):
    """Label the calls of every model with their phase, for the tracker; yields the replayed FLOPs.

    With ``replay``, a call with the same signature (``_signature``) as an earlier call of the same
    model method is not traced again: its recorded rise above the live bytes (less what the first
    call kept allocated, e.g. a cache of constants) is added to the current
    live bytes, its FLOPs are added again, and outputs of the recorded sizes, strides and dtypes are
    returned (the sampling loop's 25 identical UNet calls per stage cost one trace).
    """
    wrapped = []
    replayed = {"flops": 0}

    def flops_now():
        return flop_counter.get_total_flops() if flop_counter is not None else 0

    def wrap(obj, method, phase):
        inner = getattr(obj, method)
        memo: dict = {}

        def call(*args, **kwargs):
            sig = _signature(args, kwargs) if replay else None
            rec = memo.get(sig)
            with tracker.in_phase(phase):
                if rec is not None:
                    tracker._note(rec.rise)
                    replayed["flops"] += rec.flops
                    leaves = [torch.empty_strided(o[0], o[1], dtype=o[2], device=DEVICE) if isinstance(o, tuple)
                              else o for o in rec.outputs]
                    return tree_unflatten(leaves, rec.spec)
                start, f0 = tracker.current, flops_now()
                tracker.call_peak = start
                out = inner(*args, **kwargs)
                leaves, spec = tree_flatten(out)
                if replay and all(isinstance(t, torch.Tensor) and t.device.type == DEVICE.type for t in leaves):
                    metas = [(tuple(t.shape), t.stride(), t.dtype) for t in leaves]
                    outputs = sum(_rounded(t.untyped_storage().nbytes()) for t in {id(t): t for t in leaves}.values())
                    # What the first call left behind besides its outputs (caches of constants kept on the
                    # model) exists already when a later call starts: not counted a second time.
                    kept = max(0, tracker.current - start - outputs)
                    memo[sig] = _CallRecord(tracker.call_peak - start - kept, metas, spec, flops_now() - f0)
                return out

        setattr(obj, method, call)
        wrapped.append((obj, method))

    wrap(models["flow_vae"], "encode", "control_encode")
    wrap(models["flow_vae"], "decode", "flow_decode")
    wrap(models["image_vae"], "encode", "image_encode")
    wrap(models["image_vae"], "decode", "image_decode")
    wrap(models["flow_unet"], "forward", "stage1_unet_step")
    wrap(models["render_unet"], "forward", "stage2_unet_step")
    try:
        yield replayed
    finally:
        for obj, method in wrapped:
            delattr(obj, method)  # the instance attribute hid the class's method


def generation_inputs(size, frames: int):
    """Reference image and text embeddings (CPU, real: they are small and the pipeline moves them)."""
    image = torch.full((3, size.height, size.width), 0.5)
    cond = torch.zeros(1, 77, size.cross_dim)
    return image, cond, cond.clone()


# -------------------------------------------------------------------------------------------------
# running and reporting


@dataclass
class Trace:
    """One traced generation: per-phase activation peaks (bytes), FLOPs, weights (bytes per model)."""

    weights: dict[str, int]
    phase_peak: dict[str, int]
    phase_calls: dict[str, int]
    peak: int
    flops: int
    triton_launches: dict[str, int]
    order: list[str]
    kernels_failed: dict[str, str] = field(default_factory=dict)


def trace_generation(size, *, dtype=torch.float16, fp8: bool = False, frames: Optional[int] = None,
                     steps: Optional[int] = None, guidance: float = 7.0, decode_batch: Optional[int] = None,
                     count_flops: bool = True, replay: bool = True, device_type: str = "cuda",
                     models: Optional[dict] = None, seed: int = 0, card_bytes: Optional[int] = None,
                     residency: str = "resident") -> Trace:
    """Run predict_flow + render_video at ``size`` on meta tensors and record memory and FLOPs.

    ``device_type`` is the code path (``code_path``). ``models`` (from ``build_models``) and
    ``device_type="cpu"`` with ``replay=False`` also trace a real CPU run: the tracker then counts CPU
    storages (what the test against the allocator does).
    """
    frames = frames or size.frames
    steps = steps or size.steps
    models = models if models is not None else build_models(size, dtype, fp8_unets=fp8)
    tracked = next(models["flow_unet"].parameters()).device.type
    weights = model_weights(models)
    stage1 = Stage1Models(models["flow_unet"], models["flow_vae"], models["image_vae"])
    stage2 = Stage2Models(models["render_unet"], models["image_vae"])
    image, cond, uncond = generation_inputs(size, frames)
    extra = {} if decode_batch is None else {"decode_batch": decode_batch}
    tracker = LiveMemory(tracked)
    free = None
    if card_bytes is not None:
        # The query sizes VAE chunks: a card of this size holding, besides the live tensors, the weights
        # that ``residency`` keeps during a VAE phase.
        held = max(sum(weights[m] for m in _resident(residency, p, PHASE_MODEL[p]))
                   for p in ("control_encode", "image_encode", "flow_decode", "image_decode"))
        free = lambda: card_bytes - held - tracker.current  # noqa: E731
    counter = FlopCounterMode(display=False) if count_flops else None
    with code_path(device_type, free) as stubs, counter or contextlib.nullcontext(), \
            phase_hooks(tracker, models, counter, replay) as replayed, tracker:
        pred = predict_flow(stage1, image, cond, uncond, num_frames=frames, steps=steps, guidance=guidance,
                            seed=seed, **extra)
        video = render_video(stage2, image, cond, uncond, pred.flow, steps=steps, guidance=guidance, seed=seed,
                             **extra)
    del pred, video
    order = [p for p in PHASES if p in tracker.phase_peak]
    flops = counter.get_total_flops() + replayed["flops"] if counter is not None else 0
    return Trace(weights, dict(tracker.phase_peak), dict(tracker.phase_calls), tracker.peak, flops,
                 dict(stubs.launches), order, dict(stubs.failed))


MODELS = ("flow_unet", "render_unet", "flow_vae", "image_vae")
# residency policies: phase (and the model used last) -> the models on the device
STAGE_MODELS = {1: ("flow_unet", "flow_vae", "image_vae"), 2: ("render_unet", "image_vae")}


def _resident(policy: str, phase: str, last_model: str) -> tuple[str, ...]:
    if policy == "resident":
        return MODELS
    if policy == "low_vram":  # only the model the phase calls (the last one used in between)
        return (PHASE_MODEL.get(phase, last_model),)
    if policy == "stagewise":  # the bench's --low-vram: the running stage's models
        if phase in ("stage1_unet_step", "control_encode", "flow_decode"):
            return STAGE_MODELS[1]
        if phase in ("stage2_unet_step", "image_decode"):
            return STAGE_MODELS[2]
        return max(STAGE_MODELS.values(), key=len)  # image encode / sampler arithmetic: either stage; the larger
    raise ValueError(f"unknown residency {policy!r}: resident, low_vram or stagewise")


def mode_report(trace: Trace, residency: str) -> dict:
    """Peak per phase and overall with the weights that ``residency`` keeps on the device; in GiB."""
    phases = {}
    last_model = "flow_vae"
    weights_max = 0
    for phase in trace.order:
        activation = trace.phase_peak[phase]
        last_model = PHASE_MODEL.get(phase, last_model)
        resident_bytes = sum(trace.weights[m] for m in _resident(residency, phase, last_model))
        weights_max = max(weights_max, resident_bytes)
        phases[phase] = {"activation_gib": activation / GIB, "weights_gib": resident_bytes / GIB,
                         "peak_gib": (activation + resident_bytes) / GIB, "calls": trace.phase_calls.get(phase, 0)}
    peak_phase = max(phases, key=lambda p: phases[p]["peak_gib"])
    return {
        "peak_gib": phases[peak_phase]["peak_gib"],
        "peak_phase": peak_phase,
        "weights_gib": weights_max / GIB,
        "weights_per_model_gib": {k: v / GIB for k, v in trace.weights.items()},
        "activation_peak_gib": max(p["activation_gib"] for p in phases.values()),
        "phases": phases,
    }


# mode -> (UNet weights in fp8, residency, the card its target is for (GiB), issue 13's target peak (GiB))
MODES = {
    "resident_fp16": (False, "resident", 8, 7.5),
    "low_vram_fp16": (False, "low_vram", 6, 5.0),
    "resident_fp8": (True, "resident", 8, None),
    "low_vram_fp8": (True, "low_vram", 4, 3.5),
}


def estimate(size, *, frames=None, steps=None, guidance=7.0, decode_batch=None) -> dict:
    """The JSON report: modes resident_fp16, low_vram_fp16, resident_fp8, low_vram_fp8 and the TFLOPs.

    Each mode is traced on its own: where the pipelines size their VAE chunks from the free memory,
    the free memory is that of the mode's card (``MODES``) less its resident weights and live tensors.
    """
    modes, traces = {}, {}
    for name, (fp8, residency, card_gib, target) in MODES.items():
        trace = trace_generation(size, dtype=torch.float16, fp8=fp8, frames=frames, steps=steps, guidance=guidance,
                                 decode_batch=decode_batch, count_flops=not traces, card_bytes=card_gib * GIB,
                                 residency=residency)
        traces[name] = trace
        modes[name] = {**mode_report(trace, residency), "card_gib": card_gib, "target_peak_gib": target}
    fp16 = traces["resident_fp16"]
    return {
        "size": size.describe(),
        "frames": frames or size.frames,
        "steps": steps or size.steps,
        "guidance": guidance,
        "decode_batch": decode_batch,
        "ops_backend": get_backend(),
        "triton_launches_stubbed": fp16.triton_launches,
        "kernels_failed_on_meta": fp16.kernels_failed,
        "modes": modes,
        "tflop": fp16.flops / 1e12,
        "method": "meta tensors on the CUDA code path, live storage bytes tracked by a dispatch mode "
                  "(motion_i2v_core/estimate.py docstring)",
    }


def print_report(report: dict) -> None:
    print(f"estimate: {report['size']} (run: {report['frames']} frames, {report['steps']} steps, "
          f"CFG {report['guidance']}); {report['tflop']:.1f} TFLOP (matmul/conv/attention)")
    print(f"  Triton launches stubbed: {sum(report['triton_launches_stubbed'].values())}")
    for name, mode in report["modes"].items():
        phases = ", ".join(f"{p} {v['activation_gib']:.2f}" for p, v in mode["phases"].items())
        target = f", target <= {mode['target_peak_gib']} GiB" if mode.get("target_peak_gib") else ""
        print(f"  {name:14s} peak {mode['peak_gib']:5.2f} GiB (in {mode['peak_phase']}), weights "
              f"{mode['weights_gib']:.2f} GiB ({mode.get('card_gib')} GiB card{target}); activation peaks GiB: {phases}")


def run_cli(size, json_path: Optional[str], **kw) -> dict:
    import json

    report = estimate(size, **kw)
    print_report(report)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=1)
    return report


__all__ = ["LiveMemory", "code_path", "estimate", "trace_generation", "mode_report", "run_cli"]
