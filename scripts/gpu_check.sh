#!/usr/bin/env bash
# Everything a GPU should show about the pack, in one command of at most 8 minutes (BUDGET_S, default 470 s).
#
#   bash scripts/gpu_check.sh            on a CUDA machine, from the checkout (nothing else is needed)
#   bash scripts/gpu_check.sh --cpu      dry run: every step at the tiny size on the CPU (checks the logic)
#
# Results land in $OUT (default ./gpu_out), at most 8 files: steps.tsv (step, rc, seconds; rc 124 = timed out),
# logs.txt (every step's output and the environment), bench_sd15_fp16.json (ours fp16 against the naive fp32
# path, ops included), variants.json (fp16, bf16, low-VRAM, fp8, compile: times and measured peaks),
# estimate.json (the meta-tensor estimator, pipeline defaults), estimates.json (its peaks with each variant's
# settings), summary.json and summary.txt (measured beside estimated). Every step has its own timeout and
# writes as it goes, so a step that runs out of time still leaves the others' results.
# Python: $PYTHON if set, else the first of python3, /opt/torch/.venv/bin/python3, the pack's cached venv,
# python that imports torch (with CUDA, unless --cpu), einops, safetensors and numpy. No network is used.
set -u
CPU=0
[ "${1:-}" = "--cpu" ] && CPU=1
START=$(date +%s)
BUDGET_S=${BUDGET_S:-470}
DEADLINE=$((START + BUDGET_S))
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$REPO/gpu_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mi2v-gpu-check.XXXXXX")
cd "$REPO" || exit 2
export PYTHONUNBUFFERED=1 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
STEPS=$OUT/steps.tsv
LOG=$OUT/logs.txt
: > "$STEPS"
: > "$LOG"

left() { echo $((DEADLINE - $(date +%s))); }
say() { echo "$*" | tee -a "$LOG"; }

# step NAME CAP MIN cmd...: runs cmd with timeout min(CAP, time left), appending its output to logs.txt;
# skipped when fewer than MIN seconds are left.
step() {
  local name=$1 cap=$2 min=$3 l t s rc
  shift 3
  l=$(left)
  if [ "$l" -lt "$min" ]; then
    printf '%s\tSKIPPED(time)\t0\n' "$name" >> "$STEPS"
    say "== $name skipped: ${l} s left"
    return 0
  fi
  t=$((cap < l ? cap : l))
  say "== $name (timeout ${t} s, $(date -u +%H:%M:%S) UTC): $*"
  s=$(date +%s)
  timeout -k 10 "$t" "$@" >> "$LOG" 2>&1
  rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - s))" >> "$STEPS"
  echo "   rc $rc after $(($(date +%s) - s)) s"
}

need_cuda="torch.cuda.is_available()"
[ "$CPU" = 1 ] && need_cuda="True"
PY=""
for candidate in "${PYTHON:-}" python3 /opt/torch/.venv/bin/python3 "$HOME/.cache/motion-i2v/venv/bin/python" python; do
  [ -n "$candidate" ] || continue
  command -v "$candidate" > /dev/null 2>&1 || continue
  if "$candidate" -c "import torch, einops, safetensors, numpy; assert $need_cuda" > /dev/null 2>&1; then
    PY=$candidate
    break
  fi
done
if [ -z "$PY" ]; then
  say "no python with torch$([ "$CPU" = 0 ] && echo ' (CUDA)'), einops, safetensors and numpy found; set PYTHON=/path/to/python"
  printf 'env\tNO_PYTHON\t0\n' >> "$STEPS"
  exit 1
fi

# ---- environment
{
  echo "== env ($(date -u +%Y-%m-%dT%H:%M:%SZ)), python: $(command -v "$PY")"
  if [ "$CPU" = 0 ]; then
    nvidia-smi
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv
  fi
  "$PY" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')"
  "$PY" -c "import triton; print('triton', triton.__version__)" || echo "triton not importable"
  "$PY" -c "import cv2, pytest; print('opencv', cv2.__version__, 'pytest', pytest.__version__)" || echo "opencv or pytest missing"
  nproc
  git log --oneline -1 2> /dev/null || true
} >> "$LOG" 2>&1
printf 'env\t0\t%s\n' "$(($(date +%s) - START))" >> "$STEPS"
tail -n 4 "$LOG"

if [ "$CPU" = 1 ]; then
  CPU_FLAG=--cpu
  BENCH=(--device cpu --size tiny --frames 2 --steps 1 --repeats 1 --json "$OUT/bench_sd15_fp16.json")
  ESTIMATE=(--estimate --size tiny --frames 2 --steps 1 --json "$OUT/estimate.json")
  TESTS=(--collect-only -q)
else
  CPU_FLAG=
  BENCH=(--device cuda --size sd15 --json "$OUT/bench_sd15_fp16.json")
  ESTIMATE=(--estimate --size sd15 --json "$OUT/estimate.json")
  TESTS=(-q -rs -p no:cacheprovider)
fi

# ---- the estimator needs no GPU: it runs on one CPU core beside the GPU steps
(
  timeout -k 10 "$(($(left) - 20))" env OMP_NUM_THREADS=1 "$PY" -m motion_i2v_core.bench "${ESTIMATE[@]}"
  echo "estimate rc $?"
  timeout -k 10 "$(($(left) - 15))" env OMP_NUM_THREADS=1 "$PY" scripts/gpu_check.py "$OUT" estimates $CPU_FLAG
  echo "estimates rc $?"
) > "$WORK/estimate.log" 2>&1 &
ESTIMATOR_PID=$!

# ---- CUDA test tier: the Triton kernels against the torch ops, fp16/bf16/fp8 against fp32
mapfile -t CUDA_TESTS < <(grep -l "torch.cuda.is_available()" tests/test_*.py; ls tests/test_precision.py 2> /dev/null)
mapfile -t CUDA_TESTS < <(printf '%s\n' "${CUDA_TESTS[@]}" | sort -u)
step tests 130 30 "$PY" -m pytest "${TESTS[@]}" "${CUDA_TESTS[@]}"

# ---- the bench CLI: ops, naive fp32 path and ours fp16 in one run (ratios vs naive)
step bench_sd15_fp16 200 90 "$PY" -m motion_i2v_core.bench "${BENCH[@]}"

# ---- ours-only variants in one process: fp16, bf16, low-VRAM, fp8, torch.compile (last: the slowest)
step variants 240 40 "$PY" scripts/gpu_check.py "$OUT" variants $CPU_FLAG

# ---- the estimator's results, then the summary
while kill -0 "$ESTIMATOR_PID" 2> /dev/null && [ "$(left)" -gt 8 ]; do sleep 1; done
if kill -0 "$ESTIMATOR_PID" 2> /dev/null; then
  kill "$ESTIMATOR_PID" 2> /dev/null
  printf 'estimate\tKILLED(time)\t%s\n' "$(($(date +%s) - START))" >> "$STEPS"
else
  wait "$ESTIMATOR_PID"
  rc=FAILED
  [ "$(grep -c ' rc 0$' "$WORK/estimate.log")" = 2 ] && rc=0  # the CLI and the per-variant estimates
  printf 'estimate\t%s\t%s\n' "$rc" "$(($(date +%s) - START))" >> "$STEPS"
fi
{ echo "== estimate (background)"; cat "$WORK/estimate.log"; } >> "$LOG" 2>&1
timeout -k 2 20 "$PY" scripts/gpu_check.py "$OUT" summary
echo "total wall $(($(date +%s) - START)) s (budget $BUDGET_S s); results in $OUT" | tee -a "$LOG"
rm -rf "$WORK"
