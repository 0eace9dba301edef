"""Benchmark: our generation path against a naive reference path, side by side, in one run.

``python -m motion_i2v_core.bench [--device cuda] [--size sd15] ...`` times

1. the ops: the stage-2 forward splat at the 40x64 level (C = 320, B*(F-1) = 30 items) and the
   motion-augmented temporal attention at the same level (B = 2 CFG branches, F = 16);
2. the whole two-stage generation (flow prediction with ControlNet + video rendering, CFG, VAE
   encode/decode) with random weights;

each for "ours" and "naive", and prints absolute times, ratios, peak memory and the output difference.

"naive" is the official code's way of computing, the "naive" ops backend (``ops/naive.py``, selected
through the op registry): float32 weights and activations; the forward splat run item by item on
``cat[X, 1]`` (corners recomputed for every batch item, the normaliser splatted as an extra channel of
every item); the flow resized for every motion module call instead of once per level; the interleaved
sequence built with ``stack``; attention as explicit ``softmax(QK^T/sqrt(d)) V`` (unfused); and, outside
the ops, the VAE decoding one frame at a time. "ours" is the pack's path: ``--dtype`` weights (fp16 by default on CUDA), the ops registry
("auto": Triton kernels on CUDA when triton imports, else the pure-torch reference), flows cached per
level, SDPA, batched VAE decode, optional ``torch.compile`` and a low-VRAM mode.

Sizes: ``sd15`` = SD1.5 widths, 512x320, 16 frames, 25 steps (the official default); ``small`` = a
reduced model (UNet channels 32-64, one layer per block, SD1.5's block structure and 8 heads) at
192x128 with 3 steps, because SD1.5 widths take minutes per step on a 2-core CPU; the op benchmark keeps
the SD1.5 40x64 level shapes at every size but "tiny" (the smoke test). Both paths always use the same
weights, inputs and noise.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from motion_i2v_core.models.config import UNetConfig, VAEConfig
from motion_i2v_core.loading.official import Stage1Models, Stage2Models
from motion_i2v_core.ops import get_backend, get_op, implementation, status, use_backend
from motion_i2v_core.ops.motion_attention import warp_source_index
from motion_i2v_core.pipelines import predict_flow, render_video
from motion_i2v_core.estimate import keep_first_parameter_in
from motion_i2v_core.models.operations import cast_ops
from motion_i2v_core.models.unet3d import FlowUNet, RenderUNet
from motion_i2v_core.models.vae import AutoencoderKL

# fp8: the UNets store float8_e4m3fn weights and compute in fp16 (cast per layer call); the VAEs are fp16.
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp8": torch.float8_e4m3fn}


@dataclass(frozen=True)
class BenchSize:
    """Model widths and generation settings of one benchmark size."""

    name: str
    unet_channels: tuple[int, ...]
    vae_channels: tuple[int, ...]
    layers_per_block: int
    cross_dim: int
    height: int
    width: int
    frames: int
    steps: int
    # op benchmark: level height x width, channels, CFG batch, frames, heads
    op_level: tuple[int, int] = (40, 64)
    op_channels: int = 320
    op_batch: int = 2
    op_frames: int = 16
    op_heads: int = 8

    def describe(self) -> str:
        return (f"{self.name}: UNet {self.unet_channels} x{self.layers_per_block}, VAE {self.vae_channels}, "
                f"text {self.cross_dim}-wide, {self.width}x{self.height}, {self.frames} frames, {self.steps} steps")


SIZES = {
    "sd15": BenchSize("sd15", (320, 640, 1280, 1280), (128, 256, 512, 512), 2, 768, 320, 512, 16, 25),
    "small": BenchSize("small", (32, 64, 64, 64), (32, 32, 64, 64), 1, 64, 128, 192, 16, 3),
    # Only for the smoke test: seconds on a CPU.
    "tiny": BenchSize("tiny", (32, 32, 32, 32), (32, 32, 32, 32), 1, 32, 64, 64, 3, 1,
                      op_level=(8, 12), op_channels=32, op_batch=2, op_frames=3, op_heads=8),
}


# -------------------------------------------------------------------------------------------------
# measuring


class PeakMemory:
    """Peak memory of a block: CUDA ``max_memory_allocated``, else the process RSS sampled every 5 ms."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_bytes = 0
        self._stop = threading.Event()

    @staticmethod
    def rss_bytes() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak_bytes = max(self.peak_bytes, self.rss_bytes())

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak_bytes = self.rss_bytes() if os.path.exists("/proc/self/statm") else 0
            self._thread = threading.Thread(target=self._sample, daemon=True)
            if self.peak_bytes:
                self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self.peak_bytes:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self.peak_bytes, self.rss_bytes())
        return False

    @property
    def kind(self) -> str:
        return "CUDA max_memory_allocated" if self.device.type == "cuda" else "process RSS"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fns: dict[str, Callable[[], object]], device: torch.device, repeats: int,
               warmup: int = 1) -> dict[str, tuple[float, object]]:
    """name -> (fastest seconds of ``repeats`` calls, last result), after ``warmup`` calls each.

    The candidates are called in turn (a, b, c, a, b, c, ...) so that load from other processes hits
    them alike, and the minimum is reported as the estimate least disturbed by it.
    """
    last: dict[str, object] = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            last[name] = fn()
    best = {name: float("inf") for name in fns}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            last[name] = fn()
            _sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: (best[name], last[name]) for name in fns}


def _diff(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    d = (a.float().cpu() - b.float().cpu()).abs()
    scale = b.float().abs().max().item() or 1.0
    return {"max_abs": d.max().item(), "mean_abs": d.mean().item(), "max_rel": d.max().item() / scale}


# -------------------------------------------------------------------------------------------------
# op benchmark


def _kernels_active(device: torch.device) -> bool:
    """True when "ours" runs the Triton kernels: CUDA, triton registered, and "auto" or "triton" selected."""
    registered = "triton" in status()["backends"]["forward_splat"]
    return device.type == "cuda" and get_backend() in ("auto", "triton") and registered


@torch.no_grad()
def bench_ops(size: BenchSize, device: torch.device, dtype: torch.dtype, repeats: int) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    h, w = size.op_level
    c, b, frames = size.op_channels, size.op_batch, size.op_frames
    items = b * (frames - 1)
    ref_feats = torch.randn(b, c, h, w, generator=gen)
    flows = torch.randn(frames - 1, 2, h, w, generator=gen) * 3
    src = warp_source_index(b, frames, False)
    x = ref_feats[src].contiguous()  # (B*(F-1), C, H, W): what the motion attention splats
    flow_items = flows.repeat(b, 1, 1, 1)
    dtype_name = str(dtype).replace("torch.", "")
    # Without CUDA + triton (and in fp32), "ours" is the torch reference op itself: not timed twice.
    kernels = _kernels_active(device)
    separate_ours = kernels or dtype != torch.float32
    results = []

    x_dev, flow_dev = x.to(device), flow_items.to(device)
    x_ours = x_dev.to(dtype)
    naive_splat, reference_splat = (implementation("forward_splat", name) for name in ("naive", "torch"))
    fns = {"naive": lambda: naive_splat(x_dev, flow_dev), "ref": lambda: reference_splat(x_dev, flow_dev, "avg")}
    if separate_ours:
        fns["ours"] = lambda: get_op("forward_splat")(x_ours, flow_dev, "avg")
    if kernels:
        from motion_i2v_core.ops.triton_splat import warp_splat

        ref_dev = ref_feats.to(device, dtype)
        fl, xi, fi = flows.to(device), src.to(device), (torch.arange(items, device=device) % (frames - 1))
        fns["shared"] = lambda: warp_splat(ref_dev, fl, x_index=xi, flow_index=fi)
    t = time_calls(fns, device, repeats)
    t_ours, out_ours = t["ours"] if separate_ours else t["ref"]
    row = {"op": f"splat avg {items}x{c}x{h}x{w}", "naive_s": t["naive"][0], "torch_ref_s": t["ref"][0],
           "ours_s": t_ours, "ours_dtype": dtype_name, "diff_vs_naive": _diff(out_ours, t["naive"][1])}
    bytes_moved = items * c * h * w * (x_ours.element_size() * 2) + flow_items.numel() * 4
    row["ours_effective_GBps"] = bytes_moved / t_ours / 1e9
    if kernels:
        row["ours_shared_flow_s"] = t["shared"][0]
    results.append(row)

    # motion-augmented attention (before to_out) at the same level
    tokens = torch.randn(b * frames, h * w, c, generator=gen)
    flow5 = torch.cat([torch.zeros(1, 2, h, w), flows])[None]
    pe = torch.randn(1, 32, c, generator=gen) * 0.1
    ws = [torch.randn(c, c, generator=gen) / math.sqrt(c) for _ in range(3)]
    kw = dict(num_frames=frames, height=h, width=w, heads=size.op_heads)

    def run(fn, dt):
        w_q, w_k, w_v = (wt.to(device, dt) for wt in ws)
        args = dict(pe=pe.to(device), w_q=w_q, w_k=w_k, w_v=w_v, **kw)
        xt, ft = tokens.to(device, dt), flow5.to(device)
        return lambda: fn(xt, ft, **args)

    op = "motion_augmented_attention"
    fns = {"naive": run(implementation(op, "naive"), torch.float32), "ref": run(implementation(op, "torch"), torch.float32)}
    if separate_ours:
        fns["ours"] = run(get_op(op), dtype)
    if kernels:
        # The SDPA-vs-fused decision: the same path with the "triton" backend selected explicitly, whose
        # attention step is the Triton kernel instead of SDPA.
        def with_triton_core(call):
            def fn():
                with use_backend("triton"):
                    return call()
            return fn

        fns["triton_core"] = with_triton_core(run(get_op(op), dtype))
    t = time_calls(fns, device, repeats)
    t_ours, out_ours = t["ours"] if separate_ours else t["ref"]
    row = {"op": f"motion attention B={b} F={frames} {h}x{w}x{c} heads={size.op_heads}",
           "naive_s": t["naive"][0], "torch_ref_s": t["ref"][0], "ours_s": t_ours, "ours_dtype": dtype_name,
           "diff_vs_naive": _diff(out_ours, t["naive"][1])}
    if kernels:
        row["ours_triton_core_s"] = t["triton_core"][0]
        row["triton_core_diff_vs_naive"] = _diff(t["triton_core"][1], t["naive"][1])
    results.append(row)
    return results


# -------------------------------------------------------------------------------------------------
# whole generation


def build_master_weights(size: BenchSize, seed: int = 0):
    """Random float32 weights (CPU) and configs of the four models, so both paths load the same numbers."""
    torch.manual_seed(seed)
    unet_kw = dict(block_out_channels=size.unet_channels, layers_per_block=size.layers_per_block,
                   cross_attention_dim=size.cross_dim)
    with torch.device("cpu"):
        flow_unet = FlowUNet(UNetConfig.sd15_flow(**unet_kw), with_controlnet=True)
        render_unet = RenderUNet(UNetConfig.sd15_render(**unet_kw))
        vae_kw = dict(block_out_channels=size.vae_channels, layers_per_block=size.layers_per_block)
        flow_vae = AutoencoderKL(VAEConfig.sd15(2, **vae_kw))
        image_vae = AutoencoderKL(VAEConfig.sd15(3, **vae_kw))
    modules = {"flow_unet": flow_unet, "render_unet": render_unet, "flow_vae": flow_vae, "image_vae": image_vae}
    return {name: m.state_dict() for name, m in modules.items()}, {n: m.config for n, m in modules.items()}


def instantiate(master, configs, device, dtype):
    """Both stages built on the meta device and given the master weights cast to ``dtype`` on ``device``."""

    fp8 = dtype == torch.float8_e4m3fn
    vae_dtype = torch.float16 if fp8 else dtype

    def load(module, name, dt=dtype):
        sd = {k: v.to(device=device, dtype=dt if v.is_floating_point() else v.dtype)
              for k, v in master[name].items()}
        module.load_state_dict(sd, assign=True)
        if fp8 and isinstance(module, (FlowUNet, RenderUNet)):
            keep_first_parameter_in(module, torch.float16)
        return module.eval()

    unet_kw = dict(operations=cast_ops, compute_dtype=torch.float16) if fp8 else {}
    with torch.device("meta"):
        flow_unet = FlowUNet(configs["flow_unet"], with_controlnet=True, **unet_kw)
        render_unet = RenderUNet(configs["render_unet"], **unet_kw)
        flow_vae = AutoencoderKL(configs["flow_vae"])
        image_vae = AutoencoderKL(configs["image_vae"])
    flow_vae, image_vae = load(flow_vae, "flow_vae", vae_dtype), load(image_vae, "image_vae", vae_dtype)
    stage1 = Stage1Models(load(flow_unet, "flow_unet"), flow_vae, image_vae)
    stage2 = Stage2Models(load(render_unet, "render_unet"), stage1.image_vae)
    return stage1, stage2


def _to(models, device):
    for name in vars(models):
        getattr(models, name).to(device)


@dataclass
class PathResult:
    name: str
    dtype: str
    stage1_s: float = 0.0
    stage2_s: float = 0.0
    total_s: float = 0.0
    peak_bytes: int = 0
    notes: list[str] = field(default_factory=list)
    compiled_graphs_in_timed_run: int | None = None  # --compile: must be 0 (the warm-up compiled them all)


def _compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def run_generation(name, master, configs, inputs, size, device, dtype, *, steps, frames, naive, compile_unets,
                   low_vram, warmup, sync_debug=False):
    """One two-stage generation; returns (PathResult, flow, frames)."""
    offload = low_vram and device.type == "cuda"
    stage1, stage2 = instantiate(master, configs, torch.device("cpu") if offload else device, dtype)
    if offload:
        _to(stage1, device)  # the stage-2 UNet stays on the CPU until stage 1 has left the GPU
    if compile_unets:
        stage1.unet.forward = torch.compile(stage1.unet.forward)
        stage2.unet.forward = torch.compile(stage2.unet.forward)
    image, cond, uncond = (t.to(device) for t in inputs)
    result = PathResult(name, str(dtype).replace("torch.", ""))
    decode_batch = 1 if naive else (2 if low_vram else frames)

    def generate(n_steps):
        t0 = time.perf_counter()
        pred = predict_flow(stage1, image, cond, uncond, num_frames=frames, steps=n_steps, guidance=7.0, seed=1,
                           decode_batch=decode_batch)
        _sync(device)
        t1 = time.perf_counter()
        if offload:
            # The image VAE is shared by both stages and stays; the flow UNet + ControlNet and flow VAE leave.
            stage1.unet.to("cpu")
            stage1.flow_vae.to("cpu")
            torch.cuda.empty_cache()
            stage2.unet.to(device)
        video = render_video(stage2, image, cond, uncond, pred.flow, steps=n_steps, guidance=7.0, seed=2,
                             decode_batch=decode_batch)
        _sync(device)
        t2 = time.perf_counter()
        if offload:
            stage2.unet.to("cpu")
            torch.cuda.empty_cache()
            stage1.unet.to(device)
            stage1.flow_vae.to(device)
        return pred.flow, video.frames, t1 - t0, t2 - t1

    with use_backend("naive") if naive else contextlib.nullcontext():
        if warmup:
            # Kernel compilation, cuDNN autotuning, torch.compile: not part of the timing. Same shapes,
            # dtypes and modules as the timed run, so it compiles what that run uses (with --compile, two
            # steps: the second call sees a new timestep, which is where a value-specialised graph recompiles).
            generate(2 if compile_unets and steps > 1 else 1)
            result.notes.append("warm-up run excluded")
        if sync_debug and device.type == "cuda":
            torch.cuda.set_sync_debug_mode("warn")  # every host<->device sync of the timed run is reported
        graphs = _compiled_graphs() if compile_unets else None
        try:
            with PeakMemory(device) as mem:
                flow, video, t_s1, t_s2 = generate(steps)
            if compile_unets:
                result.compiled_graphs_in_timed_run = _compiled_graphs() - graphs
        finally:
            if sync_debug and device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
    result.stage1_s, result.stage2_s, result.total_s = t_s1, t_s2, t_s1 + t_s2
    result.peak_bytes = mem.peak_bytes
    del stage1, stage2
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result, flow, video


def make_inputs(size: BenchSize, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    # A smooth random image (low-frequency noise upsampled), so the VAE sees image-like input.
    image = F.interpolate(torch.rand(1, 3, 8, 8, generator=gen), size=(size.height, size.width), mode="bilinear",
                          align_corners=False)[0].clamp(0, 1)
    cond = torch.randn(1, 77, size.cross_dim, generator=gen)
    uncond = torch.randn(1, 77, size.cross_dim, generator=gen)
    return image, cond, uncond


# -------------------------------------------------------------------------------------------------
# CLI


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{p.name} ({p.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, CUDA {torch.version.cuda}"
    return (f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m motion_i2v_core.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (cuda when available)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                   help="our path's dtype (default fp16 on CUDA, fp32 on CPU)")
    p.add_argument("--size", choices=sorted(SIZES), default=None,
                   help="sd15 (default on CUDA) or small (default on CPU)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the size's)")
    p.add_argument("--frames", type=int, default=None, help="video frames (default: the size's)")
    p.add_argument("--repeats", type=int, default=None,
                   help="op timing repeats (fastest is reported; default 10 on CUDA, 2 on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile both UNets on our path")
    p.add_argument("--low-vram", action="store_true", help="our path keeps only the running stage on the GPU")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-warmup", action="store_true",
                   help="time the first generation too (includes one-time set-up costs)")
    p.add_argument("--sync-debug", action="store_true",
                   help="CUDA: warn on every host sync during our timed generation (finds syncs in the step loop)")
    p.add_argument("--skip-ops", action="store_true")
    p.add_argument("--skip-generation", action="store_true")
    p.add_argument("--estimate", action="store_true",
                   help="no timing: estimate memory per phase and mode and the FLOPs of the generation on meta "
                        "tensors (CUDA code path, no GPU needed; see motion_i2v_core/estimate.py)")
    p.add_argument("--decode-batch", type=int, default=None,
                   help="--estimate: frames per VAE decode call (default: the pipelines' default, as the nodes run)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.estimate:
        from motion_i2v_core import estimate

        return estimate.run_cli(SIZES[args.size or "sd15"], args.json, frames=args.frames, steps=args.steps,
                                decode_batch=args.decode_batch)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch sees no CUDA device; use --device cpu")
    size = SIZES[args.size or ("sd15" if device.type == "cuda" else "small")]
    dtype = DTYPES[args.dtype or ("fp16" if device.type == "cuda" else "fp32")]
    steps = args.steps or size.steps
    frames = args.frames or size.frames
    repeats = args.repeats or (10 if device.type == "cuda" else 2)
    warmup = not args.no_warmup
    report: dict = {
        "device": describe_device(device), "size": size.describe(), "dtype_ours": str(dtype).replace("torch.", ""),
        "steps": steps, "frames": frames, "compile": args.compile, "low_vram": args.low_vram,
        "backend": status(),
    }
    print(f"device: {report['device']}")
    print(f"size:   {size.describe()} (run: {frames} frames, {steps} steps, CFG 7)")
    triton_state = "registered" if "triton" in report["backend"]["backends"]["forward_splat"] else "not installed"
    print(f"ours:   {str(dtype).replace('torch.', '')}, ops backend {get_backend()} "
          f"(triton {triton_state}; kernels run only on CUDA), "
          f"compile={args.compile}, low_vram={args.low_vram}; naive: float32, unfused, official-style warp")

    if not args.skip_ops:
        print(f"\nops (fastest of {repeats} alternating calls after 1 warm-up call each):")
        report["ops"] = bench_ops(size, device, dtype, repeats)
        for row in report["ops"]:
            print(f"  {row['op']}: naive {row['naive_s'] * 1e3:.1f} ms, "
                  f"torch reference {row['torch_ref_s'] * 1e3:.1f} ms, "
                  f"ours {row['ours_s'] * 1e3:.1f} ms -> {row['naive_s'] / row['ours_s']:.2f}x vs naive; "
                  f"max |ours - naive| = {row['diff_vs_naive']['max_abs']:.2e}")
            if "ours_triton_core_s" in row:
                print(f"    same path with the Triton attention kernel instead of SDPA: "
                      f"{row['ours_triton_core_s'] * 1e3:.2f} ms (SDPA: {row['ours_s'] * 1e3:.2f} ms)")
            if "ours_shared_flow_s" in row:
                print(f"    shared-flow Triton warp ({size.op_batch} refs x {size.op_frames - 1} flows): "
                      f"{row['ours_shared_flow_s'] * 1e3:.2f} ms")

    if not args.skip_generation:
        print("\nbuilding random weights ...", flush=True)
        master, configs = build_master_weights(size)
        inputs = make_inputs(size)
        results = {}
        outputs = {}
        for name, naive in (("naive", True), ("ours", False)):
            dt = torch.float32 if naive else dtype
            print(f"generating ({name}) ...", flush=True)
            res, flow, video = run_generation(
                name, master, configs, inputs, size, device, dt, steps=steps, frames=frames, naive=naive,
                compile_unets=args.compile and not naive, low_vram=args.low_vram and not naive, warmup=warmup,
                sync_debug=args.sync_debug and not naive,
            )
            results[name], outputs[name] = res, (flow, video)
        naive, ours = results["naive"], results["ours"]
        report["generation"] = {k: asdict(v) for k, v in results.items()}
        report["generation"]["speedup"] = naive.total_s / ours.total_s
        report["generation"]["stage1_speedup"] = naive.stage1_s / ours.stage1_s
        report["generation"]["stage2_speedup"] = naive.stage2_s / ours.stage2_s
        report["generation"]["flow_diff_px"] = _diff(outputs["ours"][0], outputs["naive"][0])
        report["generation"]["frames_diff"] = _diff(outputs["ours"][1], outputs["naive"][1])
        mem_kind = PeakMemory(device).kind
        if device.type != "cuda":
            mem_kind += ", whole-process high-water mark: also holds what earlier phases allocated"
        print(f"\ngeneration ({frames} frames, {steps} steps, both stages, CFG 7):")
        for r in (naive, ours):
            print(f"  {r.name:5s} {r.dtype:8s} stage 1 {r.stage1_s:7.2f} s  stage 2 {r.stage2_s:7.2f} s  "
                  f"total {r.total_s:7.2f} s  peak {_fmt_bytes(r.peak_bytes)} ({mem_kind})")
        g = report["generation"]
        print(f"  speed-up ours vs naive: {g['speedup']:.2f}x (stage 1 {g['stage1_speedup']:.2f}x, "
              f"stage 2 {g['stage2_speedup']:.2f}x)")
        if ours.compiled_graphs_in_timed_run is not None:
            print(f"  graphs compiled during the timed run: {ours.compiled_graphs_in_timed_run} (0 = warm-up covered it)")
        print(f"  output difference ours vs naive: flow max {g['flow_diff_px']['max_abs']:.3e} px "
              f"(mean {g['flow_diff_px']['mean_abs']:.2e}); frames max {g['frames_diff']['max_abs']:.3e} "
              f"(mean {g['frames_diff']['mean_abs']:.2e}) on a 0..1 scale")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    return report


if __name__ == "__main__":
    main()
