"""Fixtures of the browser tests: the tools (chromium, node, playwright-core) and a ComfyUI server
serving the newest frontend (the session's `comfy_server` serves the pinned one)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # browser_support, next to this file

from browser_support import NEWEST_FRONTEND, browser_dir, in_ci, newest_frontend_root  # noqa: E402
from harness.comfy_server import PACK_NAME, REPO_DIR, ComfyServer, default_comfyui_dir  # noqa: E402


def _missing(message: str):
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser_tools():
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    node = shutil.which("node")
    missing = [
        what
        for what, ok in (
            (f"chromium ({chromium})", Path(chromium).is_file()),
            ("node", node is not None),
            (f"playwright-core ({browser_dir()})", (browser_dir() / "node_modules" / "playwright-core").is_dir()),
        )
        if not ok
    ]
    if missing:
        _missing("browser tests need " + ", ".join(missing) + "; run scripts/setup_env.sh --browser")
    return {"node": node, "chromium": chromium}


@pytest.fixture(scope="session")
def newest_frontend_server(tmp_path_factory):
    """ComfyUI with the pack, serving comfyui-frontend-package NEWEST_FRONTEND (--front-end-root)."""
    comfy_dir = default_comfyui_dir()
    if not (comfy_dir / "main.py").is_file():
        _missing(f"no ComfyUI backend at {comfy_dir}; run scripts/setup_env.sh (or set MI2V_COMFYUI_DIR)")
    root = newest_frontend_root()
    if not (root / "index.html").is_file():
        _missing(f"no comfyui-frontend-package {NEWEST_FRONTEND} at {root}; run scripts/setup_env.sh --browser")
    server = ComfyServer(comfy_dir, tmp_path_factory.mktemp("comfyui-newest"),
                         custom_nodes={PACK_NAME: REPO_DIR, "testing_pack": REPO_DIR / "tests" / "comfy" / "testing_pack"},
                         extra_args=["--front-end-root", str(root)])
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["pinned", "newest"])
def frontend_server(request):
    """The server for a frontend: the pinned one (ComfyUI's requirements) or the newest."""
    return request.getfixturevalue("comfy_server" if request.param == "pinned" else "newest_frontend_server")
