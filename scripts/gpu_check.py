"""Steps of scripts/gpu_check.sh that need Python: generation variants, estimates, the summary.

    python scripts/gpu_check.py OUT_DIR variants  [--cpu]   ours-only generations, measured peaks
    python scripts/gpu_check.py OUT_DIR estimates [--cpu]   the estimator's peaks for the same runs
    python scripts/gpu_check.py OUT_DIR summary             summary.json + summary.txt from what exists

Each step writes OUT_DIR/<step>.json after every item, so a timeout keeps what was done. ``--cpu`` is
the dry run: the same steps at the "tiny" size on the CPU in fp32 (logic only, no numbers worth keeping).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

GIB = 2**30

# name -> (bench dtype, low_vram, compile); the estimate each is compared with is named by the same key
GPU_VARIANTS = {
    "fp16": ("fp16", False, False),
    "bf16": ("bf16", False, False),
    "fp16_low_vram": ("fp16", True, False),
    "fp8": ("fp8", False, False),
    "fp16_compile": ("fp16", False, True),
}
CPU_VARIANTS = {"fp32": ("fp32", False, False), "fp32_low_vram": ("fp32", True, False)}


def settings(cpu: bool):
    from motion_i2v_core import bench

    size = bench.SIZES["tiny" if cpu else "sd15"]
    frames, steps = (2, 1) if cpu else (size.frames, size.steps)
    return size, frames, steps, (CPU_VARIANTS if cpu else GPU_VARIANTS)


class Results:
    def __init__(self, path: Path, **head):
        self.path, self.data = path, {**head, "items": {}}
        self.dump()

    def dump(self):
        self.path.write_text(json.dumps(self.data, indent=1, default=str))

    def run(self, name, fn):
        t0 = time.time()
        print(f"[{time.strftime('%H:%M:%S')}] {self.path.stem}/{name} ...", flush=True)
        try:
            item = fn()
        except Exception as exc:  # keep going: partial results are the point
            item = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-3000:]}
        item["item_wall_s"] = time.time() - t0
        self.data["items"][name] = item
        print(f"   -> {json.dumps(item, default=str)[:400]}", flush=True)
        self.dump()


def variants(out: Path, cpu: bool) -> None:
    from motion_i2v_core import bench

    size, frames, steps, table = settings(cpu)
    device = torch.device("cpu" if cpu else "cuda")
    res = Results(out / "variants.json", device=bench.describe_device(device), size=size.describe(),
                  frames=frames, steps=steps)
    master, configs = bench.build_master_weights(size)
    inputs = bench.make_inputs(size)
    for name, (dtype, low_vram, compile_unets) in table.items():
        def one(dtype=dtype, low_vram=low_vram, compile_unets=compile_unets, name=name):
            result, flow, video = bench.run_generation(
                name, master, configs, inputs, size, device, bench.DTYPES[dtype], steps=steps, frames=frames,
                naive=False, compile_unets=compile_unets, low_vram=low_vram, warmup=True)
            item = asdict(result)
            item["peak_gib"] = result.peak_bytes / GIB
            item["finite"] = bool(torch.isfinite(video).all() and torch.isfinite(flow).all())
            return item
        res.run(name, one)
        if device.type == "cuda":
            torch.cuda.empty_cache()


def estimates(out: Path, cpu: bool) -> None:
    """The estimator's peak for each variant, with the bench's settings: decode batch = all frames
    (2 in low-VRAM mode), every model resident (the running stage's in low-VRAM mode)."""
    from motion_i2v_core import estimate

    size, frames, steps, table = settings(cpu)
    res = Results(out / "estimates.json", size=size.describe(), frames=frames, steps=steps)
    traces = {}
    for name, (dtype, low_vram, _compile) in table.items():
        def one(dtype=dtype, low_vram=low_vram):
            fp8 = dtype == "fp8"
            compute = torch.float32 if dtype == "fp32" else torch.float16  # bf16: the same bytes as fp16
            key = (compute, fp8, low_vram)
            if key not in traces:
                traces[key] = estimate.trace_generation(size, dtype=compute, fp8=fp8, frames=frames, steps=steps,
                                                        decode_batch=2 if low_vram else frames, count_flops=False)
            report = estimate.mode_report(traces[key], "stagewise" if low_vram else "resident")
            return {"peak_gib": report["peak_gib"], "peak_phase": report["peak_phase"],
                    "weights_gib": report["weights_gib"], "activation_peak_gib": report["activation_peak_gib"]}
        res.run(name, one)


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summary(out: Path) -> None:
    lines, data = [], {"steps": []}
    steps_tsv = out / "steps.tsv"
    if steps_tsv.exists():
        for row in steps_tsv.read_text().splitlines():
            name, rc, secs = (row.split("\t") + ["", "", ""])[:3]
            data["steps"].append({"step": name, "rc": rc, "seconds": secs})
            lines.append(f"step {name:18s} rc {rc:>14s} {secs:>5s} s")
    env = out / "env.txt"
    if env.exists():
        data["env"] = env.read_text()[-4000:]
    bench_json = _load(out / "bench_sd15_fp16.json") or _load(out / "bench.json")
    if bench_json and "generation" in bench_json:
        g = bench_json["generation"]
        data["bench"] = {k: g.get(k) for k in ("speedup", "stage1_speedup", "stage2_speedup", "frames_diff")}
        for k in ("naive", "ours"):
            r = g[k]
            lines.append(f"bench {k:5s} {r['dtype']:8s} stage1 {r['stage1_s']:.2f} s stage2 {r['stage2_s']:.2f} s "
                         f"total {r['total_s']:.2f} s peak {r['peak_bytes'] / GIB:.2f} GiB")
        lines.append(f"bench ours vs naive fp32: {g['speedup']:.2f}x (stage 1 {g.get('stage1_speedup', 0):.2f}x, "
                     f"stage 2 {g.get('stage2_speedup', 0):.2f}x)")
    var = (_load(out / "variants.json") or {}).get("items", {})
    est = (_load(out / "estimates.json") or {}).get("items", {})
    rows = {}
    for name in dict.fromkeys(list(var) + list(est)):
        v, e = var.get(name, {}), est.get(name, {})
        rows[name] = {"total_s": v.get("total_s"), "measured_peak_gib": v.get("peak_gib"),
                      "estimated_peak_gib": e.get("peak_gib"), "finite": v.get("finite"),
                      "compiled_graphs_in_timed_run": v.get("compiled_graphs_in_timed_run"),
                      "error": v.get("error") or e.get("error")}
        m, p = rows[name]["measured_peak_gib"], rows[name]["estimated_peak_gib"]
        ratio = f"{m / p:.2f}" if m and p else "-"
        fmt = (lambda x, f: f.format(x) if isinstance(x, (int, float)) else "-")
        lines.append(f"variant {name:14s} total {fmt(v.get('total_s'), '{:.2f}'):>6s} s  measured peak "
                     f"{fmt(m, '{:.2f}'):>6s} GiB  estimated {fmt(p, '{:.2f}'):>6s} GiB  measured/estimated {ratio}"
                     + (f"  graphs compiled in timed run {v['compiled_graphs_in_timed_run']}"
                        if v.get("compiled_graphs_in_timed_run") is not None else "")
                     + ("" if v.get("finite", True) else "  NON-FINITE OUTPUT")
                     + (f"  ERROR {rows[name]['error'][:200]}" if rows[name]["error"] else ""))
    data["variants"] = rows
    estimate_json = _load(out / "estimate.json")
    if estimate_json:
        data["estimate_modes"] = {k: v["peak_gib"] for k, v in estimate_json["modes"].items()}
        data["estimate_tflop"] = estimate_json["tflop"]
        lines.append("estimator modes (pipeline defaults): " + ", ".join(
            f"{k} {v:.2f} GiB" for k, v in data["estimate_modes"].items()) + f"; {data['estimate_tflop']:.0f} TFLOP")
    tests = out / "tests.log"
    if tests.exists():
        tail = [line for line in tests.read_text().splitlines() if line.strip()][-1:]
        data["tests"] = tail[0] if tail else ""
        lines.append(f"tests: {data['tests']}")
    (out / "summary.json").write_text(json.dumps(data, indent=1, default=str))
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    cpu = "--cpu" in argv
    argv = [a for a in argv if a != "--cpu"]
    if len(argv) != 2 or argv[1] not in ("variants", "estimates", "summary"):
        raise SystemExit(__doc__)
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    {"variants": lambda: variants(out, cpu), "estimates": lambda: estimates(out, cpu),
     "summary": lambda: summary(out)}[argv[1]]()


if __name__ == "__main__":
    main()
