"""Shared fixtures. The core tests need none of this; ComfyUI fixtures start a real server lazily.

`comfy_server` (session): a ComfyServer (tests/harness/comfy_server.py) running the ComfyUI that
scripts/setup_env.sh installed (or MI2V_COMFYUI_DIR), with this pack and tests/comfy/testing_pack
mounted. Without that backend the tests using it are skipped, except in CI (CI=true), where a
missing backend is an error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.comfy_server import PACK_NAME, REPO_DIR, ComfyServer, in_ci, require_comfyui  # noqa: F401

TESTING_PACK = Path(__file__).parent / "comfy" / "testing_pack"


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny test models gain nothing from intra-op threads, and on two cores shared with a ComfyUI
    server, spinning OpenMP workers made single forwards up to 10x slower."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    comfy_dir = require_comfyui()
    server = ComfyServer(comfy_dir, tmp_path_factory.mktemp("comfyui"), custom_nodes={PACK_NAME: REPO_DIR, "testing_pack": TESTING_PACK})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def comfy_client(comfy_server):
    """A client for the session's server; fails the test early if the server died."""
    assert comfy_server.alive(), "ComfyUI server died:\n" + comfy_server.log_tail()
    return comfy_server.client()
