"""scripts/gpu_check.sh: its dry run (--cpu) goes through every step and leaves the results it promises."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"


def test_dry_run_writes_every_step_and_the_summary(tmp_path):
    out = tmp_path / "gpu_out"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, OMP_NUM_THREADS="1", BUDGET_S="600")
    proc = subprocess.run(["bash", str(SCRIPT), "--cpu"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # What comes back from a GPU machine: at most 8 plain files with plain names.
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files), files

    steps = dict(line.split("\t")[:2] for line in (out / "steps.tsv").read_text().splitlines())
    assert set(steps) == {"env", "tests", "bench_sd15_fp16", "variants", "estimate"}, steps
    assert all(rc == "0" for rc in steps.values()), steps

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["variants"]) == {"fp32", "fp32_low_vram"}
    for name, row in summary["variants"].items():
        assert row["error"] is None, (name, row)
        assert row["finite"] is True
        # measured (process RSS on the CPU) and estimated peaks side by side
        assert row["measured_peak_gib"] > 0 and row["estimated_peak_gib"] > 0, (name, row)
    assert summary["bench"]["speedup"] > 0
    assert set(summary["estimate_modes"]) >= {"resident_fp16", "low_vram_fp16", "low_vram_fp8"}
    text = (out / "summary.txt").read_text()
    assert "measured/estimated" in text and "ours vs naive fp32" in text


def test_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
