"""Fixtures shared by the server tests: the session server with the tiny test models mounted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.reference import PARITY_MODELS

TINY_WEIGHTS = "Motion-I2V"  # the name the example workflows use
DRIVING_CLIP = "motion_i2v_driving_clip.mp4"  # the video-to-video example's Load Video file


@pytest.fixture(scope="session")
def parity_models() -> Path:
    return PARITY_MODELS


@pytest.fixture(scope="session")
def tiny_server(comfy_server, parity_models):
    """The session server with the tiny random-weight official-layout bundle (cross_dim 32) mounted as
    models/motion_i2v/Motion-I2V, ComfyUI's example.png in its input folder and a driving clip made
    from it (the video-to-video example's Load Video file)."""
    return mount_tiny_models(comfy_server, parity_models)


def mount_tiny_models(server, parity_models: Path):
    """What tiny_server adds, for any ComfyServer (e.g. one started with other arguments)."""
    weights = server.models_dir / "motion_i2v" / TINY_WEIGHTS
    if not weights.exists():
        weights.symlink_to(parity_models, target_is_directory=True)
    image = Path(server.comfy_dir) / "input" / "example.png"
    shutil.copy(image, server.input_dir / "example.png")
    write_driving_clip(image, server.input_dir / DRIVING_CLIP)
    return server


def write_driving_clip(image: Path, path: Path, frames: int = 12, size: int = 128) -> None:
    """A short mp4 panning across the image (8 px of the 256 px window per frame)."""
    import cv2

    if path.exists():
        return
    picture = cv2.imread(str(image))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8, (size, size))
    for k in range(frames):
        x = 200 + 8 * k
        writer.write(cv2.resize(picture[200:456, x:x + 256], (size, size), interpolation=cv2.INTER_AREA))
    writer.release()
