"""Where the test data lives: `tests/data` inside the repository (see its README). MI2V_PARITY_DIR
points the parity tests at another bundle recorded the same way."""

import os
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
PARITY = Path(os.environ.get("MI2V_PARITY_DIR", DATA / "parity"))
PARITY_MODELS = PARITY / "models"
KEYS = DATA / "keys"
