"""Fixtures shared by the server tests: the session server with the tiny test models mounted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.reference import PARITY_MODELS

TINY_WEIGHTS = "Motion-I2V"  # the name the example workflows use


@pytest.fixture(scope="session")
def parity_models() -> Path:
    return PARITY_MODELS


@pytest.fixture(scope="session")
def tiny_server(comfy_server, parity_models):
    """The session server with the tiny random-weight official-layout bundle (cross_dim 32) mounted as
    models/motion_i2v/Motion-I2V, and ComfyUI's example.png in its input folder."""
    weights = comfy_server.models_dir / "motion_i2v" / TINY_WEIGHTS
    if not weights.exists():
        weights.symlink_to(parity_models, target_is_directory=True)
    image = Path(comfy_server.comfy_dir) / "input" / "example.png"
    shutil.copy(image, comfy_server.input_dir / "example.png")
    return comfy_server
