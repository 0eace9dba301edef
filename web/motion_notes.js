// ComfyUI extension: shows the notes a Motion-I2V node returns in ui.mi2v_notes (every rescale and
// clamp of coord_str tracks, exports, ...) as lines of text on the node itself, after it runs.
// The lines live in a canvas-drawn widget that is not serialised, so workflows and the API prompt
// do not change.

import { app } from "../../scripts/app.js";

// Must match the nodes that return ui["mi2v_notes"] (nodes/notes.py).
const NOTE_NODES = new Set(["MotionI2VDrawMotionBrush", "MotionI2VExportTracks"]);
const WIDGET_NAME = "mi2v_notes";
const LINE_HEIGHT = 14;
const MAX_CHARS = 90;

function wrap(text, width) {
  const out = [];
  for (const line of String(text).split("\n")) {
    let rest = line;
    while (rest.length > width) {
      const cut = rest.lastIndexOf(" ", width) > 0 ? rest.lastIndexOf(" ", width) : width;
      out.push(rest.slice(0, cut));
      rest = rest.slice(cut).trimStart();
    }
    out.push(rest);
  }
  return out;
}

function notesWidget(node) {
  let widget = node.widgets?.find((w) => w.name === WIDGET_NAME);
  if (widget) return widget;
  widget = {
    name: WIDGET_NAME,
    type: "mi2v_notes",
    value: [],
    serialize: false,
    options: { serialize: false },
    lines() {
      const chars = Math.max(20, Math.min(MAX_CHARS, Math.floor(((node.size?.[0] ?? 300) - 20) / 6.5)));
      return this.value.flatMap((n) => wrap(n, chars));
    },
    computeSize(width) {
      return [width, this.value.length ? this.lines().length * LINE_HEIGHT + 8 : 0];
    },
    draw(ctx, _node, width, y) {
      if (!this.value.length) return;
      ctx.save();
      ctx.font = "11px sans-serif";
      ctx.fillStyle = "#e8c170";
      this.lines().forEach((line, i) => ctx.fillText(line, 10, y + 12 + i * LINE_HEIGHT, width - 20));
      ctx.restore();
    },
  };
  node.addCustomWidget ? node.addCustomWidget(widget) : (node.widgets ??= []).push(widget);
  return widget;
}

app.registerExtension({
  name: "motion_i2v.notes",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NOTE_NODES.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const notes = Array.isArray(message?.[WIDGET_NAME]) ? message[WIDGET_NAME].map(String) : [];
      const widget = notesWidget(this);
      widget.value = notes;
      const size = this.computeSize();
      this.setSize([Math.max(this.size[0], size[0]), Math.max(this.size[1], size[1])]);
      this.setDirtyCanvas?.(true, true);
    };
  },
});
