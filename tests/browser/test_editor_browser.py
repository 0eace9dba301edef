"""The Draw Motion Brush editor in a real browser (Debian chromium + playwright-core) against the
real ComfyUI server of the test harness, in the classic canvas and in Nodes 2.0 (Vue nodes) mode.

tests/browser/editor_e2e.mjs paints, erases and draws tracks with the real mouse, saves/reloads,
copies/pastes, undoes through the graph and queues the workflow; it prints a JSON report that the
tests below check against what was drawn and against what the backend produced.
Set MI2V_UPDATE_SCREENSHOT=1 to refresh docs/widget.png from the classic-mode run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.comfy_server import REPO_DIR
from browser_support import browser_dir as _browser_dir
from motion_i2v_core.motion.hints import parse_widget_json, rasterize_brush

HERE = Path(__file__).parent
SCRIPT = HERE / "editor_e2e.mjs"
IMAGE_NAME = "mi2v_browser_reference.png"
IMAGE_W, IMAGE_H = 384, 256
POINT_TOLERANCE_PX = 1.5  # mouse positions are whole screen pixels; one is ~1.1 image px here


@pytest.fixture
def reference_image(frontend_server):
    """A 384x256 test image in the server's input folder (before the page lists the input files)."""
    y, x = np.mgrid[0:IMAGE_H, 0:IMAGE_W]
    img = np.stack([(x * 255 // IMAGE_W), (y * 255 // IMAGE_H), np.full_like(x, 90)], -1).astype(np.uint8)
    cv2.circle(img, (120, 90), 40, (240, 240, 240), -1)
    cv2.rectangle(img, (250, 150), (340, 220), (30, 30, 30), -1)
    cv2.imwrite(str(frontend_server.input_dir / IMAGE_NAME), img)
    return IMAGE_NAME


def run_editor_script(tools, server, vue: bool, screenshot: Path) -> dict:
    env = dict(
        os.environ,
        COMFY_URL=server.url,
        VUE_NODES="1" if vue else "0",
        IMAGE_NAME=IMAGE_NAME,
        IMAGE_W=str(IMAGE_W),
        IMAGE_H=str(IMAGE_H),
        SCREENSHOT=str(screenshot),
        PLAY_SCREENSHOT=str(screenshot.with_name(screenshot.stem + "_play.png")),
        POPOUT_SCREENSHOT=str(screenshot.with_name(screenshot.stem + "_popout.png")),
        MI2V_BROWSER_DIR=str(_browser_dir()),
        CHROMIUM=tools["chromium"],
    )
    proc = subprocess.run([tools["node"], str(SCRIPT)], env=env, capture_output=True, text=True, timeout=180)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, f"editor script failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads(lines[-1])
    assert "failure" not in report, report["failure"] + "\nserver log:\n" + server.log_tail(3000)
    return report


def fetch_view_image(url: str, ref: dict) -> np.ndarray:
    query = urllib.parse.urlencode({k: ref.get(k, "") for k in ("filename", "subfolder", "type")})
    with urllib.request.urlopen(f"{url}/view?{query}", timeout=30) as r:
        return cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_GRAYSCALE)


def assert_points_close(actual, expected, what):
    assert len(actual) == len(expected), f"{what}: {actual} vs {expected}"
    for a, e in zip(actual, expected):
        assert abs(a[0] - e[0]) <= POINT_TOLERANCE_PX and abs(a[1] - e[1]) <= POINT_TOLERANCE_PX, f"{what}: {actual} vs {expected}"


def check_popout(report):
    pop = report["popout"]
    assert report["popoutButtonShown"] is True
    assert pop["inOverlay"] and pop["closed"], pop
    assert pop["big"]["width"] > 1.5 * pop["inNode"]["width"] and pop["big"]["height"] > 1.5 * pop["inNode"]["height"], pop
    assert pop["tracksInPopout"] == pop["tracksBefore"] + 1, pop
    assert_points_close(pop["lastTrack"], [pop["point"]], "track drawn in the pop-out")
    assert pop["valueAfterClose"] == pop["editorValueAfterClose"] and len(json.loads(pop["valueAfterClose"])["tracks"]) == pop["tracksInPopout"]
    assert all(abs(pop["back"][k] - pop["inNode"][k]) <= 1 for k in ("width", "height")), pop


@pytest.mark.parametrize("mode", ["classic", "vue"])
def test_editor_in_real_browser(mode, browser_tools, frontend_server, reference_image, tmp_path):
    comfy_server = frontend_server
    screenshot = tmp_path / f"widget_{mode}.png"
    report = run_editor_script(browser_tools, comfy_server, vue=(mode == "vue"), screenshot=screenshot)
    plan, checks = report["plan"], report["checks"]
    print(f"{mode}: frontend {report.get('frontendVersion')}, timings (ms) {report['timings']}")

    # Set-up: our extension is loaded, the mode is the one asked for, the image showed before any run.
    assert checks["extensionRegistered"] and checks["vueNodesSetting"] is (mode == "vue")
    assert checks["referenceFromLoadImage"]

    # The serialised value is compact format-v1 JSON in image pixels (drawn at zoom 0.85).
    value = report["drawnValue"]
    assert checks["widgetValueEqualsSerialized"]
    assert " " not in value and len(value) < 4000
    data = json.loads(value)
    assert (data["version"], data["width"], data["height"]) == (2, IMAGE_W, IMAGE_H)
    paint, erase = data["brush"]
    assert (paint["mode"], paint["radius"], erase["mode"], erase["radius"]) == ("paint", plan["paintRadius"], "erase", plan["eraseRadius"])
    assert_points_close([paint["points"][0], paint["points"][-1]], [plan["paint"][0], plan["paint"][-1]], "paint stroke ends")
    assert_points_close([erase["points"][0], erase["points"][-1]], [plan["erase"][0], plan["erase"][-1]], "erase stroke ends")
    track2 = [plan["track2"][0], plan["track2Drag"]["to"], plan["track2"][2]]
    assert len(data["tracks"]) == 3
    assert_points_close(data["tracks"][0], plan["track1"], "track 1")
    assert_points_close(data["tracks"][1], track2, "track 2 (point 2 dragged)")
    assert_points_close(data["tracks"][2], [plan["anchor"]], "anchor")
    # Per-track timing set in the editor's timing row (format v2), kept through everything below.
    timing = {"start": 2, "end": 9, "ease_in": False, "ease_out": True}
    assert report["timingSet"] == [timing, None] and checks["timingKeptTracks"], report["timingSet"]
    assert data["timing"] == [timing, None, None]
    assert parse_widget_json(value).timing == [timing, None, None]
    assert checks["pointDeletedByRightClick"] and checks["trackDeletedByButton"] and checks["editorUndoRedo"]
    assert checks["play"]
    play = report["playInfo"]
    assert play["targetFrames"] == play["frames"] == 12, play  # the frames of the Drags To Flow it feeds
    assert play["changedFraction"] > 0.02, play  # the image itself moved, not only the points
    assert checks["stableLayout"], report["canvasRects"]
    assert checks["toolKept"]
    assert checks["zoom"], report["zoom"]
    assert checks["resizesWithNode"], report["editorSizes"]
    parse_widget_json(value)  # the Python reader accepts what the editor wrote

    # Persistence: save/reload, copy/paste, graph undo.
    assert checks["reloadIdentical"] and checks["reloadEditorState"] == "3"
    assert checks["copyPasteIdentical"]
    assert checks["graphUndo"]

    # The backend's MASK and trajectories match the drawing.
    run = report["run"]
    assert run["status"] == "success", run["status"]
    ids = report["ids"]
    summary = run["outputs"][str(ids["brush"])]["mi2v_hints"][0]
    assert (summary["width"], summary["height"]) == (IMAGE_W, IMAGE_H)
    assert summary["track_count"] == 3 and summary["track_points"] == [len(t) for t in data["tracks"]]
    for got, drawn in zip(summary["track_ends"], data["tracks"]):
        np.testing.assert_allclose(got, [drawn[0], drawn[-1]], atol=0.01)
    mask = fetch_view_image(comfy_server.url, run["outputs"][str(ids["preview"])]["images"][0]) > 127
    assert mask.shape == (IMAGE_H, IMAGE_W)
    np.testing.assert_array_equal(mask, rasterize_brush(data["brush"], IMAGE_W, IMAGE_H).numpy() > 0)
    at = lambda p: mask[round(p[1]), round(p[0])]  # noqa: E731  (image point (x, y) -> mask value)
    assert at(plan["paint"][0]) and at(plan["paint"][1]) and at(plan["paint"][-1])  # on the painted stroke
    assert not at(plan["erase"][1])  # erased across the stroke
    assert not at(plan["track2"][2]) and not at(plan["anchor"])  # never painted
    assert checks["referenceFromRun"] and report["finalValue"] == value

    # Pop-out: the same editor moved into a large overlay; drawing there edits the same widget value,
    # and Escape puts it back into the node at its old size.
    if mode == "vue":
        assert report["popoutButtonShown"] is False  # not offered in Nodes 2.0 (see _inVueNode)
    else:
        check_popout(report)

    # Errors from our extension (its files, its log prefix); the frontend's own offline noise
    # (blocked api.comfy.org look-ups, 404s for optional files) is not ours.
    ours = [e for e in report["consoleErrors"] if ("mi2v" in e.lower() or "motion-i2v" in e.lower()) and "api.comfy.org" not in e]
    assert not ours, ours
    assert not report["deprecations"], report["deprecations"]
    img = cv2.imread(str(screenshot))
    assert img is not None and img.shape[0] > 300 and img.shape[1] > 600
    if mode == "classic" and os.environ.get("MI2V_UPDATE_SCREENSHOT") == "1":
        (REPO_DIR / "docs").mkdir(exist_ok=True)
        shutil.copyfile(screenshot, REPO_DIR / "docs" / "widget.png")
