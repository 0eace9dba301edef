// Opens each of the pack's example workflows the way the template browser does, in the real
// ComfyUI frontend (Debian chromium + playwright-core), and measures what the user first sees:
// every node's rectangle on screen, whether each is fully in view and uncovered (by other nodes,
// their DOM widgets, or the frontend's bars and panels), plus a screenshot per workflow. Run by
// tests/browser/test_workflows_browser.py, which checks the JSON report (last stdout line).
//
// Env: COMFY_URL, VUE_NODES=0|1, SHOT_DIR (screenshots), MI2V_BROWSER_DIR, CHROMIUM.

import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { watchConsole } from "./console_watch.mjs";

const env = process.env;
const BASE = env.COMFY_URL ?? "http://127.0.0.1:8188";
const VUE = env.VUE_NODES === "1";
const browserDir = env.MI2V_BROWSER_DIR ?? path.join(os.homedir(), ".cache", "motion-i2v", "browser");
const { chromium } = createRequire(path.join(browserDir, "package.json"))("playwright-core");

const report = { mode: VUE ? "vue" : "classic", workflows: [], consoleErrors: [], deprecations: [], otherDeprecations: [] };
const browser = await chromium.launch({
  executablePath: env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } }); // a full-HD screen
  const collectDeprecations = await watchConsole(page, report);
  await page.request.post(`${BASE}/api/settings`, { data: { "Comfy.TutorialCompleted": true, "Comfy.VueNodes.Enabled": VUE } });
  await page.goto(BASE);
  await page.waitForFunction(() => window.app?.extensionManager && window.app.graph && window.LiteGraph, null, { timeout: 60000 });
  report.frontendVersion = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ ?? null);

  const templates = await (await page.request.get(`${BASE}/api/workflow_templates`)).json();
  const pack = Object.keys(templates).find((k) => k.toLowerCase().includes("motion-i2v"));
  report.pack = pack;
  for (const name of templates[pack] ?? []) {
    const base = `${BASE}/api/workflow_templates/${encodeURIComponent(pack)}/${encodeURIComponent(name)}`;
    const entry = { name, thumbnail: (await page.request.get(`${base}.jpg`)).status() };
    const workflow = await (await page.request.get(`${base}.json`)).json();
    await page.evaluate(async ({ wf, name }) => window.app.loadGraphData(wf, true, true, name), { wf: workflow, name });
    // Settle: images loaded (Load Image's preview, the editor's reference), layout done.
    await page
      .waitForFunction(
        () =>
          window.app.graph.nodes.every(
            (n) => (n.type !== "LoadImage" || n.imgs?.[0]?.complete) && (!n.mi2vEditor || n.mi2vEditor.reference),
          ),
        null,
        { timeout: 15000, polling: 200 },
      )
      .catch(() => (entry.imagesNotLoaded = true));
    await page.waitForTimeout(800);
    Object.assign(
      entry,
      await page.evaluate((vue) => {
        const { app, LiteGraph } = window;
        const canvasEl = app.canvas.canvas;
        const cr = canvasEl.getBoundingClientRect();
        const rectOf = (node) => {
          const el = document.querySelector(`[data-node-id="${node.id}"]`);
          if (vue && el) {
            const r = el.getBoundingClientRect();
            return { x: r.left, y: r.top, w: r.width, h: r.height, el };
          }
          const [x, y] = app.canvas.ds.convertOffsetToCanvas([node.pos[0], node.pos[1] - LiteGraph.NODE_TITLE_HEIGHT]);
          const s = app.canvas.ds.scale;
          return { x: cr.left + x, y: cr.top + y, w: node.size[0] * s, h: (node.size[1] + LiteGraph.NODE_TITLE_HEIGHT) * s };
        };
        const nodes = app.graph.nodes.map((node) => ({ node, rect: rectOf(node) }));
        const ownsElement = (node, rect, el) =>
          (rect.el && rect.el.contains(el)) || (node.widgets ?? []).some((w) => w.element?.contains?.(el));
        const out = [];
        for (const { node, rect } of nodes) {
          const covered = [];
          for (const fx of [0.04, 0.5, 0.96]) {
            for (const fy of [0.04, 0.5, 0.96]) {
              const px = rect.x + rect.w * fx;
              const py = rect.y + rect.h * fy;
              const el = document.elementFromPoint(px, py);
              const free = el && (vue ? ownsElement(node, rect, el) : el === canvasEl || ownsElement(node, rect, el));
              if (!free) {
                const who = el ? `${el.tagName.toLowerCase()}.${String(el.className?.baseVal ?? el.className).slice(0, 60)}` : "outside the window";
                const owner = nodes.find((o) => o.node !== node && el && ownsElement(o.node, o.rect, el));
                covered.push({ at: [Math.round(px), Math.round(py)], by: owner ? `node ${owner.node.id} (${owner.node.type})` : who });
              }
            }
          }
          out.push({
            id: node.id,
            type: node.type,
            title: node.title,
            rect: [rect.x, rect.y, rect.w, rect.h].map((v) => Math.round(v)),
            covered,
          });
        }
        const overlaps = [];
        for (let i = 0; i < out.length; i++) {
          for (let j = i + 1; j < out.length; j++) {
            const [ax, ay, aw, ah] = out[i].rect;
            const [bx, by, bw, bh] = out[j].rect;
            const ix = Math.min(ax + aw, bx + bw) - Math.max(ax, bx);
            const iy = Math.min(ay + ah, by + bh) - Math.max(ay, by);
            if (ix > 0 && iy > 0) overlaps.push(`${out[i].type} #${out[i].id} and ${out[j].type} #${out[j].id}: ${ix}x${iy} px`);
          }
        }
        return { nodes: out, overlaps, scale: app.canvas.ds.scale, viewport: [window.innerWidth, window.innerHeight] };
      }, VUE),
    );
    if (env.SHOT_DIR) {
      entry.screenshot = path.join(env.SHOT_DIR, `${report.mode}_${report.workflows.length + 1}.png`);
      await page.screenshot({ path: entry.screenshot });
    }
    report.workflows.push(entry);
  }
  await collectDeprecations();
} catch (e) {
  report.failure = String(e?.stack ?? e).slice(0, 3000);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
