// Runs the editor's Play preview (web/motion_preview.js) under node (no browser), for
// tests/test_motion_preview_js.py to compare with Drags To Flow and Preview Motion in Python.
// stdin: {"cases": [{tracks, painted (flat 0/1 list or null), width, height, frames, flowUnit, reach, edgeRamp,
//                    image (flat RGBA list or null)}]}
// stdout: {"flows": [[[dx...], [dy...]] per frame], "warped": [[flat RGBA per frame] or null]}
import { readFileSync } from "node:fs";
import { dragsToFlow, warpImage } from "../../web/motion_preview.js";

const input = JSON.parse(readFileSync(0, "utf8"));
const flows = [];
const warped = [];
for (const c of input.cases) {
  const flow = dragsToFlow(c);
  flows.push(flow.map((f) => [Array.from(f.dx), Array.from(f.dy)]));
  warped.push(c.image ? flow.map((f) => Array.from(warpImage(Uint8ClampedArray.from(c.image), f, c.width, c.height))) : null);
}
console.log(JSON.stringify({ flows, warped }));
