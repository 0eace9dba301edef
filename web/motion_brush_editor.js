// The Draw Motion Brush editor: a DOM element with a toolbar and a <canvas> where the artist paints
// the movable region and draws drag tracks over the reference image. It knows nothing about
// ComfyUI; draw_motion_brush.js mounts it as the node's widget.
//
// Coordinate spaces: all state is in image pixels (hints.width x hints.height). The display maps
// image -> canvas CSS pixels with one fit transform (_fit); mouse events go through _eventToImage,
// which divides by the on-screen size of the canvas, so the graph's zoom never leaks into the data.

import { emptyHints, isDefaultTiming, isEmptyHints, parseHints, rescaleHints, serializeHints } from "./motion_hints_format.js";
import { dragsToFlow, targetInImage, warpImage } from "./motion_preview.js";
import { sampleTrack } from "./track_sampling.js";

export const PREVIEW_FRAMES = 16; // model_length of Motion-I2V: frame 0 + 15 flow frames
// What the drawing feeds when nothing downstream says otherwise: the nodes' default size and length.
export const DEFAULT_TARGET = Object.freeze({ width: 512, height: 320, frames: PREVIEW_FRAMES, flowUnit: 0 });
const PLAY_FPS = 8;
const PLAY_MAX_SIDE = 256; // the Play preview warps a raster this big (long side), a few ms per frame
const MAX_HISTORY = 100;
const MASK_MAX_SIDE = 1024; // the overlay raster is capped; the data stays vector strokes
const POINT_HIT_PX = 9;
const MAX_ZOOM = 16;
const WHEEL_ZOOM_STEP = 1.0015; // per wheel delta unit (a notch of 100 is ~16%)
const SEGMENT_HIT_PX = 6;
const TRACK_COLORS = ["#ff5c5c", "#ffb84d", "#4dd2ff", "#b98cff", "#5cff8a", "#ff7ad9", "#ffe14d", "#7a9cff"];
const MOVABLE_TINT = "#22d3a5";

const STYLE_ID = "mi2v-motion-brush-style";
const STYLE = `
.mi2v-editor { display:flex; flex-direction:column; gap:4px; width:100%; height:100%; min-height:220px;
  min-width:0; max-width:100%; overflow:hidden; box-sizing:border-box; font:11px sans-serif; color:#ddd; outline:none; }
.mi2v-toolbar { display:flex; flex-wrap:wrap; gap:3px; align-items:center; }
.mi2v-toolbar button { font:11px sans-serif; padding:2px 6px; border:1px solid #555; border-radius:4px;
  background:#2b2b2b; color:#ddd; cursor:pointer; }
.mi2v-toolbar button[aria-pressed="true"] { background:#2f6f5e; border-color:#4fd1b0; color:#fff; }
.mi2v-toolbar button:disabled { opacity:0.4; cursor:default; }
.mi2v-toolbar label { display:flex; align-items:center; gap:3px; }
.mi2v-toolbar input[type=range] { width:70px; }
.mi2v-timing { display:flex; flex-wrap:nowrap; gap:6px; align-items:center; height:20px; overflow:hidden; }
.mi2v-timing label { display:flex; align-items:center; gap:3px; white-space:nowrap; }
.mi2v-timing input[type=number] { width:42px; font:11px sans-serif; background:#222; color:#ddd; border:1px solid #555;
  border-radius:3px; padding:0 2px; }
.mi2v-timing.mi2v-off { opacity:0.45; }
/* The pop-out: the same editor element, moved into a large overlay over the graph. */
.mi2v-popout { position:fixed; inset:0; z-index:10000; background:rgba(0,0,0,0.65); display:flex;
  padding:3vh 3vw; box-sizing:border-box; }
.mi2v-popout > .mi2v-editor { flex:1 1 auto; width:auto; height:auto; background:#1c1c1c; border:1px solid #555;
  border-radius:6px; padding:8px; }
.mi2v-sep { width:1px; height:16px; background:#555; margin:0 2px; }
.mi2v-stage { position:relative; flex:1 1 auto; min-height:120px; }
.mi2v-canvas { position:absolute; left:0; top:0; width:100%; height:100%; touch-action:none; }
.mi2v-notice { display:flex; flex-wrap:wrap; gap:4px; align-items:center; padding:3px 5px; border-radius:4px;
  background:#4a3b12; color:#ffe6a6; }
.mi2v-notice[hidden] { display:none; }
.mi2v-notice button { font:11px sans-serif; padding:1px 6px; border:1px solid #a08030; border-radius:4px;
  background:#2b2b2b; color:#ffe6a6; cursor:pointer; }
/* Two lines, always: a growing status must neither widen the node nor move the image under the mouse. */
.mi2v-status { flex:0 0 auto; height:26px; line-height:13px; overflow:hidden; white-space:normal;
  overflow-wrap:anywhere; color:#aaa; }
.mi2v-status.mi2v-error { color:#ff8080; }
`;

function ensureStylesheet() {
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = STYLE;
  document.head.appendChild(style);
}

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

function distToSegment(p, a, b) {
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  const len2 = dx * dx + dy * dy;
  const t = len2 ? clamp(((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2, 0, 1) : 0;
  return Math.hypot(p[0] - (a[0] + t * dx), p[1] - (a[1] + t * dy));
}

export class MotionBrushEditor {
  /**
   * @param {object} options
   * @param {string} [options.value] initial widget value (format v1 JSON)
   * @param {(value: string) => void} [options.onChange] called after every committed edit
   */
  constructor({ value = "", onChange = () => {} } = {}) {
    ensureStylesheet();
    this.onChange = onChange;
    this.onToolChange = () => {}; // ({tool, brushRadius}) after the user picks a tool or radius
    this.hints = emptyHints();
    this.tool = "paint";
    this.brushRadius = 24;
    this.activeTrack = -1;
    this.reference = null; // drawable image or null
    this._invalidValue = null; // unreadable value, kept verbatim until the user draws
    this._error = null;
    this._undo = [];
    this._redo = [];
    this._drag = null; // {kind: "stroke"|"point", ...} while a pointer is down
    this._hover = null; // last pointer position in image px, for the brush cursor
    this._hoverHit = null;
    this._playing = false;
    this._playFrame = 0;
    this._playFrames = null; // {key, frames: [canvas...]} the warped reference, cached per drawing
    this.target = { ...DEFAULT_TARGET };
    this.imageConnected = true;
    this._renderPending = false;
    this._destroyed = false;
    this._fit = { s: 1, ox: 0, oy: 0 };
    this._view = { zoom: 1, panX: 0, panY: 0 }; // on top of the fit: wheel zooms, middle/Space+drag pans
    this._spaceDown = false;
    this._cssSize = [1, 1];

    this._buildDom();
    this._maskCanvas = document.createElement("canvas");
    this.setValue(value);
    this._attachListeners();
  }

  // ─── Value (the widget's persisted state) ───

  getValue() {
    return this._invalidValue ?? serializeHints(this.hints);
  }

  /** Replace the state from outside (workflow load, graph undo, paste). Clears the editor's own undo. */
  setValue(value) {
    if (typeof value === "string" && value === this.getValue() && this._error === null) return;
    const { hints, error } = parseHints(value);
    if (error) {
      console.warn(`[Motion-I2V] Draw Motion Brush: could not read the saved hints (${error}); showing an empty editor`);
      this._invalidValue = typeof value === "string" ? value : JSON.stringify(value);
      this.hints = this.reference ? emptyHints(this.hints.width, this.hints.height) : emptyHints();
    } else {
      this._invalidValue = null;
      this.hints = hints;
    }
    this._error = error;
    this._undo = [];
    this._redo = [];
    this.activeTrack = -1;
    this._hideNotice();
    this._fitBrushRange();
    this._rebuildMask();
    this._updateToolbar();
    this.render();
  }

  /**
   * Show `image` (any drawable) as the reference, `width x height` being the true image size in
   * pixels (the drawable may be a downscaled preview). Existing hints are rescaled to that size.
   */
  setReference(image, width = image.naturalWidth || image.width, height = image.naturalHeight || image.height, { changed = false } = {}) {
    this.reference = image;
    this._referenceId = (this._referenceId ?? 0) + 1;
    const old = { width: this.hints.width, height: this.hints.height };
    const drawn = !isEmptyHints(this.hints) && this._invalidValue === null;
    if (width > 0 && height > 0 && (width !== this.hints.width || height !== this.hints.height) && this._invalidValue === null) {
      const before = this.getValue();
      this.hints = isEmptyHints(this.hints) ? emptyHints(width, height) : rescaleHints(this.hints, width, height);
      this._undo = this._undo.map((v) => serializeHints(rescaleHints(parseHints(v).hints, width, height)));
      this._redo = [];
      this._fitBrushRange(true);
      this._rebuildMask();
      if (this.getValue() !== before) this.onChange(this.getValue());
    }
    // Another picture, or one of another shape: the drawing was kept in relative positions
    // (stretched if the shape changed); say so and offer to start over instead.
    const reshaped = Math.abs(old.width / old.height - width / height) > 0.01 * (width / height);
    if (drawn && (changed || reshaped)) {
      const what = reshaped ? `The image changed shape (${old.width}×${old.height} → ${width}×${height})` : "The image changed";
      this._showNotice(`${what}: the drawing was kept at the same relative positions${reshaped ? ", stretched" : ""}.`);
    }
    this._updateToolbar();
    this.render();
  }

  /** Whether anything feeds the node's image input (only changes the placeholder's words). */
  setImageConnected(connected) {
    if (this.imageConnected === connected) return;
    this.imageConnected = connected;
    this.render();
  }

  /** No picture (the image input was unplugged): show the placeholder instead of a stale image. */
  clearReference() {
    this.reference = null;
    this._playFrames = null;
    this._hideNotice();
    this.render();
  }

  _showNotice(text) {
    this._noticeText.textContent = text;
    this._notice.hidden = false;
  }

  _hideNotice() {
    this._notice.hidden = true;
  }

  // ─── Editing primitives (each public edit is undoable) ───

  _edit(mutate) {
    const before = this.getValue();
    mutate();
    this._commit(before);
  }

  _commit(before) {
    const after = serializeHints(this.hints);
    if (this._invalidValue === null && after === before) return;
    this._invalidValue = null;
    this._error = null;
    this._undo.push(before);
    if (this._undo.length > MAX_HISTORY) this._undo.shift();
    this._redo = [];
    this._updateToolbar();
    this.render();
    this.onChange(this.getValue());
  }

  undo() {
    if (!this._undo.length) return;
    this._redo.push(serializeHints(this.hints));
    this._restore(this._undo.pop());
  }

  redo() {
    if (!this._redo.length) return;
    this._undo.push(serializeHints(this.hints));
    this._restore(this._redo.pop());
  }

  _restore(value) {
    this.hints = parseHints(value).hints;
    this._invalidValue = null;
    this._error = null;
    if (this.activeTrack >= this.hints.tracks.length) this.activeTrack = -1;
    this._rebuildMask();
    this._updateToolbar();
    this.render();
    this.onChange(this.getValue());
  }

  clearBrush() {
    this._edit(() => (this.hints.brush = []));
    this._rebuildMask();
    this.render();
  }

  /** Remove brush and tracks in one undoable step. */
  clearAll() {
    this._edit(() => {
      this.hints.brush = [];
      this.hints.tracks = [];
      this.hints.timing = [];
      this.activeTrack = -1;
    });
    this._rebuildMask();
    this.render();
  }

  clearTracks() {
    this._edit(() => {
      this.hints.tracks = [];
      this.hints.timing = [];
      this.activeTrack = -1;
    });
  }

  deleteTrack(index = this.activeTrack) {
    if (index < 0 || index >= this.hints.tracks.length) return;
    this._edit(() => {
      this.hints.tracks.splice(index, 1);
      this.hints.timing?.splice(index, 1);
      this.activeTrack = -1;
    });
  }

  deletePoint(trackIndex, pointIndex) {
    this._edit(() => {
      const track = this.hints.tracks[trackIndex];
      track.splice(pointIndex, 1);
      if (track.length === 0) {
        this.hints.tracks.splice(trackIndex, 1);
        this.hints.timing?.splice(trackIndex, 1);
        this.activeTrack = -1;
      } else {
        this.activeTrack = trackIndex;
      }
    });
  }

  /** Finish the active track: the next click starts a new one. */
  endTrack() {
    this.activeTrack = -1;
    this._updateToolbar();
    this.render();
  }

  setTool(tool) {
    this.tool = tool;
    if (tool !== "track") this.activeTrack = -1;
    this._updateToolbar();
    this.render();
    this.onToolChange({ tool: this.tool, brushRadius: this.brushRadius });
  }

  setBrushRadius(radius) {
    this.brushRadius = clamp(Math.round(radius), 1, Number(this._sizeInput.max));
    this._updateToolbar();
    this.render();
    this.onToolChange({ tool: this.tool, brushRadius: this.brushRadius });
  }

  /** Tool and radius saved with the workflow; unknown or missing values leave the defaults. */
  restoreTool({ tool, brushRadius } = {}) {
    if (["paint", "erase", "track"].includes(tool)) this.tool = tool;
    if (Number.isFinite(brushRadius) && brushRadius >= 1) this.brushRadius = clamp(Math.round(brushRadius), 1, Number(this._sizeInput.max));
    this._updateToolbar();
    this.render();
  }

  /** A copy of track `index` (the selected one by default), offset a little so both show. */
  duplicateTrack(index = this.activeTrack) {
    if (index < 0 || index >= this.hints.tracks.length) return;
    const d = Math.max(4, Math.round(Math.min(this.hints.width, this.hints.height) / 25));
    this._edit(() => {
      this.hints.tracks.push(this.hints.tracks[index].map(([x, y]) => this._clampToImage([x + d, y + d])));
      this.activeTrack = this.hints.tracks.length - 1;
      this.hints.timing = this.hints.tracks.map((_, i) => this.hints.timing?.[i] ?? null);
      const t = this.hints.timing[index];
      this.hints.timing[this.activeTrack] = t ? { ...t } : null;
    });
  }

  /** Set the timing of track `index` ({start, end (null = last frame), ease_in, ease_out}). */
  setTrackTiming(index, timing) {
    if (index < 0 || index >= this.hints.tracks.length) return;
    const start = Math.max(0, Math.round(Number(timing.start) || 0));
    let end = timing.end == null || timing.end === "" ? null : Math.round(Number(timing.end));
    if (end !== null && !(end > start)) end = start + 1;
    const t = { start, end, ease_in: !!timing.ease_in, ease_out: !!timing.ease_out };
    this._edit(() => {
      this.hints.timing = this.hints.tracks.map((_, i) => this.hints.timing?.[i] ?? null);
      this.hints.timing[index] = isDefaultTiming(t) ? null : t;
    });
  }

  _timingFromFields() {
    const f = this._timingFields;
    this.setTrackTiming(this.activeTrack, {
      start: f.start.value, end: f.end.value, ease_in: f.ease_in.checked, ease_out: f.ease_out.checked,
    });
    this._updateToolbar();
    this.render();
  }

  /** The same path run backwards (start and end swapped). */
  reverseTrack(index = this.activeTrack) {
    if (index < 0 || index >= this.hints.tracks.length) return;
    this._edit(() => this.hints.tracks[index].reverse());
  }

  /** The size, length and drag-square size of the video this drawing feeds (Play follows them). */
  setTarget({ width, height, frames, flowUnit = 0 }) {
    const next = { width, height, frames, flowUnit };
    if (!(width > 0 && height > 0 && frames >= 2)) return;
    if (Object.keys(next).every((k) => next[k] === this.target[k])) return;
    this.target = next;
    this._playFrame = Math.min(this._playFrame, frames - 1);
    this._updateToolbar();
    this.render();
  }

  // ─── Coordinates ───

  /** Image -> canvas transform: the image fitted into the canvas, then the view's zoom (about the
   * canvas centre) and pan. The only place the display transform is made. */
  _layoutFit() {
    const [cw, ch] = this._cssSize;
    const { width, height } = this.hints;
    const base = Math.max(1e-6, Math.min(cw / width, ch / height));
    const { zoom, panX, panY } = this._view;
    const s = base * zoom;
    this._fit = { s, ox: (cw - width * s) / 2 + panX, oy: (ch - height * s) / 2 + panY };
  }

  /** Zoom by `factor` keeping the image point under canvas position (cx, cy) in place. */
  zoomAt(factor, cx, cy) {
    this._layoutFit();
    const { s, ox, oy } = this._fit;
    const zoom = clamp(this._view.zoom * factor, 1, MAX_ZOOM);
    const k = zoom / this._view.zoom;
    // New offset: the point stays put; pan is what is left after the centred fit.
    const [cw, ch] = this._cssSize;
    const s2 = s * k;
    this._view = {
      zoom,
      panX: cx - (cx - ox) * k - (cw - this.hints.width * s2) / 2,
      panY: cy - (cy - oy) * k - (ch - this.hints.height * s2) / 2,
    };
    if (zoom === 1) this._view = { zoom: 1, panX: 0, panY: 0 };
    this.render();
  }

  resetView() {
    this._view = { zoom: 1, panX: 0, panY: 0 };
    this.render();
  }

  _canvasPoint(e) {
    const r = this.canvas.getBoundingClientRect();
    return [((e.clientX - r.left) / Math.max(r.width, 1e-6)) * this._cssSize[0], ((e.clientY - r.top) / Math.max(r.height, 1e-6)) * this._cssSize[1]];
  }

  /** Image px -> canvas CSS px. */
  _toCanvas([x, y]) {
    const { s, ox, oy } = this._fit;
    return [ox + x * s, oy + y * s];
  }

  /** Pointer event -> image px, using the canvas's on-screen rect (includes the graph zoom). */
  _eventToImage(e) {
    this._layoutFit(); // the view may have changed since the last frame was drawn
    const r = this.canvas.getBoundingClientRect();
    const cx = ((e.clientX - r.left) / Math.max(r.width, 1e-6)) * this._cssSize[0];
    const cy = ((e.clientY - r.top) / Math.max(r.height, 1e-6)) * this._cssSize[1];
    const { s, ox, oy } = this._fit;
    return [(cx - ox) / s, (cy - oy) / s];
  }

  _clampToImage([x, y]) {
    return [clamp(x, 0, this.hints.width), clamp(y, 0, this.hints.height)];
  }

  /** Client (viewport) position of an image point: lets tests and tools aim at image pixels. */
  imageToClient(point) {
    this._layoutFit();
    const r = this.canvas.getBoundingClientRect();
    const [cx, cy] = this._toCanvas(point);
    return [r.left + (cx / this._cssSize[0]) * r.width, r.top + (cy / this._cssSize[1]) * r.height];
  }

  _hitPoint(p) {
    const tol = POINT_HIT_PX / this._fit.s;
    let best = null;
    this.hints.tracks.forEach((track, ti) =>
      track.forEach((q, pi) => {
        const d = Math.hypot(q[0] - p[0], q[1] - p[1]);
        if (d <= tol && (!best || d < best.d)) best = { track: ti, point: pi, d };
      }),
    );
    return best;
  }

  _hitSegment(p) {
    const tol = SEGMENT_HIT_PX / this._fit.s;
    for (let ti = this.hints.tracks.length - 1; ti >= 0; ti--) {
      const t = this.hints.tracks[ti];
      for (let k = 0; k + 1 < t.length; k++) if (distToSegment(p, t[k], t[k + 1]) <= tol) return { track: ti };
    }
    return null;
  }

  // ─── DOM ───

  _buildDom() {
    const el = (tag, props = {}, parent = null) => {
      const node = Object.assign(document.createElement(tag), props);
      if (parent) parent.appendChild(node);
      return node;
    };
    // "widget-expands" asks the Nodes 2.0 layout to give this widget the node's spare height.
    this.element = el("div", { className: "mi2v-editor widget-expands", tabIndex: 0 });
    // The frontend forwards wheel and middle-button events over widgets to the graph unless the
    // element opts out: the wheel zooms and the middle button pans the image here instead.
    this.element.dataset.captureWheel = "true";
    const bar = el("div", { className: "mi2v-toolbar" }, this.element);
    this._buttons = {};
    const button = (action, label, title, onClick) => {
      const b = el("button", { type: "button", textContent: label, title }, bar);
      b.dataset.mi2vAction = action;
      b.addEventListener("click", (e) => {
        e.stopPropagation();
        onClick();
        this.element.focus({ preventScroll: true });
      });
      this._buttons[action] = b;
      return b;
    };
    button("paint", "Paint", "Paint the region that may move (nothing painted = everything may move)", () => this.setTool("paint"));
    button("erase", "Erase", "Erase painted region", () => this.setTool("erase"));
    const sizeLabel = el("label", { title: "Brush radius in image pixels" }, bar);
    this._sizeInput = el("input", { type: "range", min: 1, max: 128, step: 1, value: this.brushRadius }, sizeLabel);
    this._sizeInput.dataset.mi2vAction = "size";
    this._sizeText = el("span", { textContent: "" }, sizeLabel);
    this._sizeInput.addEventListener("input", () => this.setBrushRadius(Number(this._sizeInput.value)));
    el("span", { className: "mi2v-sep" }, bar);
    button("track", "Track", "Click to add track points, drag points to move them, right-click a point to delete it", () =>
      this.setTool("track"),
    );
    button("new-track", "New track", "Finish the current track; the next click starts a new one (Esc)", () => this.endTrack());
    button("delete-track", "Delete track", "Delete the selected track (or right-click a track's line)", () => this.deleteTrack());
    button("duplicate-track", "Duplicate", "Copy the selected track (D); Alt+drag a track's line to move a whole track", () =>
      this.duplicateTrack(),
    );
    button("reverse-track", "Reverse", "Run the selected track backwards (R)", () => this.reverseTrack());
    el("span", { className: "mi2v-sep" }, bar);
    button("undo", "Undo", "Undo the last edit in this editor", () => this.undo());
    button("redo", "Redo", "Redo", () => this.redo());
    button("clear-brush", "Clear brush", "Remove all brush strokes", () => this.clearBrush());
    button("clear-tracks", "Clear tracks", "Remove all tracks", () => this.clearTracks());
    button("play", "Play", "", () => this.togglePlay());
    button("fit", "Fit", "Show the whole image (the wheel zooms at the mouse; middle-drag or Space+drag pans)", () =>
      this.resetView(),
    );
    button("popout", "Pop out", "Edit in a large view over the graph (Esc or Close returns)", () => this.togglePopout());
    // Always shown (disabled with no track selected), so the image never moves under the mouse.
    this._timingRow = el("div", { className: "mi2v-timing", title: "When the selected track moves, in video frames (0 = the input image)" }, this.element);
    el("span", { textContent: "Timing" }, this._timingRow);
    const field = (key, label, attrs) => {
      const l = el("label", { textContent: label }, this._timingRow);
      const input = el("input", attrs, l);
      input.dataset.mi2vAction = `timing-${key.replace("_", "-")}`;
      input.addEventListener("change", () => this._timingFromFields());
      return input;
    };
    this._timingFields = {
      start: field("start", "start", { type: "number", min: 0, step: 1, title: "Frame the track starts moving (still before)" }),
      end: field("end", "end", { type: "number", min: 1, step: 1, placeholder: "last", title: "Frame it arrives and holds (empty = the last frame)" }),
      ease_in: field("ease_in", "ease in", { type: "checkbox", title: "Start slowly" }),
      ease_out: field("ease_out", "ease out", { type: "checkbox", title: "Arrive slowly" }),
    };
    // Typing a frame number must not trigger the editor's shortcuts (Backspace deletes a track).
    this._timingRow.addEventListener("keydown", (e) => e.stopPropagation());
    this._notice = el("div", { className: "mi2v-notice", hidden: true }, this.element);
    this._noticeText = el("span", {}, this._notice);
    const noticeButton = (action, label, onClick) => {
      const b = el("button", { type: "button", textContent: label }, this._notice);
      b.dataset.mi2vAction = action;
      b.addEventListener("click", (e) => {
        e.stopPropagation();
        onClick();
        this._hideNotice();
      });
    };
    noticeButton("keep-drawing", "Keep drawing", () => {});
    noticeButton("clear-drawing", "Clear drawing", () => this.clearAll());
    this._stage = el("div", { className: "mi2v-stage" }, this.element);
    this.canvas = el("canvas", { className: "mi2v-canvas" }, this._stage);
    this._status = el("div", { className: "mi2v-status" }, this.element);
  }

  _updateToolbar() {
    const b = this._buttons;
    for (const tool of ["paint", "erase", "track"]) b[tool].setAttribute("aria-pressed", String(this.tool === tool));
    b.undo.disabled = this._undo.length === 0;
    b.redo.disabled = this._redo.length === 0;
    b["new-track"].disabled = this.activeTrack < 0;
    b["delete-track"].disabled = this.activeTrack < 0;
    b["duplicate-track"].disabled = this.activeTrack < 0;
    b["reverse-track"].disabled = this.activeTrack < 0 || this.hints.tracks[this.activeTrack]?.length < 2;
    b["clear-brush"].disabled = this.hints.brush.length === 0;
    b["clear-tracks"].disabled = this.hints.tracks.length === 0;
    b.popout.hidden = !this._popout && this._inVueNode();
    b.play.textContent = this._playing ? "Stop" : "Play";
    b.play.title =
      `Play the image moved along the drawing over ${this.target.frames} frames: the rough motion Drags To Flow ` +
      "makes, with the tracks sampled as the model samples them";
    b.play.setAttribute("aria-pressed", String(this._playing));
    const timing = this.hints.timing?.[this.activeTrack] ?? null;
    const f = this._timingFields;
    const off = this.activeTrack < 0;
    for (const input of Object.values(f)) input.disabled = off;
    this._timingRow.classList.toggle("mi2v-off", off);
    f.start.max = String(Math.max(0, this.target.frames - 2));
    f.end.max = String(Math.max(1, this.target.frames - 1));
    f.start.value = off ? "" : String(timing?.start ?? 0);
    f.end.value = off || timing?.end == null ? "" : String(timing.end);
    f.ease_in.checked = !!timing?.ease_in;
    f.ease_out.checked = !!timing?.ease_out;
    this._sizeInput.value = String(this.brushRadius);
    this._sizeText.textContent = `${this.brushRadius}px`;
  }

  /** Brush slider range follows the image size; `reset` also picks a default radius for it. */
  _fitBrushRange(reset = false) {
    const longSide = Math.max(this.hints.width, this.hints.height);
    this._sizeInput.max = String(Math.max(32, Math.round(longSide / 4)));
    if (reset) this.brushRadius = Math.max(2, Math.round(longSide / 20));
    this.brushRadius = clamp(this.brushRadius, 1, Number(this._sizeInput.max));
  }

  // ─── Pointer and keyboard ───

  _attachListeners() {
    this._onPointerDown = (e) => this._pointerDown(e);
    this._onPointerMove = (e) => this._pointerMove(e);
    this._onPointerUp = (e) => this._pointerUp(e);
    this._onPointerLeave = () => {
      this._hover = null;
      this.render();
    };
    // The graph must not see clicks meant for the editor (it would start a node drag or a menu).
    this._onContextMenu = (e) => {
      e.preventDefault();
      e.stopPropagation();
    };
    this._onKeyDown = (e) => this._keyDown(e);
    this._onKeyUp = (e) => {
      if (e.key === " ") this._spaceDown = false;
    };
    this._onBlur = () => (this._spaceDown = false);
    // The wheel zooms the image here, not the graph (non-passive, to keep the page still).
    this._onWheel = (e) => {
      e.preventDefault();
      e.stopPropagation();
      const [cx, cy] = this._canvasPoint(e);
      this.zoomAt(WHEEL_ZOOM_STEP ** -e.deltaY, cx, cy);
    };
    this._onStopEvent = (e) => e.stopPropagation();
    this.canvas.addEventListener("pointerdown", this._onPointerDown);
    this.canvas.addEventListener("pointermove", this._onPointerMove);
    this.canvas.addEventListener("pointerup", this._onPointerUp);
    this.canvas.addEventListener("pointercancel", this._onPointerUp);
    this.canvas.addEventListener("pointerleave", this._onPointerLeave);
    this.canvas.addEventListener("contextmenu", this._onContextMenu);
    this.canvas.addEventListener("dblclick", this._onStopEvent);
    this.element.addEventListener("keydown", this._onKeyDown);
    this.element.addEventListener("keyup", this._onKeyUp);
    this.element.addEventListener("blur", this._onBlur);
    this.canvas.addEventListener("wheel", this._onWheel, { passive: false });
    // Toolbar presses must not start a node drag in Nodes 2.0 mode.
    this.element.addEventListener("pointerdown", this._onStopEvent);
    this._resizeObserver = new ResizeObserver(() => this._resizeCanvas());
    this._resizeObserver.observe(this._stage);
  }

  _pointerDown(e) {
    e.stopPropagation();
    e.preventDefault();
    this.element.focus({ preventScroll: true });
    if (this._playing) this.togglePlay();
    if (e.button === 1 || (e.button === 0 && this._spaceDown)) {
      this.canvas.setPointerCapture?.(e.pointerId);
      const [cx, cy] = this._canvasPoint(e);
      this._drag = { kind: "pan", from: [cx, cy], view: { ...this._view } };
      return;
    }
    const p = this._eventToImage(e);
    if (e.button === 2) {
      this._secondaryClick(p);
      return;
    }
    if (e.button !== 0) return;
    this.canvas.setPointerCapture?.(e.pointerId);
    const before = serializeHints(this.hints);
    if (this.tool === "track") {
      const hit = this._hitPoint(p);
      const line = e.altKey ? (hit ? { track: hit.track } : this._hitSegment(p)) : null;
      if (line) {
        this.activeTrack = line.track;
        this._drag = { kind: "track", before, track: line.track, from: p, points: this.hints.tracks[line.track].map((q) => [...q]) };
      } else if (hit) {
        this.activeTrack = hit.track;
        this._drag = { kind: "point", before, track: hit.track, point: hit.point };
      } else {
        const q = this._clampToImage(p);
        if (this.activeTrack < 0 || e.shiftKey) {
          this.hints.tracks.push([q]);
          this.activeTrack = this.hints.tracks.length - 1;
        } else {
          this.hints.tracks[this.activeTrack].push(q);
        }
        const track = this.hints.tracks[this.activeTrack];
        this._drag = { kind: "point", before, track: this.activeTrack, point: track.length - 1 };
      }
    } else {
      const stroke = { mode: this.tool === "erase" ? "erase" : "paint", radius: this.brushRadius, points: [this._clampToImage(p)] };
      this.hints.brush.push(stroke);
      this._drawStrokeOnMask(stroke, 0);
      this._drag = { kind: "stroke", before, stroke };
    }
    this._updateToolbar();
    this.render();
  }

  _pointerMove(e) {
    const p = this._eventToImage(e);
    this._hover = p;
    const drag = this._drag;
    if (drag?.kind === "pan") {
      const [cx, cy] = this._canvasPoint(e);
      this._view = { ...drag.view, panX: drag.view.panX + cx - drag.from[0], panY: drag.view.panY + cy - drag.from[1] };
      this.render();
      return;
    }
    if (drag?.kind === "stroke") {
      const pts = drag.stroke.points;
      const last = pts[pts.length - 1];
      const q = this._clampToImage(p);
      // Keep the JSON small: a new vertex only after moving a fraction of the radius.
      if (Math.hypot(q[0] - last[0], q[1] - last[1]) >= Math.max(1, drag.stroke.radius * 0.2)) {
        pts.push(q);
        this._drawStrokeOnMask(drag.stroke, pts.length - 2);
      }
    } else if (drag?.kind === "track") {
      const track = this.hints.tracks[drag.track];
      if (!track || track.length !== drag.points.length) this._drag = null;
      else drag.points.forEach(([x, y], k) => (track[k] = this._clampToImage([x + p[0] - drag.from[0], y + p[1] - drag.from[1]])));
    } else if (drag?.kind === "point") {
      const track = this.hints.tracks[drag.track];
      // The point can vanish mid-drag (Delete key, or the graph's undo replacing the value): stop dragging.
      if (track && drag.point < track.length) track[drag.point] = this._clampToImage(p);
      else this._drag = null;
    } else if (this.tool === "track") {
      this._hoverHit = this._hitPoint(p);
    }
    this.render();
  }

  _pointerUp(e) {
    const drag = this._drag;
    if (!drag) return;
    this._drag = null;
    this.canvas.releasePointerCapture?.(e.pointerId);
    if (drag.kind === "pan") return;
    // Let the event bubble: ComfyUI's change tracker records the new widget value on mouseup.
    this._commit(drag.before);
    if (drag.kind === "stroke") this._rebuildMask();
    this._updateToolbar();
    this.render();
  }

  _secondaryClick(p) {
    if (this.tool !== "track") return;
    const hit = this._hitPoint(p);
    if (hit) return this.deletePoint(hit.track, hit.point);
    const seg = this._hitSegment(p);
    if (seg) return this.deleteTrack(seg.track);
    this.endTrack();
  }

  _keyDown(e) {
    let handled = true;
    if (e.key === " ") this._spaceDown = true; // held: the left button pans
    else if (e.key === "Escape" && this._popout) this.closePopout();
    else if (e.key === "Escape" || e.key === "Enter") this.endTrack();
    else if ((e.key === "Delete" || e.key === "Backspace") && this._hoverHit) {
      this.deletePoint(this._hoverHit.track, this._hoverHit.point);
      this._hoverHit = null;
    } else if (e.key === "Delete" || e.key === "Backspace") this.deleteTrack();
    else if (e.ctrlKey || e.metaKey || e.altKey) handled = false;
    else if (e.key === "p" || e.key === "b") this.setTool("paint");
    else if (e.key === "e") this.setTool("erase");
    else if (e.key === "t") this.setTool("track");
    else if (e.key === "[") this.setBrushRadius(this.brushRadius / 1.25);
    else if (e.key === "]") this.setBrushRadius(this.brushRadius * 1.25 + 1);
    else if (e.key === "d") this.duplicateTrack();
    else if (e.key === "r") this.reverseTrack();
    else if (e.key === "f" || e.key === "0") this.resetView();
    else handled = false;
    // Keys the editor used must not reach the graph (Delete would remove the node).
    if (handled) {
      e.preventDefault();
      e.stopPropagation();
    }
  }

  // ─── Play preview ───

  togglePlay() {
    this._playing = !this._playing;
    if (this._playing) {
      this._playStart = null;
      const tick = (now) => {
        if (!this._playing || this._destroyed) return;
        // A frame's timestamp can precede the click's performance.now(), which made the frame index
        // negative and stopped the animation: count from the first frame's own timestamp instead.
        if (this._playStart === null) this._playStart = now;
        this._playFrame = Math.floor(((now - this._playStart) * PLAY_FPS) / 1000) % this.target.frames;
        this._render();
        this._playRaf = requestAnimationFrame(tick);
      };
      this._playRaf = requestAnimationFrame(tick);
    } else {
      cancelAnimationFrame(this._playRaf);
    }
    this._updateToolbar();
    this.render();
  }

  // ─── Brush overlay raster ───

  _maskScale() {
    return Math.min(1, MASK_MAX_SIDE / Math.max(this.hints.width, this.hints.height));
  }

  _rebuildMask() {
    const k = this._maskScale();
    const mc = this._maskCanvas;
    mc.width = Math.max(1, Math.round(this.hints.width * k));
    mc.height = Math.max(1, Math.round(this.hints.height * k));
    mc.getContext("2d").clearRect(0, 0, mc.width, mc.height);
    for (const stroke of this.hints.brush) this._drawStrokeOnMask(stroke, 0);
  }

  /** Draw `stroke` from vertex `from` on: paint adds opaque tint, erase cuts it out (in order). */
  _drawStrokeOnMask(stroke, from) {
    const k = this._maskScale();
    const ctx = this._maskCanvas.getContext("2d");
    ctx.save();
    ctx.globalCompositeOperation = stroke.mode === "erase" ? "destination-out" : "source-over";
    ctx.fillStyle = ctx.strokeStyle = MOVABLE_TINT;
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.lineWidth = 2 * stroke.radius * k;
    const pts = stroke.points;
    if (pts.length - from === 1) {
      ctx.beginPath();
      ctx.arc(pts[from][0] * k, pts[from][1] * k, stroke.radius * k, 0, 2 * Math.PI);
      ctx.fill();
    } else {
      ctx.beginPath();
      ctx.moveTo(pts[from][0] * k, pts[from][1] * k);
      for (let i = from + 1; i < pts.length; i++) ctx.lineTo(pts[i][0] * k, pts[i][1] * k);
      ctx.stroke();
    }
    ctx.restore();
  }

  // ─── Rendering ───

  _resizeCanvas() {
    const w = Math.max(1, this._stage.clientWidth);
    const h = Math.max(1, this._stage.clientHeight);
    const dpr = window.devicePixelRatio || 1;
    this._cssSize = [w, h];
    this.canvas.width = Math.round(w * dpr);
    this.canvas.height = Math.round(h * dpr);
    this._render();
  }

  /** Schedule a redraw (batched into one animation frame). */
  render() {
    if (this._renderPending || this._destroyed) return;
    this._renderPending = true;
    requestAnimationFrame(() => {
      this._renderPending = false;
      if (!this._destroyed) this._render();
    });
  }

  _render() {
    const ctx = this.canvas.getContext("2d");
    const dpr = this.canvas.width / this._cssSize[0];
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const [cw, ch] = this._cssSize;
    ctx.clearRect(0, 0, cw, ch);
    ctx.fillStyle = "#151515";
    ctx.fillRect(0, 0, cw, ch);
    this._layoutFit();
    const { s, ox, oy } = this._fit;
    const iw = this.hints.width * s;
    const ih = this.hints.height * s;

    if (this.reference) {
      ctx.drawImage(this.reference, ox, oy, iw, ih);
    } else {
      ctx.fillStyle = "#2a2a2a";
      ctx.fillRect(ox, oy, iw, ih);
      ctx.fillStyle = "#888";
      ctx.textAlign = "center";
      ctx.font = "12px sans-serif";
      const lines = this.imageConnected
        ? ["The image appears here when it comes from a Load Image node,", "otherwise after the first run."]
        : ["No image connected: connect one to the image input", "(Load Image shows it at once) to draw on it."];
      ctx.fillText(lines[0], ox + iw / 2, oy + ih / 2 - 8);
      ctx.fillText(lines[1], ox + iw / 2, oy + ih / 2 + 8);
    }
    if (this.hints.brush.length) {
      ctx.globalAlpha = 0.45;
      ctx.drawImage(this._maskCanvas, ox, oy, iw, ih);
      ctx.globalAlpha = 1;
    }
    ctx.strokeStyle = "#666";
    ctx.lineWidth = 1;
    ctx.strokeRect(ox - 0.5, oy - 0.5, iw + 1, ih + 1);

    if (this._playing) this._drawPlayFrame(ctx);
    else this.hints.tracks.forEach((track, i) => this._drawTrack(ctx, track, i));
    this._drawBrushCursor(ctx);
    this._updateStatus();
  }

  _drawTrack(ctx, track, index) {
    const color = TRACK_COLORS[index % TRACK_COLORS.length];
    const active = index === this.activeTrack;
    const pts = track.map((p) => this._toCanvas(p));
    ctx.save();
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = active ? 3 : 2;
    ctx.lineJoin = ctx.lineCap = "round";
    if (pts.length > 1) {
      ctx.beginPath();
      pts.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.stroke();
      const [x0, y0] = pts[pts.length - 2];
      const [x1, y1] = pts[pts.length - 1];
      const a = Math.atan2(y1 - y0, x1 - x0);
      const head = 12;
      ctx.beginPath();
      ctx.moveTo(x1 + Math.cos(a) * 4, y1 + Math.sin(a) * 4);
      ctx.lineTo(x1 - Math.cos(a - 0.45) * head, y1 - Math.sin(a - 0.45) * head);
      ctx.lineTo(x1 - Math.cos(a + 0.45) * head, y1 - Math.sin(a + 0.45) * head);
      ctx.closePath();
      ctx.fill();
    } else {
      // A one-point track is a static anchor: drawn as a ring with a cross.
      const [x, y] = pts[0];
      ctx.beginPath();
      ctx.arc(x, y, 11, 0, 2 * Math.PI);
      ctx.moveTo(x - 15, y);
      ctx.lineTo(x + 15, y);
      ctx.moveTo(x, y - 15);
      ctx.lineTo(x, y + 15);
      ctx.stroke();
    }
    ctx.font = "bold 9px sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    pts.forEach(([x, y], k) => {
      const hovered = this._hoverHit && this._hoverHit.track === index && this._hoverHit.point === k;
      ctx.beginPath();
      ctx.arc(x, y, hovered ? 8 : 6.5, 0, 2 * Math.PI);
      ctx.fillStyle = color;
      ctx.fill();
      ctx.strokeStyle = active ? "#fff" : "#111";
      ctx.lineWidth = 1.5;
      ctx.stroke();
      ctx.fillStyle = "#111";
      ctx.fillText(String(k + 1), x, y + 0.5);
    });
    // Track number behind its start point (away from where the track goes, so it covers no point),
    // outlined so it reads on any image.
    const [lx, ly] = this._labelPosition(pts);
    ctx.font = "bold 11px sans-serif";
    ctx.textAlign = "center";
    ctx.lineWidth = 3;
    ctx.strokeStyle = "#111";
    ctx.strokeText(`T${index + 1}`, lx, ly);
    ctx.fillStyle = color;
    ctx.fillText(`T${index + 1}`, lx, ly);
    ctx.restore();
  }

  /** The reference pushed along the drawing's rough flow, one canvas per frame (null without an image). */
  _warpedFrames() {
    if (!this.reference) return null;
    const { width, height } = this.hints;
    const key = `${this.getValue()}|${JSON.stringify(this.target)}|${this._referenceId}`;
    if (this._playFrames?.key === key) return this._playFrames.frames;
    const k = Math.min(1, PLAY_MAX_SIDE / Math.max(width, height));
    const rw = Math.max(8, Math.round(width * k));
    const rh = Math.max(8, Math.round(height * k));
    const raster = Object.assign(document.createElement("canvas"), { width: rw, height: rh });
    const rctx = raster.getContext("2d", { willReadFrequently: true });
    let pixels;
    let painted = null;
    try {
      rctx.drawImage(this.reference, 0, 0, rw, rh);
      pixels = rctx.getImageData(0, 0, rw, rh).data;
      if (this.hints.brush.length) {
        rctx.clearRect(0, 0, rw, rh);
        rctx.drawImage(this._maskCanvas, 0, 0, rw, rh);
        const alpha = rctx.getImageData(0, 0, rw, rh).data;
        painted = new Uint8Array(rw * rh).map((_, i) => (alpha[i * 4 + 3] > 127 ? 1 : 0));
        if (!painted.some((v) => v)) painted = null; // all erased: nothing painted, everything may move
      }
    } catch (e) {
      console.warn(`[Motion-I2V] Draw Motion Brush: cannot read the image for Play (${e.message}); showing the tracks only`);
      return null;
    }
    // Lengths Drags To Flow uses at the node's size, in image pixels, then on the raster.
    const fit = targetInImage(width, height, this.target);
    const sx = rw / width;
    const sy = rh / height;
    const flows = dragsToFlow({
      tracks: this.hints.tracks.map((t) => t.map(([x, y]) => [x * sx, y * sy])),
      timing: this.hints.timing,
      painted,
      width: rw,
      height: rh,
      frames: this.target.frames,
      flowUnit: Math.max(1, fit.flowUnit * sx),
      reach: fit.reach * sx,
      edgeRamp: fit.edgeRamp * sx,
    });
    const frames = flows.map((flow, f) => {
      const c = Object.assign(document.createElement("canvas"), { width: rw, height: rh });
      const data = f === 0 ? pixels : warpImage(pixels, flow, rw, rh);
      c.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(data), rw, rh), 0, 0);
      return c;
    });
    this._playFrames = { key, frames };
    return frames;
  }

  /** Canvas position for a track's label: 18 px before its start, against the first move. */
  _labelPosition(pts) {
    const [x0, y0] = pts[0];
    const next = pts.find(([x, y]) => Math.hypot(x - x0, y - y0) > 1);
    const [dx, dy] = next ? [next[0] - x0, next[1] - y0] : [1, 1];
    const len = Math.hypot(dx, dy);
    return [x0 - (dx / len) * 18, y0 - (dy / len) * 18];
  }

  _drawPlayFrame(ctx) {
    ctx.save();
    const frames = this._warpedFrames();
    if (frames) {
      const { s, ox, oy } = this._fit;
      ctx.drawImage(frames[this._playFrame], ox, oy, this.hints.width * s, this.hints.height * s);
      // The part of the image the video keeps (resized to cover the node's size, centre-cropped).
      const { crop } = targetInImage(this.hints.width, this.hints.height, this.target);
      const [x0, y0] = this._toCanvas([crop.x, crop.y]);
      ctx.strokeStyle = "rgba(255,255,255,0.7)";
      ctx.setLineDash([5, 4]);
      ctx.lineWidth = 1;
      ctx.strokeRect(x0, y0, crop.width * s, crop.height * s);
      ctx.setLineDash([]);
    }
    ctx.globalAlpha = 0.4;
    this.hints.tracks.forEach((track, i) => this._drawTrack(ctx, track, i));
    ctx.globalAlpha = 1;
    this.hints.tracks.forEach((track, i) => {
      const [x, y] = this._toCanvas(sampleTrack(track, this.target.frames, this.hints.timing?.[i])[this._playFrame]);
      ctx.beginPath();
      ctx.arc(x, y, 7, 0, 2 * Math.PI);
      ctx.fillStyle = "#fff";
      ctx.fill();
      ctx.lineWidth = 3;
      ctx.strokeStyle = TRACK_COLORS[i % TRACK_COLORS.length];
      ctx.stroke();
    });
    ctx.fillStyle = "rgba(0,0,0,0.6)";
    ctx.fillRect(4, 4, 92, 18);
    ctx.fillStyle = "#fff";
    ctx.font = "11px sans-serif";
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    ctx.fillText(`frame ${this._playFrame + 1} / ${this.target.frames}`, 9, 13);
    ctx.restore();
  }

  _drawBrushCursor(ctx) {
    if (!this._hover || this.tool === "track" || this._playing) return;
    const [x, y] = this._toCanvas(this._hover);
    ctx.save();
    ctx.beginPath();
    ctx.arc(x, y, this.brushRadius * this._fit.s, 0, 2 * Math.PI);
    ctx.strokeStyle = this.tool === "erase" ? "#ff8080" : "#fff";
    ctx.setLineDash([4, 3]);
    ctx.lineWidth = 1.5;
    ctx.stroke();
    ctx.restore();
  }

  _updateStatus() {
    const { width, height, brush, tracks } = this.hints;
    let text;
    if (this._error) {
      text = `Saved value could not be read (${this._error}); drawing replaces it.`;
    } else {
      const region = brush.length ? `${brush.length} brush stroke${brush.length === 1 ? "" : "s"}` : "no brush: everything may move";
      const hint =
        this.tool === "track"
          ? this.activeTrack >= 0
            ? `T${this.activeTrack + 1}: click adds a point, Esc/right-click ends the track`
            : "click to start a track; drag points (Alt+drag: whole track); right-click deletes a point or a track"
          : `${this.tool} radius ${this.brushRadius}px ([ ])`;
      text = `${width}×${height} · ${region} · ${tracks.length} track${tracks.length === 1 ? "" : "s"} · ${hint}`;
    }
    if (this._status.textContent !== text) this._status.textContent = text;
    this._status.classList.toggle("mi2v-error", Boolean(this._error));
  }

  // ─── Lifecycle ───

  // ─── Pop-out view ───

  get isPoppedOut() {
    return !!this._popout;
  }

  togglePopout() {
    if (this._popout) this.closePopout();
    else this.openPopout();
  }

  // Nodes 2.0 (Vue) nodes do not let the element leave them (it stopped rendering in the overlay), so
  // the pop-out is offered in the classic canvas only.
  _inVueNode() {
    return !!this.element.closest?.("[data-node-id]");
  }

  /** Move this editor (same element, same state) into a large overlay; a placeholder keeps its place. */
  openPopout() {
    if (this._popout || !this.element.parentNode || this._inVueNode()) return;
    const overlay = document.createElement("div");
    overlay.className = "mi2v-popout";
    overlay.tabIndex = -1;
    const placeholder = document.createComment("mi2v-editor popped out");
    this.element.replaceWith(placeholder);
    overlay.appendChild(this.element);
    document.body.appendChild(overlay);
    overlay.addEventListener("pointerdown", (e) => {
      if (e.target === overlay) this.closePopout(); // a click beside the editor closes it
    });
    overlay.addEventListener("keydown", (e) => {
      if (e.key === "Escape") this.closePopout();
      e.stopPropagation(); // keys in the overlay are not the graph's
    });
    this._popout = { overlay, placeholder };
    this._buttons.popout.textContent = "Close";
    this._buttons.popout.setAttribute("aria-pressed", "true");
    this.element.focus({ preventScroll: true });
  }

  closePopout() {
    if (!this._popout) return;
    const { overlay, placeholder } = this._popout;
    this._popout = null;
    if (placeholder.parentNode) placeholder.replaceWith(this.element);
    overlay.remove();
    this._buttons.popout.textContent = "Pop out";
    this._buttons.popout.setAttribute("aria-pressed", "false");
    this.resetView();
  }

  destroy() {
    this.closePopout();
    this._destroyed = true;
    this._playing = false;
    cancelAnimationFrame(this._playRaf);
    this._resizeObserver?.disconnect();
    this.canvas.removeEventListener("pointerdown", this._onPointerDown);
    this.canvas.removeEventListener("pointermove", this._onPointerMove);
    this.canvas.removeEventListener("pointerup", this._onPointerUp);
    this.canvas.removeEventListener("pointercancel", this._onPointerUp);
    this.canvas.removeEventListener("pointerleave", this._onPointerLeave);
    this.canvas.removeEventListener("contextmenu", this._onContextMenu);
    this.canvas.removeEventListener("dblclick", this._onStopEvent);
    this.element.removeEventListener("keydown", this._onKeyDown);
    this.element.removeEventListener("keyup", this._onKeyUp);
    this.element.removeEventListener("blur", this._onBlur);
    this.canvas.removeEventListener("wheel", this._onWheel);
    this.element.removeEventListener("pointerdown", this._onStopEvent);
  }
}
