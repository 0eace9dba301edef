"""The example workflows and the error paths, end to end in a real ComfyUI server.

Models: the tiny random-weight official-layout bundle (reference/parity/models, cross_dim 32) is
mounted as models/motion_i2v/Motion-I2V, the name the example workflows use (tiny_server fixture,
tests/comfy/conftest.py). Text: CLIP Text Encode needs a real SD-1.5 CLIP, so the tests swap it for
tests/comfy/testing_pack's random conditioning.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.comfy_server import REPO_DIR, PromptRejected
from harness.workflow_convert import workflow_to_prompt

WORKFLOWS = sorted((REPO_DIR / "example_workflows").glob("*.json"))
WIDGET_TYPES = {"MI2V_HINTS_JSON"}
TINY = {"width": 64, "height": 64, "num_frames": 6, "steps": 2}
TEXT_DIM = 32  # cross_attention_dim of the tiny models


@pytest.fixture(scope="module")
def object_info(tiny_server):
    return tiny_server.client().object_info()


def tiny_prompt(workflow_path: Path, object_info: dict, seed: int, **overrides) -> dict:
    """The workflow as an API prompt, shrunk to the tiny models: test text encoder, 64x64, 2 steps."""
    workflow = json.loads(workflow_path.read_text())
    prompt = workflow_to_prompt(workflow, object_info, WIDGET_TYPES)
    for node_id, node in list(prompt.items()):
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "CheckpointLoaderSimple":
            del prompt[node_id]
        elif kind == "CLIPTextEncode":
            prompt[node_id] = {"class_type": "MI2VTestConditioning",
                               "inputs": {"seed": seed + int(node_id), "tokens": 77, "dim": TEXT_DIM}}
        for name in ("width", "height", "num_frames", "steps"):
            if name in inputs:
                inputs[name] = overrides.get(name, TINY[name])
        if "seed" in inputs and kind != "MI2VTestConditioning":
            inputs["seed"] = seed
    for node in prompt.values():  # drop links to removed nodes (the checkpoint's MODEL)
        node["inputs"] = {k: v for k, v in node["inputs"].items()
                          if not (isinstance(v, list) and len(v) == 2 and v[0] not in prompt)}
    return prompt


def node_of(prompt: dict, class_type: str) -> str:
    return next(i for i, n in prompt.items() if n["class_type"] == class_type)


def workflow(example_id: str) -> Path:
    """The example file whose extra.mi2v_example is ``example_id`` (file names are template titles)."""
    found = [p for p in WORKFLOWS if json.loads(p.read_text())["extra"].get("mi2v_example") == example_id]
    assert len(found) == 1, f"{example_id}: {found}"
    return found[0]


def test_example_workflows_are_listed_as_templates(tiny_server):
    templates = tiny_server.client().get_json("/workflow_templates")
    names = next(v for k, v in templates.items() if "motion-i2v" in k)
    assert sorted(names) == sorted(p.stem for p in WORKFLOWS)
    for path in WORKFLOWS:
        assert path.with_suffix(".jpg").is_file(), f"{path.name} has no thumbnail"


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_example_workflow_runs(tiny_server, object_info, path):
    prompt = tiny_prompt(path, object_info, seed=11)
    result = tiny_server.client().run(prompt, timeout=300)
    assert result.ok, result.describe() + "\n" + tiny_server.log_tail()
    saved = [i for o in result.outputs.values() if o for i in o.get("images", []) if i["type"] == "output"]
    assert saved, f"no images saved: {result.outputs}"
    for image in saved:
        assert (tiny_server.output_dir / image["subfolder"] / image["filename"]).is_file()


def test_progress_once_per_step(tiny_server, object_info):
    prompt = tiny_prompt(workflow("motion_i2v_drag_and_brush"), object_info, seed=21, steps=3)
    result = tiny_server.client().run(prompt, timeout=300)
    assert result.ok, result.describe()
    for kind in ("MotionI2VPredictFlow", "MotionI2VRenderVideo"):
        assert result.progress_for(node_of(prompt, kind)) == [(1, 3), (2, 3), (3, 3)], kind


def test_interrupt_stops_within_a_step(tiny_server, object_info):
    # The interrupt is raised from inside the progress callback of step 2 (the testing pack's
    # MI2VTestInterruptAfterSteps, calling what POST /interrupt calls), so no race decides the outcome.
    steps, at = 40, 2
    prompt = tiny_prompt(workflow("motion_i2v_text_only"), object_info, seed=31, steps=steps)
    predict = node_of(prompt, "MotionI2VPredictFlow")
    prompt["900"] = {"class_type": "MI2VTestInterruptAfterSteps",
                     "inputs": {"image": prompt[predict]["inputs"]["image"], "steps": at}}
    prompt[predict]["inputs"]["image"] = ["900", 0]
    result = tiny_server.client().run(prompt, timeout=300)
    assert result.status == "interrupted", result.describe()
    assert result.progress_for(predict) == [(1, steps), (2, steps)]  # stops before step 3
    assert not result.did_run(node_of(prompt, "MotionI2VRenderVideo"))
    _assert_still_serving(tiny_server, object_info)


def _assert_still_serving(server, object_info):
    prompt = tiny_prompt(workflow("motion_i2v_motion_preview_no_weights"), object_info, seed=99)
    result = server.client().run(prompt, timeout=120)
    assert result.ok, result.describe()


def test_bad_widget_json_is_rejected_readably(tiny_server, object_info):
    prompt = tiny_prompt(workflow("motion_i2v_motion_preview_no_weights"), object_info, seed=41)
    prompt[node_of(prompt, "MotionI2VDrawMotionBrush")]["inputs"]["hints_json"] = '{"version": 1, "tracks": [[[1, 2]'
    with pytest.raises(PromptRejected) as err:
        tiny_server.client().queue(prompt)
    assert "hints_json" in str(err.value) and "JSON" in str(err.value)
    _assert_still_serving(tiny_server, object_info)


def test_missing_weights_say_where_files_go(tiny_server, object_info):
    prompt = tiny_prompt(workflow("motion_i2v_text_only"), object_info, seed=51)
    prompt[node_of(prompt, "MotionI2VLoader")]["inputs"]["weights"] = "NotDownloaded"
    with pytest.raises(PromptRejected) as err:
        tiny_server.client().queue(prompt)
    message = str(err.value)
    assert "NotDownloaded" in message and "stage1/StableDiffusion-FlowGen/unet" in message
    _assert_still_serving(tiny_server, object_info)


def test_wrong_file_is_a_readable_node_error(tiny_server, object_info, parity_models):
    # An official tree whose flow-UNet file is really the flow VAE.
    broken = tiny_server.models_dir / "motion_i2v" / "broken"
    if not broken.exists():
        shutil.copytree(parity_models, broken)
        s1 = broken / "stage1" / "StableDiffusion-FlowGen"
        shutil.copy(s1 / "vae_flow" / "diffusion_pytorch_model.bin", s1 / "unet" / "diffusion_pytorch_model.bin")
    prompt = tiny_prompt(workflow("motion_i2v_text_only"), object_info, seed=61)
    loader = node_of(prompt, "MotionI2VLoader")
    prompt[loader]["inputs"]["weights"] = "broken"
    result = tiny_server.client().run(prompt, timeout=120)
    assert result.status == "error"
    assert result.error["node_id"] == loader
    message = result.error["exception_message"]
    assert "diffusion_pytorch_model.bin" in message and "flow UNet" in message, message
    _assert_still_serving(tiny_server, object_info)


def test_seventeen_frames_is_rejected(tiny_server, object_info):
    prompt = tiny_prompt(workflow("motion_i2v_text_only"), object_info, seed=71)
    prompt[node_of(prompt, "MotionI2VPredictFlow")]["inputs"]["num_frames"] = 17
    with pytest.raises(PromptRejected) as err:
        tiny_server.client().queue(prompt)
    assert "num_frames" in str(err.value) and "16" in str(err.value)
    _assert_still_serving(tiny_server, object_info)


def test_size_not_a_multiple_of_64_is_a_readable_node_error(tiny_server, object_info):
    # The widgets step by 64, but API clients can send any size within min/max.
    prompt = tiny_prompt(workflow("motion_i2v_motion_preview_no_weights"), object_info, seed=81)
    drags = node_of(prompt, "MotionI2VDragsToFlow")
    prompt[drags]["inputs"]["width"] = 100
    result = tiny_server.client().run(prompt, timeout=120)
    assert result.status == "error" and result.error["node_id"] == drags, result.describe()
    message = result.error["exception_message"]
    assert "width 100 is not a multiple of 64; use 64 or 128" in message, message
    _assert_still_serving(tiny_server, object_info)
