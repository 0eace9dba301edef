#!/usr/bin/env bash
# Start a real ComfyUI with this pack and its example workflows on http://127.0.0.1:8188
#
#   scripts/run_comfyui.sh [extra ComfyUI arguments...]
#
# Runs scripts/setup_env.sh first (fast once done). The repository is mounted into ComfyUI through an
# extra_model_paths YAML (custom_nodes: a folder holding a symlink to this repo), so nothing is copied.
# MODELS_DIR=/path/to/models   use another models folder (checkpoints/, loras/, vae/, motion_i2v/, ...)
# MI2V_HOST / MI2V_PORT        listen address (127.0.0.1 / 8188)
# MI2V_COMFYUI_DIR             use an existing ComfyUI instead of the cached 0.3.75
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

bash "$REPO_DIR/scripts/setup_env.sh"

mount_dir=$MI2V_CACHE/custom_nodes
mkdir -p "$mount_dir"
ln -sfn "$REPO_DIR" "$mount_dir/$PACK_NAME"

models_dir=${MODELS_DIR:-$COMFYUI_DIR/models}
mkdir -p "$models_dir/motion_i2v"
yaml=$MI2V_CACHE/extra_model_paths.yaml
{
  echo "motion_i2v_pack:"
  echo "    base_path: $mount_dir"
  echo "    custom_nodes: ."
  echo "motion_i2v_models:"
  echo "    base_path: $models_dir"
  echo "    motion_i2v: motion_i2v"
  if [ -n "${MODELS_DIR:-}" ]; then
    for kind in checkpoints loras vae clip text_encoders diffusion_models embeddings; do
      echo "    $kind: $kind"
    done
  fi
} > "$yaml"

device_args=()
if ! "$VENV_PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  device_args=(--cpu)
fi

host=${MI2V_HOST:-127.0.0.1}
port=${MI2V_PORT:-8188}
log "starting ComfyUI on http://$host:$port (models: $models_dir/motion_i2v)"
exec "$VENV_PY" "$REPO_DIR/scripts/launch_comfyui.py" "$COMFYUI_DIR" \
  --listen "$host" --port "$port" "${device_args[@]}" \
  --extra-model-paths-config "$yaml" "$@"
