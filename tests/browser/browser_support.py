"""Shared by the browser tests: where playwright-core and the newest frontend live."""

from __future__ import annotations

import os
from pathlib import Path

NEWEST_FRONTEND = "1.58.1"  # keep in step with scripts/setup_env.sh


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def browser_dir() -> Path:
    cache = Path(os.environ.get("MI2V_CACHE", Path.home() / ".cache" / "motion-i2v"))
    return Path(os.environ.get("MI2V_BROWSER_DIR", cache / "browser"))


def newest_frontend_root() -> Path:
    """The static folder of the newest comfyui-frontend-package (ComfyUI's --front-end-root)."""
    return browser_dir() / f"frontend-{NEWEST_FRONTEND}" / "comfyui_frontend_package" / "static"
