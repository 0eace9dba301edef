"""Where the shared reference material lives: `../shared/reference` beside the repository (as CI
lays it out), or the folder named by MI2V_REFERENCE_DIR."""

import os
from pathlib import Path

REFERENCE = Path(os.environ.get("MI2V_REFERENCE_DIR", Path(__file__).resolve().parents[3] / "shared" / "reference"))
PARITY = REFERENCE / "parity"
PARITY_MODELS = PARITY / "models"
