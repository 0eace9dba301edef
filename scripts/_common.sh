# Shared paths for scripts/*.sh (sourced, not run). Every path can be overridden from the environment.
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MI2V_CACHE=${MI2V_CACHE:-$HOME/.cache/motion-i2v}
VENV_DIR=$MI2V_CACHE/venv
VENV_PY=$VENV_DIR/bin/python
# ComfyUI: an existing install named by MI2V_COMFYUI_DIR, else the 0.3.75 tree unpacked into the cache.
COMFYUI_DIR_GIVEN=${MI2V_COMFYUI_DIR:+1}
COMFYUI_DIR=${MI2V_COMFYUI_DIR:-$MI2V_CACHE/ComfyUI}
BROWSER_DIR=$MI2V_CACHE/browser
PACK_NAME=comfyui-motion-i2v
export MI2V_CACHE

log() { printf '[motion-i2v] %s\n' "$*" >&2; }
die() { printf '[motion-i2v] error: %s\n' "$*" >&2; exit 1; }
