"""The notes a node shows on itself (web/motion_notes.js), in the real frontend."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from browser_support import browser_dir

SCRIPT = Path(__file__).with_name("notes_e2e.mjs")


def test_notes_appear_on_the_node_and_stay_out_of_the_workflow(browser_tools, comfy_server):
    env = dict(os.environ, COMFY_URL=comfy_server.url, MI2V_BROWSER_DIR=str(browser_dir()),
               CHROMIUM=browser_tools["chromium"])
    proc = subprocess.run([browser_tools["node"], str(SCRIPT)], env=env, capture_output=True, text=True, timeout=180)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(lines[-1])
    assert "failure" not in report, report["failure"]
    checks = report["checks"]
    assert checks["extensionRegistered"]
    assert checks["widgetValue"] == ["2 track(s) exported in 512x320 pixels",
                                     "scaled from the 768x768 image (x * 0.6667, y * 0.4167)"]
    assert checks["grew"] and checks["workflowUnchanged"] and checks["oneWidget"]
    assert checks["latest"] == ["only one now"]
    # Page errors are always ours to explain; missing frontend resources (404s) are not.
    ours = [e for e in report["consoleErrors"] if e.startswith("pageerror") or "mi2v" in e.lower()
            or "motion" in e.lower()]
    assert not ours, ours
