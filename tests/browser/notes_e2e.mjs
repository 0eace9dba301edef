// Checks web/motion_notes.js in the real ComfyUI frontend (Debian's chromium + playwright-core):
// after a Draw Motion Brush / Export Tracks node runs, its ui.mi2v_notes lines appear on the node,
// are drawn without errors, and stay out of the saved workflow. Run by test_notes_browser.py,
// which checks the JSON report printed as the last stdout line.
//
// Env: COMFY_URL, MI2V_BROWSER_DIR (holds node_modules/playwright-core), CHROMIUM.

import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";

const env = process.env;
const BASE = env.COMFY_URL ?? "http://127.0.0.1:8188";
const browserDir = env.MI2V_BROWSER_DIR ?? path.join(os.homedir(), ".cache", "motion-i2v", "browser");
const { chromium } = createRequire(path.join(browserDir, "package.json"))("playwright-core");

const report = { checks: {}, consoleErrors: [] };
const browser = await chromium.launch({
  executablePath: env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-extensions", "--no-first-run"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("console", (m) => m.type() === "error" && report.consoleErrors.push(m.text().slice(0, 300)));
  page.on("pageerror", (e) => report.consoleErrors.push("pageerror: " + e.message.slice(0, 300)));
  await page.request.post(`${BASE}/api/settings`, { data: { "Comfy.TutorialCompleted": true } });
  await page.goto(BASE);
  await page.waitForFunction(() => window.app?.graph && window.LiteGraph, null, { timeout: 60000 });
  report.checks.extensionRegistered = await page.evaluate(() =>
    window.app.extensions.some((e) => e.name === "motion_i2v.notes"),
  );
  Object.assign(report.checks, await page.evaluate(async () => {
    const { app, LiteGraph } = window;
    app.graph.clear();
    const node = LiteGraph.createNode("MotionI2VExportTracks");
    node.pos = [100, 100];
    app.graph.add(node);
    const before = JSON.stringify(app.graph.serialize().nodes[0].widgets_values);
    const heightBefore = node.size[1];
    const notes = ["2 track(s) exported in 512x320 pixels", "scaled from the 768x768 image (x * 0.6667, y * 0.4167)"];
    node.onExecuted({ mi2v_notes: notes });
    app.graph.setDirtyCanvas(true, true);
    app.canvas.draw(true, true);
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    const widget = node.widgets.find((w) => w.name === "mi2v_notes");
    const first = widget ? [...widget.value] : null;
    const after = JSON.stringify(app.graph.serialize().nodes[0].widgets_values);
    node.onExecuted({ mi2v_notes: ["only one now"] });
    const replaced = node.widgets.filter((w) => w.name === "mi2v_notes").length;
    return {
      widgetValue: first,
      grew: node.size[1] > heightBefore,
      workflowUnchanged: before === after,
      oneWidget: replaced === 1,
      latest: node.widgets.find((w) => w.name === "mi2v_notes").value,
    };
  }));
} catch (e) {
  report.failure = String(e?.stack ?? e).slice(0, 3000);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
