#!/usr/bin/env bash
# Run the full test suite: core tests, real-ComfyUI server tests and browser tests of the widget.
#
#   scripts/test.sh [pytest arguments...]      e.g. scripts/test.sh -k splat -x
#
# Sets up (or reuses) the cached environment with the browser parts first (scripts/setup_env.sh --browser).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

bash "$REPO_DIR/scripts/setup_env.sh" --browser

cd "$REPO_DIR"
export MI2V_BROWSER_DIR=$BROWSER_DIR
# One torch thread per process: the tiny test models gain nothing from more, and pytest and the
# ComfyUI server share two cores (oversubscribed threads made single forwards 10x slower).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
status=0
"$VENV_PY" -m pytest tests -q "$@" || status=$?
if [ "$status" = 5 ]; then
  log "pytest collected no tests"
  status=0
fi
exit "$status"
