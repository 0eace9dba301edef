// Drives the Draw Motion Brush editor in the real ComfyUI frontend with Debian's chromium and
// playwright-core (no browser download), against a running ComfyUI server. Run by
// tests/browser/test_editor_browser.py, which checks the JSON report printed as the last stdout line.
//
// Env: COMFY_URL (server), VUE_NODES=0|1 (canvas mode), IMAGE_NAME (a file in the server's input
// folder), IMAGE_W/IMAGE_H (its size), SCREENSHOT (png path), MI2V_BROWSER_DIR (holds
// node_modules/playwright-core), CHROMIUM (executable, default /usr/bin/chromium).

import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { watchConsole } from "./console_watch.mjs";

const env = process.env;
const BASE = env.COMFY_URL ?? "http://127.0.0.1:8188";
const VUE = env.VUE_NODES === "1";
const IMAGE_NAME = env.IMAGE_NAME;
const IMAGE_W = Number(env.IMAGE_W);
const IMAGE_H = Number(env.IMAGE_H);
const ZOOM = 0.85; // not 1, so a zoom leak into the stored coordinates would show
const browserDir = env.MI2V_BROWSER_DIR ?? path.join(os.homedir(), ".cache", "motion-i2v", "browser");
const { chromium } = createRequire(path.join(browserDir, "package.json"))("playwright-core");

// What the test draws, in image pixels (the image is IMAGE_W x IMAGE_H = 384 x 256). Each mode
// draws a little shifted, so that its queued prompt differs and the backend really runs it.
const SHIFT = VUE ? 6 : 0;
const PLAN = shiftPlan({
  paintRadius: 20,
  paint: [[60, 60], [110, 72], [160, 80], [200, 76], [240, 70]],
  eraseRadius: 8,
  erase: [[150, 40], [150, 75], [150, 110]],
  track1: [[70, 66], [130, 150], [200, 190]], // starts in the painted band: Play moves it
  track2: [[260, 60], [300, 120], [330, 200]],
  track2Drag: { from: [300, 120], to: [290, 140] },
  track2Extra: [350, 232], // added, then deleted with a right-click
  anchor: [40, 230],
  doomed: [[190, 236], [230, 240]], // a track deleted with the "Delete track" button
});

function shiftPlan(plan) {
  const move = (v) => (Array.isArray(v) ? (typeof v[0] === "number" ? [v[0] + SHIFT, v[1] + SHIFT] : v.map(move)) : v);
  return Object.fromEntries(
    Object.entries(plan).map(([k, v]) => [k, v && typeof v === "object" && !Array.isArray(v) ? shiftPlan(v) : move(v)]),
  );
}

const report = { mode: VUE ? "vue" : "classic", plan: PLAN, checks: {}, consoleErrors: [], timings: {} };
const t0 = Date.now();
const mark = (name) => (report.timings[name] = Date.now() - t0);

const browser = await chromium.launch({
  executablePath: env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--metrics-recording-only",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const collectDeprecations = await watchConsole(page, report);

  // Without TutorialCompleted the first-run templates dialog covers the canvas and eats the mouse.
  await page.request.post(`${BASE}/api/settings`, {
    data: { "Comfy.TutorialCompleted": true, "Comfy.VueNodes.Enabled": VUE },
  });
  await page.goto(BASE);
  await page.waitForFunction(() => window.app?.extensionManager && window.app.graph && window.LiteGraph, null, {
    timeout: 60000,
  });
  mark("appReady");
  report.frontendVersion = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ ?? null);
  report.checks.extensionRegistered = await page.evaluate(() =>
    window.app.extensions.some((e) => e.name === "motion_i2v.draw_motion_brush"),
  );
  report.checks.vueNodesSetting = await page.evaluate(() =>
    window.app.extensionManager.setting.get("Comfy.VueNodes.Enabled"),
  );

  // ─── Build LoadImage -> Draw Motion Brush -> MaskToImage -> PreviewImage, and -> Drags To Flow ───
  const ids = await page.evaluate(
    ({ imageName, zoom }) => {
      const { app, LiteGraph } = window;
      app.graph.clear();
      const add = (type, pos, size) => {
        const node = LiteGraph.createNode(type);
        node.pos = pos;
        if (size) node.size = size;
        app.graph.add(node);
        return node;
      };
      const load = add("LoadImage", [10, 120], [300, 340]);
      load.widgets.find((w) => w.name === "image").value = imageName;
      const brush = add("MotionI2VDrawMotionBrush", [340, 120], [560, 560]);
      const toImage = add("MaskToImage", [940, 120]);
      const preview = add("PreviewImage", [940, 240], [260, 260]);
      const toFlow = add("MotionI2VDragsToFlow", [940, 540]);
      toFlow.widgets.find((w) => w.name === "num_frames").value = 12; // Play must follow it
      load.connect(0, brush, 0);
      brush.connect(0, toImage, 0);
      brush.connect(1, toFlow, 0);
      toImage.connect(0, preview, 0);
      app.canvas.ds.scale = zoom;
      app.canvas.ds.offset = [80, 90]; // clear of the sidebar and the top bar
      app.graph.setDirtyCanvas(true, true);
      return { load: load.id, brush: brush.id, toImage: toImage.id, preview: preview.id, toFlow: toFlow.id };
    },
    { imageName: IMAGE_NAME, zoom: ZOOM },
  );
  report.ids = ids;

  const brushNode = () => `window.app.graph.getNodeById(${ids.brush})`;
  const editorExpr = () => `${brushNode()}.mi2vEditor`;
  const widgetValue = () => page.evaluate(`${brushNode()}.widgets.find((w) => w.name === "hints_json").value`);
  const serializedValue = () =>
    page.evaluate(`window.app.graph.serialize().nodes.find((n) => n.id === ${ids.brush}).widgets_values[0]`);

  // The reference image must appear from the Load Image node alone, before any run.
  await page.waitForFunction(
    ({ expr, w, h }) => {
      const editor = eval(expr);
      return editor?.reference && editor.hints.width === w && editor.hints.height === h;
    },
    { expr: editorExpr(), w: IMAGE_W, h: IMAGE_H },
    { timeout: 15000 },
  );
  mark("referenceShown");
  report.checks.referenceFromLoadImage = true;

  const stageBox = await page.locator(`.mi2v-editor canvas.mi2v-canvas`).first().boundingBox();
  report.canvasBox = stageBox;

  /** Viewport position of an image pixel, and a check that the editor canvas is on top there. */
  const aim = async ([x, y]) => {
    const [cx, cy] = await page.evaluate(({ expr, p }) => eval(expr).imageToClient(p), { expr: editorExpr(), p: [x, y] });
    const onTop = await page.evaluate(
      ({ cx, cy }) => document.elementFromPoint(cx, cy)?.classList.contains("mi2v-canvas"),
      { cx, cy },
    );
    if (!onTop) throw new Error(`editor canvas is covered at image point ${x},${y} (client ${cx},${cy})`);
    return [cx, cy];
  };
  const click = async (p, options = {}) => {
    const [cx, cy] = await aim(p);
    await page.mouse.click(cx, cy, options);
  };
  const dragThrough = async (points) => {
    let [cx, cy] = await aim(points[0]);
    await page.mouse.move(cx, cy);
    await page.mouse.down();
    for (const p of points.slice(1)) {
      [cx, cy] = await aim(p);
      await page.mouse.move(cx, cy, { steps: 4 });
    }
    await page.mouse.up();
  };
  const pressButton = (action) => page.locator(`.mi2v-editor [data-mi2v-action="${action}"]`).first().click();

  // ─── Brush: paint, then erase across the painted band ───
  await page.locator(`.mi2v-editor [data-mi2v-action="size"]`).first().fill(String(PLAN.paintRadius));
  await pressButton("paint");
  await dragThrough(PLAN.paint);
  await pressButton("erase");
  await page.locator(`.mi2v-editor [data-mi2v-action="size"]`).first().fill(String(PLAN.eraseRadius));
  await dragThrough(PLAN.erase);

  // ─── Tracks ───
  await pressButton("track");
  for (const p of PLAN.track1) await click(p);
  await page.keyboard.press("Escape"); // end track 1
  for (const p of PLAN.track2) await click(p);
  await dragThrough([PLAN.track2Drag.from, PLAN.track2Drag.to]); // move point 2 of track 2
  await click(PLAN.track2Extra);
  const withExtra = JSON.parse(await widgetValue()).tracks[1].length;
  await click(PLAN.track2Extra, { button: "right" }); // delete that point again
  report.checks.pointDeletedByRightClick = withExtra === 4 && JSON.parse(await widgetValue()).tracks[1].length === 3;
  // Per-track timing with the mouse and keyboard: select track 1 by its first point, then fill the
  // timing row (start 2, end 9, ease out).
  await click(PLAN.track1[0]);
  const timingField = (key) => page.locator(`.mi2v-editor [data-mi2v-action="timing-${key}"]`).first();
  for (const [key, text] of [["start", "2"], ["end", "9"]]) {
    await timingField(key).click();
    await page.keyboard.press("Control+A");
    await page.keyboard.type(text);
    await page.keyboard.press("Tab");
  }
  await timingField("ease-out").click();
  report.timingSet = JSON.parse(await widgetValue()).timing ?? null;
  report.checks.timingKeptTracks = JSON.parse(await widgetValue()).tracks.length === 2;
  await pressButton("new-track");
  await click(PLAN.anchor); // a one-point track: static anchor
  await pressButton("new-track");
  for (const p of PLAN.doomed) await click(p);
  const beforeDelete = JSON.parse(await widgetValue()).tracks.length;
  await pressButton("delete-track");
  report.checks.trackDeletedByButton = beforeDelete === 4 && JSON.parse(await widgetValue()).tracks.length === 3;
  mark("drawn");

  // ─── The serialised value ───
  const drawn = await serializedValue();
  report.drawnValue = drawn;
  report.checks.widgetValueEqualsSerialized = drawn === (await widgetValue());

  // Editor undo / redo (the last edit was the track deletion).
  await pressButton("undo");
  const undone = JSON.parse(await serializedValue());
  await pressButton("redo");
  report.checks.editorUndoRedo = undone.tracks.length === 4 && (await serializedValue()) === drawn;

  // The status line changes with the tool; the drawing surface must not move or resize with it.
  const canvasRect = () => page.evaluate(() => JSON.stringify(document.querySelector(".mi2v-canvas").getBoundingClientRect()));
  const rectBefore = await canvasRect();
  await pressButton("paint");
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  const rectPaint = await canvasRect();
  await pressButton("track");
  report.canvasRects = [rectBefore, rectPaint];
  report.checks.stableLayout = rectBefore === rectPaint;

  // "Play" moves the image itself along the drawing, over the frames of the Drags To Flow it feeds,
  // and leaves the value alone.
  await pressButton("play");
  await page.waitForFunction((expr) => eval(expr)._playFrame >= 2, editorExpr(), { timeout: 20000, polling: 100 });
  report.playInfo = await page.evaluate((expr) => {
    const editor = eval(expr);
    const frames = editor._warpedFrames();
    const pixels = (c) => c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    const first = pixels(frames[0]);
    const last = pixels(frames[frames.length - 1]);
    let changed = 0;
    for (let i = 0; i < first.length; i += 4) if (Math.abs(first[i] - last[i]) + Math.abs(first[i + 1] - last[i + 1]) > 30) changed++;
    return { targetFrames: editor.target.frames, frames: frames.length, changedFraction: changed / (first.length / 4) };
  }, editorExpr());
  if (env.PLAY_SCREENSHOT) {
    await page.evaluate((expr) => {
      const editor = eval(expr);
      editor._playing = false; // hold the last frame for the picture
      editor._playFrame = editor.target.frames - 1;
      editor._playing = true;
      cancelAnimationFrame(editor._playRaf);
      editor._render();
    }, editorExpr());
    await page.locator(".mi2v-editor").first().screenshot({ path: env.PLAY_SCREENSHOT });
    await page.evaluate((expr) => {
      const editor = eval(expr);
      editor._playing = false;
      editor.togglePlay();
    }, editorExpr());
  }
  await pressButton("play");
  report.checks.play = (await page.evaluate((expr) => eval(expr)._playing, editorExpr())) === false && (await serializedValue()) === drawn;
  // The wheel over the editor zooms the image at the mouse (the image point there stays put), not
  // the graph; a click then still lands on the right image pixel; Fit shows the whole image again.
  {
    const graphScale = () => page.evaluate(() => window.app.canvas.ds.scale);
    const scaleBefore = await graphScale();
    const [wx, wy] = await aim(PLAN.track1[1]);
    await page.mouse.move(wx, wy);
    await page.mouse.wheel(0, -300);
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const zoomed = await page.evaluate((expr) => ({ ...eval(expr)._view }), editorExpr());
    const [ax, ay] = await aim(PLAN.track1[1]);
    report.zoom = { zoomed, pointMoved: Math.hypot(ax - wx, ay - wy), graphScaleKept: (await graphScale()) === scaleBefore };
    await pressButton("fit");
    report.checks.zoom =
      zoomed.zoom > 1.3 && report.zoom.pointMoved < 1.5 && report.zoom.graphScaleKept &&
      (await page.evaluate((expr) => eval(expr)._view.zoom, editorExpr())) === 1 && (await serializedValue()) === drawn;
  }
  const toolBefore = await page.evaluate((expr) => [eval(expr).tool, eval(expr).brushRadius], editorExpr());

  // The editor follows the node's size (dragging the node's bottom-right corner with the mouse);
  // the stored coordinates do not change.
  const sizeBefore = await page.evaluate((expr) => [...eval(expr)._cssSize], editorExpr());
  const corner = await page.evaluate((id) => {
    const { app } = window;
    const node = app.graph.getNodeById(id);
    const el = document.querySelector(`[data-node-id="${id}"]`);
    if (el) {
      const r = el.getBoundingClientRect();
      return [r.right - 3, r.bottom - 3];
    }
    const rect = app.canvas.canvas.getBoundingClientRect();
    const [x, y] = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + node.size[0], node.pos[1] + node.size[1]]);
    return [rect.left + x - 3, rect.top + y - 3];
  }, ids.brush);
  await page.mouse.move(corner[0], corner[1]);
  await page.mouse.down();
  await page.mouse.move(corner[0] + 120, corner[1] + 60, { steps: 6 });
  await page.mouse.up();
  await page
    .waitForFunction(({ expr, w }) => eval(expr)._cssSize[0] > w + 50, { expr: editorExpr(), w: sizeBefore[0] }, { timeout: 10000, polling: 100 })
    .catch(() => null);
  const sizeAfter = await page.evaluate((expr) => [...eval(expr)._cssSize], editorExpr());
  report.editorSizes = { before: sizeBefore, after: sizeAfter };
  report.checks.resizesWithNode = sizeAfter[0] > sizeBefore[0] + 50 && (await serializedValue()) === drawn;

  // ─── Save and reload the workflow ───
  const workflow = await page.evaluate(() => window.app.graph.serialize());
  await page.evaluate(async (wf) => {
    window.app.graph.clear();
    await window.app.loadGraphData(wf);
  }, workflow);
  await page.waitForFunction((expr) => eval(expr), editorExpr(), { timeout: 10000 });
  const reloadedWorkflow = await page.evaluate(() => window.app.graph.serialize());
  const valuesOf = (wf) => Object.fromEntries(wf.nodes.map((n) => [n.id, JSON.stringify(n.widgets_values ?? [])]));
  report.checks.reloadIdentical =
    JSON.stringify(valuesOf(reloadedWorkflow)) === JSON.stringify(valuesOf(workflow)) &&
    (await widgetValue()) === drawn;
  if (!report.checks.reloadIdentical) {
    report.reloadDiff = { before: valuesOf(workflow), after: valuesOf(reloadedWorkflow), widget: await widgetValue() };
  }
  report.checks.toolKept =
    JSON.stringify(await page.evaluate((expr) => [eval(expr).tool, eval(expr).brushRadius], editorExpr())) ===
    JSON.stringify(toolBefore);
  report.checks.reloadEditorState = await page.evaluate(
    ({ expr }) => JSON.stringify(eval(expr).hints.tracks.length),
    { expr: editorExpr() },
  );
  mark("reloaded");

  // ─── Copy / paste the node ───
  const pasted = await page.evaluate(async (brushId) => {
    const { app } = window;
    const node = app.graph.getNodeById(brushId);
    const before = new Set(app.graph.nodes.map((n) => n.id));
    app.canvas.deselectAll?.();
    app.canvas.select?.(node) ?? app.canvas.selectNode?.(node);
    app.canvas.copyToClipboard();
    app.canvas.pasteFromClipboard();
    await new Promise((r) => setTimeout(r, 50));
    const copy = app.graph.nodes.find((n) => !before.has(n.id) && n.comfyClass === "MotionI2VDrawMotionBrush");
    const value = copy?.widgets.find((w) => w.name === "hints_json").value ?? null;
    if (copy) app.graph.remove(copy);
    return value;
  }, ids.brush);
  report.checks.copyPasteIdentical = pasted === drawn;

  // ─── Graph undo (ComfyUI's change tracker) restores the widget value ───
  const graphUndo = await page.evaluate(async ({ brushId }) => {
    const { app } = window;
    const tracker = app.extensionManager.workflow.activeWorkflow.changeTracker;
    if (tracker.captureCanvasState) tracker.captureCanvasState();
    else tracker.checkState();
    const valueOf = () => app.graph.getNodeById(brushId).widgets.find((w) => w.name === "hints_json").value;
    const before = valueOf();
    app.graph.getNodeById(brushId).mi2vEditor.clearTracks();
    const cleared = valueOf();
    await tracker.undo();
    return { before, cleared, after: valueOf() };
  }, { brushId: ids.brush });
  report.checks.graphUndo =
    graphUndo.before === drawn && JSON.parse(graphUndo.cleared).tracks.length === 0 && graphUndo.after === drawn;
  await page.waitForFunction((expr) => eval(expr), editorExpr(), { timeout: 10000 });
  mark("undoChecked");

  // ─── Queue the workflow; collect what the backend produced ───
  const run = await page.evaluate(async () => {
    const { app } = window;
    const api = app.api;
    const outputs = {};
    const onExecuted = (e) => (outputs[e.detail.node] = e.detail.output);
    api.addEventListener("executed", onExecuted);
    const finished = new Promise((resolve) => {
      api.addEventListener("execution_success", () => resolve("success"), { once: true });
      api.addEventListener("execution_error", (e) => resolve("error: " + JSON.stringify(e.detail).slice(0, 2000)), {
        once: true,
      });
      setTimeout(() => resolve("timeout"), 60000);
    });
    await app.queuePrompt(0, 1);
    const status = await finished;
    api.removeEventListener("executed", onExecuted);
    return { status, outputs };
  });
  report.run = run;
  mark("ran");
  // The editor shows the image the node received (sent back in the node's ui output).
  await page.waitForFunction(
    ({ expr }) => {
      const editor = eval(expr);
      return editor.reference?.src?.includes("type=temp");
    },
    { expr: editorExpr() },
    { timeout: 10000 },
  );
  report.checks.referenceFromRun = true;
  report.finalValue = await serializedValue();

  // ─── Screenshot: Load Image and the editor with the image, brush overlay and tracks ───
  if (env.SCREENSHOT) {
    await page.mouse.move(5, 795); // no hover cursor in the picture
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const clip = await page.evaluate(({ ids }) => {
      const { app, LiteGraph } = window;
      const rect = app.canvas.canvas.getBoundingClientRect();
      const corner = (node, dx, dy) => {
        const [x, y] = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + dx, node.pos[1] + dy]);
        return [rect.left + x, rect.top + y];
      };
      const load = app.graph.getNodeById(ids.load);
      const brush = app.graph.getNodeById(ids.brush);
      const [x0, y0] = corner(load, -8, -LiteGraph.NODE_TITLE_HEIGHT - 8);
      const [x1, y1] = corner(brush, brush.size[0] + 8, brush.size[1] + 8);
      return { x: Math.max(0, x0), y: Math.max(0, y0), width: x1 - Math.max(0, x0), height: y1 - Math.max(0, y0) };
    }, { ids });
    report.screenshotClip = clip;
    await page.screenshot({ path: env.SCREENSHOT, clip });
  }
  // ─── Pop-out: the same editor in a large overlay over the graph; a click there edits the same
  // widget value; Escape puts it back into the node (classic canvas only: hidden in Nodes 2.0) ───
  report.popoutButtonShown = await page.locator(`.mi2v-editor [data-mi2v-action="popout"]`).first().isVisible();
  if (!VUE) {
    const canvasBox = () => page.locator(".mi2v-editor canvas.mi2v-canvas").first().boundingBox();
    const inNode = await canvasBox();
    const tracksBefore = JSON.parse(await widgetValue()).tracks.length;
    await pressButton("popout");
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const inOverlay = await page.evaluate(() => !!document.querySelector("body > .mi2v-popout > .mi2v-editor"));
    const big = await canvasBox();
    await pressButton("track");
    const point = [20 + SHIFT, 24];
    await click(point); // a new one-point track, drawn in the big view
    if (env.POPOUT_SCREENSHOT) await page.screenshot({ path: env.POPOUT_SCREENSHOT });
    const edited = JSON.parse(await widgetValue());
    await page.keyboard.press("Escape");
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const back = await canvasBox();
    report.popout = {
      inOverlay, inNode, big, back, point, tracksBefore,
      tracksInPopout: edited.tracks.length, lastTrack: edited.tracks.at(-1),
      closed: await page.evaluate(() => document.querySelector(".mi2v-popout") === null),
      valueAfterClose: await widgetValue(),
      editorValueAfterClose: await serializedValue(),
    };
  }
  await collectDeprecations();
  mark("done");
} catch (e) {
  report.failure = String(e?.stack ?? e).slice(0, 3000);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
