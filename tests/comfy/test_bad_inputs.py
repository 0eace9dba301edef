"""Inputs that once froze or exhausted the server, through a real ComfyUI (issue: no input can freeze it).

Each case must end with one readable message (the input or file, what is wrong, the fix) within a
bounded time (the run's timeout: a freeze fails the test instead of hanging it), /system_stats must
keep answering meanwhile (polled from another thread, each poll with its own timeout), and the next
good prompt must succeed. Hostile links and altered weight sets are removed again after each test.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from harness.comfy_server import PromptRejected
from test_workflows import node_of, tiny_prompt, workflow

RUN_TIMEOUT = 120   # a case that takes longer is a freeze, not a slow machine
STATS_TIMEOUT = 10  # per /system_stats request


class StatsWatch:
    """Polls /system_stats while a case runs; every poll must answer (within STATS_TIMEOUT)."""

    def __init__(self, server):
        self.client = server.client()
        self.failures: list[str] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            try:
                self.client.get_json("/system_stats", timeout=STATS_TIMEOUT)
                self.polls += 1
            except Exception as e:  # noqa: BLE001 - any failure to answer is what we look for
                self.failures.append(f"{type(e).__name__}: {e}")
            self._stop.wait(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=STATS_TIMEOUT + 5)
        assert not self.failures, f"/system_stats did not answer: {self.failures[:3]}"
        assert self.polls >= 1


def failure_message(server, prompt) -> str:
    """The one message a bad prompt ends with: the validation error or the execution error."""
    client = server.client()
    with StatsWatch(server):
        try:
            result = client.run(prompt, timeout=RUN_TIMEOUT)
        except PromptRejected as e:
            return str(e)
    assert result.status == "error", result.describe()
    return result.error["exception_message"]


def good_prompt_runs(server, object_info, name="motion_i2v_motion_preview_no_weights", **weights):
    prompt = tiny_prompt(workflow(name), object_info, seed=7)
    if weights:
        prompt[node_of(prompt, "MotionI2VLoader")]["inputs"]["weights"] = weights["weights"]
    with StatsWatch(server):
        result = server.client().run(prompt, timeout=RUN_TIMEOUT)
    assert result.ok, result.describe() + "\n" + server.log_tail()
    return result


@pytest.fixture(scope="module")
def object_info(tiny_server):
    return tiny_server.client().object_info()


@pytest.fixture
def scratch(tiny_server):
    """Make weight sets and links below models/motion_i2v; all removed afterwards."""
    made: list[Path] = []
    base = tiny_server.models_dir / "motion_i2v"

    def link(target, rel):
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target, target_is_directory=True)
        made.append(path)
        return path

    def linked_set(name, source, replace=None, drop=()):
        """A set whose files are links to `source`'s, except `replace` {rel: bytes} and `drop` [rel]."""
        root = base / name
        made.append(root)
        for f in sorted(p for p in Path(source).rglob("*") if p.is_file()):
            rel = f.relative_to(source).as_posix()
            if rel in drop:
                continue
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if replace and rel in replace:
                dst.write_bytes(replace[rel])
            else:
                dst.symlink_to(f)
        return root

    yield type("Scratch", (), {"link": staticmethod(link), "linked_set": staticmethod(linked_set), "base": base})
    for path in reversed(made):
        if path.is_symlink():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)  # links inside are removed, never followed


def brush_prompt(object_info, hints_json=None, coord_str=None):
    prompt = tiny_prompt(workflow("motion_i2v_motion_preview_no_weights"), object_info, seed=3)
    inputs = prompt[node_of(prompt, "MotionI2VDrawMotionBrush")]["inputs"]
    if hints_json is not None:
        inputs["hints_json"] = hints_json
    if coord_str is not None:
        inputs["coord_str"] = coord_str
    return prompt


def hints(brush=(), tracks=(), width=64, height=64):
    return json.dumps({"version": 1, "width": width, "height": height, "brush": list(brush), "tracks": list(tracks)})


# ------------------------------------------------------------------------------------------------
# weight folders


def test_links_to_the_root_and_to_a_parent_do_not_stall_loading(tiny_server, object_info, scratch, parity_models):
    scratch.link("/", "rootlink")  # directly in models/motion_i2v
    scratch.linked_set("linked", parity_models)
    scratch.link("/", "linked/stage1/StableDiffusion-FlowGen/root")  # inside a set
    scratch.link(scratch.base, "linked/stage2/loop")                  # a parent: a loop
    with StatsWatch(tiny_server):
        options = tiny_server.client().object_info("MotionI2VLoader")["input"]["required"]["weights"]
    names = options[0] if isinstance(options[0], list) else options[1]["options"]
    assert "linked" in names and "rootlink" not in names
    good_prompt_runs(tiny_server, object_info, "motion_i2v_text_only", weights="linked")


@pytest.mark.parametrize("file, change, expected", [
    ("stage1/StableDiffusion-FlowGen/unet/config.json", {"layers_per_block": 5000},
     "layers_per_block = 5000 is outside the supported range 1..8"),
    ("stage1/StableDiffusion-FlowGen/unet/config.json", {"block_out_channels": "abc"},
     "block_out_channels must be a list of integers"),
    ("stage1/StableDiffusion-FlowGen/unet/config.json", {"layers_per_block": 3},
     "layers_per_block is 3 here, the weights have 2"),
    ("stage2/StableDiffusion/unet/config.json", {"cross_attention_dim": 64},
     "cross_attention_dim is 64 here, the weights have 32"),
], ids=["layers_5000", "channels_abc", "layers_3", "cross_dim"])
def test_config_mistakes_name_config_json(tiny_server, object_info, scratch, parity_models, file, change, expected):
    cfg = json.loads((parity_models / file).read_text())
    cfg.update(change)
    scratch.linked_set("badcfg", parity_models, replace={file: json.dumps(cfg).encode()})
    prompt = tiny_prompt(workflow("motion_i2v_text_only"), object_info, seed=5)
    prompt[node_of(prompt, "MotionI2VLoader")]["inputs"]["weights"] = "badcfg"
    message = failure_message(tiny_server, prompt)
    assert expected in message and file in message and "huggingface.co/wangfuyun/Motion-I2V" in message, message
    assert message.split(": ")[0].endswith(file), "config.json is named first, not the weights file"
    good_prompt_runs(tiny_server, object_info)


def test_missing_motion_block_is_named_when_render_needs_it(tiny_server, object_info, scratch, parity_models):
    scratch.linked_set("nomotion", parity_models, drop=("stage2/Motion_Module/motion_block.bin",))
    prompt = tiny_prompt(workflow("motion_i2v_text_only"), object_info, seed=6)
    prompt[node_of(prompt, "MotionI2VLoader")]["inputs"]["weights"] = "nomotion"
    message = failure_message(tiny_server, prompt)
    assert "stage2/Motion_Module/motion_block.bin" in message and "huggingface.co/wangfuyun/Motion-I2V" in message
    assert "Put the official files" not in message, "the missing file, not the generic layout help"
    good_prompt_runs(tiny_server, object_info)


def test_a_text_file_as_weights_is_described_not_echoed(tiny_server, object_info, scratch, parity_models):
    rel = "stage1/StableDiffusion-FlowGen/unet/diffusion_pytorch_model.bin"
    scratch.linked_set("textfile", parity_models, replace={rel: b"<html>private-token-1234</html>\n"})
    prompt = tiny_prompt(workflow("motion_i2v_text_only"), object_info, seed=8)
    prompt[node_of(prompt, "MotionI2VLoader")]["inputs"]["weights"] = "textfile"
    message = failure_message(tiny_server, prompt)
    assert rel in message and "text file" in message and "private-token" not in message, message
    good_prompt_runs(tiny_server, object_info)


# ------------------------------------------------------------------------------------------------
# motion hints


STROKE = {"mode": "paint", "radius": 4, "points": [[10, 10], [20, 12]]}


@pytest.mark.parametrize("value, expected", [
    (hints([dict(STROKE, radius=1e9)]), "brush[0].radius: 1e+09 px is over the limit of 64 px"),
    (hints([dict(STROKE, radius=1e300)]), "over the limit of 64 px"),
    (hints([STROKE] * 10000), "brush: 10,000 strokes, over the limit of 5,000"),
    (hints(tracks=[[[10, 10], [1e12, 5]]]), "tracks[0][1]: x = 1e+12 is outside"),
    (hints(tracks=[[[10, 10]]] * 101), "tracks: 101 tracks, over the limit of 100"),
    ('{"version":1,"width":64,"height":64,"tracks":' + "[" * 50000 + "]" * 50000 + "}", "levels deep, over the limit of 8"),
], ids=["radius_1e9", "radius_1e300", "strokes_10000", "point_1e12", "tracks_101", "nested"])
def test_bad_hints_are_rejected_at_once(tiny_server, object_info, value, expected):
    message = failure_message(tiny_server, brush_prompt(object_info, hints_json=value))
    assert expected in message and "hints_json" in message and "Redraw" in message, message
    good_prompt_runs(tiny_server, object_info)


@pytest.mark.parametrize("value, expected", [
    ("[" * 50000 + "]" * 50000, "coord_str: brackets nested 50000 levels deep, over the limit of 8"),
    ('[{"x": 1e300, "y": 2}]', "coord_str[0][0]: x = 1e+300 is outside"),
], ids=["nested", "huge"])
def test_bad_coord_str_is_a_readable_node_error(tiny_server, object_info, value, expected):
    message = failure_message(tiny_server, brush_prompt(object_info, coord_str=value))
    assert expected in message, message
    good_prompt_runs(tiny_server, object_info)


def test_many_points_give_a_small_ui_summary(tiny_server, object_info):
    tracks = [[[float(i % 60), float(j % 60)] for j in range(1000)] for i in range(99)]
    prompt = brush_prompt(object_info, hints_json=hints([STROKE] * 200, tracks))
    brush = node_of(prompt, "MotionI2VDrawMotionBrush")
    result = good_prompt_runs_prompt(tiny_server, prompt)
    summary = result.outputs[brush]["mi2v_hints"][0]
    assert summary["track_count"] == 99 and summary["track_points"] == [1000] * 99
    assert summary["stroke_count"] == 200 and summary["brush_points"] == 400
    assert len(json.dumps(result.outputs[brush])) < 20_000, "a summary, not every point"
    good_prompt_runs(tiny_server, object_info)


def good_prompt_runs_prompt(server, prompt):
    with StatsWatch(server):
        result = server.client().run(prompt, timeout=RUN_TIMEOUT)
    assert result.ok, result.describe()
    return result
