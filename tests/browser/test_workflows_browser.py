"""The example workflows as a new user first sees them: opened like the template browser does, in
a real browser, classic canvas and Nodes 2.0, pinned and newest frontend. Every node is fully on
screen and uncovered (no other node, DOM widget or frontend bar over it), no two overlap, each
template has its thumbnail, and our code logs no error or deprecation.

tests/browser/workflows_e2e.mjs measures; screenshots of each opened workflow land in the test's
tmp folder (SHOT_DIR) for looking at them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from browser_support import browser_dir
from harness.comfy_server import REPO_DIR, default_comfyui_dir

SCRIPT = Path(__file__).parent / "workflows_e2e.mjs"
EXAMPLES = sorted(p.stem for p in (REPO_DIR / "example_workflows").glob("*.json"))


def run_workflows_script(tools, server, vue: bool, shot_dir: Path) -> dict:
    # The examples load ComfyUI's own example.png, which a ComfyUI install has in its input folder.
    example = default_comfyui_dir() / "input" / "example.png"
    if example.is_file() and not (server.input_dir / "example.png").is_file():
        shutil.copyfile(example, server.input_dir / "example.png")
    env = dict(os.environ, COMFY_URL=server.url, VUE_NODES="1" if vue else "0", SHOT_DIR=str(shot_dir),
               MI2V_BROWSER_DIR=str(browser_dir()), CHROMIUM=tools["chromium"])
    proc = subprocess.run([tools["node"], str(SCRIPT)], env=env, capture_output=True, text=True, timeout=240)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, f"workflow script failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads(lines[-1])
    assert "failure" not in report, report["failure"] + "\nserver log:\n" + server.log_tail(3000)
    return report


@pytest.mark.parametrize("mode", ["classic", "vue"])
def test_example_workflows_open_with_every_node_visible(mode, browser_tools, frontend_server, tmp_path):
    report = run_workflows_script(browser_tools, frontend_server, vue=(mode == "vue"), shot_dir=tmp_path)
    print(f"{mode}: frontend {report.get('frontendVersion')}, screenshots in {tmp_path}")
    opened = {w["name"]: w for w in report["workflows"]}
    assert sorted(opened) == EXAMPLES
    for name, wf in opened.items():
        assert wf["thumbnail"] == 200, f"{name}: thumbnail {wf['thumbnail']}"
        assert not wf.get("imagesNotLoaded"), f"{name}: the example image did not load"
        assert not wf["overlaps"], f"{name}: {wf['overlaps']}"
        covered = {f"{n['type']} #{n['id']}": n["covered"] for n in wf["nodes"] if n["covered"]}
        assert not covered, f"{name} (scale {wf['scale']}): nodes not fully visible: {json.dumps(covered)[:1500]}"
    ours = [e for e in report["consoleErrors"] if ("mi2v" in e.lower() or "motion-i2v" in e.lower()) and "api.comfy.org" not in e]
    assert not ours, ours
    assert not report["deprecations"], report["deprecations"]
