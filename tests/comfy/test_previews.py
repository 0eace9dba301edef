"""Live sampling previews over the websocket, on a real ComfyUI server.

ComfyUI sends a preview as a binary websocket frame (PREVIEW_IMAGE) next to each progress event when
a preview method is on. The session server runs with ComfyUI's default (--preview-method none); a
second server here runs with latent2rgb, the method that needs no extra model file.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from conftest import mount_tiny_models
from harness.comfy_server import PACK_NAME, REPO_DIR, ComfyServer, require_comfyui
from test_workflows import node_of, tiny_prompt, workflow

STEPS = 3


@pytest.fixture(scope="module")
def preview_server(tmp_path_factory, parity_models):
    server = ComfyServer(require_comfyui(), tmp_path_factory.mktemp("comfyui-previews"),
                         custom_nodes={PACK_NAME: REPO_DIR, "testing_pack": REPO_DIR / "tests" / "comfy" / "testing_pack"},
                         extra_args=["--preview-method", "latent2rgb"])
    server.start()
    try:
        yield mount_tiny_models(server, parity_models)
    finally:
        server.stop()


def drag_prompt(server, seed):
    prompt = tiny_prompt(workflow("motion_i2v_drag_and_brush"), server.client().object_info(), seed=seed, steps=STEPS)
    return prompt, node_of(prompt, "MotionI2VPredictFlow"), node_of(prompt, "MotionI2VRenderVideo")


def test_render_video_sends_a_preview_per_step(preview_server):
    prompt, predict, render = drag_prompt(preview_server, seed=31)
    result = preview_server.client().run(prompt, timeout=300)
    assert result.ok, result.describe() + "\n" + preview_server.log_tail()
    assert result.progress_for(render) == [(k, STEPS) for k in range(1, STEPS + 1)]
    for node in (render, predict):  # Predict Flow's is the undecoded flow-latent look
        images = result.previews_for(node)
        assert len(images) == STEPS, (node, len(images), [(n, k) for n, k, _ in result.previews])
        for data in images:
            picture = Image.open(io.BytesIO(data))
            assert picture.format == "JPEG" and min(picture.size) > 0
    # The render previews show the frame forming: not all steps give the same picture.
    frames = [Image.open(io.BytesIO(d)).convert("RGB").tobytes() for d in result.previews_for(render)]
    assert len(set(frames)) > 1


def test_long_shot_previews_every_segment_step(preview_server):
    prompt = tiny_prompt(workflow("motion_i2v_long_shot"), preview_server.client().object_info(), seed=33)
    long_id = node_of(prompt, "MotionI2VRenderLongShot")
    prompt[long_id]["inputs"]["segment_frames"] = 4  # two segments of 2 steps
    result = preview_server.client().run(prompt, timeout=300)
    assert result.ok, result.describe() + "\n" + preview_server.log_tail()
    assert len(result.progress_for(long_id)) == 4
    assert len(result.previews_for(long_id)) == 4


def test_no_previews_without_a_preview_method(tiny_server):
    prompt, predict, render = drag_prompt(tiny_server, seed=32)
    result = tiny_server.client().run(prompt, timeout=300)
    assert result.ok, result.describe()
    assert result.progress_for(render) == [(k, STEPS) for k in range(1, STEPS + 1)]
    assert result.previews == []
