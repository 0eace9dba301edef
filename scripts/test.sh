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
  # A run that checks nothing must not pass (CI would land an untested tree).
  log "error: pytest ran no test"
  status=1
fi
exit "$status"
