// The Draw Motion Brush widget value, format v1 (see motion_i2v_core/motion_hints.py, the Python
// reader, which must accept everything written here):
//   {"version":1,"width":W,"height":H,
//    "brush":[{"mode":"paint"|"erase","radius":r,"points":[[x,y],...]},...],
//    "tracks":[[[x,y],...],...]}
// Coordinates are image pixels (x right, y down), rounded to 0.1. "" and "{}" mean "no hints".
// The value is written by serializeHints() and read by parseHints(); nothing else touches JSON.

export const HINTS_FORMAT_VERSION = 1;
export const DEFAULT_WIDTH = 512;
export const DEFAULT_HEIGHT = 320;
const MAX_SIZE = 16384;
const BRUSH_MODES = ["paint", "erase"];

/** Editor state with nothing drawn, in a `width x height` image space. */
export function emptyHints(width = DEFAULT_WIDTH, height = DEFAULT_HEIGHT) {
  return { width, height, brush: [], tracks: [] };
}

export function isEmptyHints(hints) {
  return hints.brush.length === 0 && hints.tracks.length === 0;
}

const round1 = (v) => Math.round(v * 10) / 10 || 0; // `|| 0` turns -0 into 0

/** The only writer of the widget value: compact JSON, fixed key order, numbers rounded to 0.1. */
export function serializeHints(hints) {
  const pt = ([x, y]) => [round1(x), round1(y)];
  return JSON.stringify({
    version: HINTS_FORMAT_VERSION,
    width: hints.width,
    height: hints.height,
    brush: hints.brush.map((s) => ({ mode: s.mode, radius: round1(s.radius), points: s.points.map(pt) })),
    tracks: hints.tracks.map((t) => t.map(pt)),
  });
}

class HintsFormatError extends Error {}

const isNumber = (v) => typeof v === "number" && Number.isFinite(v);

function readPoint(v, path) {
  if (!Array.isArray(v) || v.length !== 2 || !isNumber(v[0]) || !isNumber(v[1])) {
    throw new HintsFormatError(`${path}: expected a point [x, y] of two numbers`);
  }
  return [v[0], v[1]];
}

function readPoints(v, path) {
  if (!Array.isArray(v) || v.length === 0) throw new HintsFormatError(`${path}: expected a non-empty list of [x, y] points`);
  return v.map((p, j) => readPoint(p, `${path}[${j}]`));
}

function readSize(obj, key) {
  const v = obj[key];
  if (!Number.isInteger(v) || v <= 0 || v > MAX_SIZE) {
    throw new HintsFormatError(`${key}: expected a positive integer <= ${MAX_SIZE}, got ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * The only reader of the widget value. Never throws: returns `{hints, error}` where `error` is
 * null on success and a message on failure (then `hints` is an empty default state).
 */
export function parseHints(text) {
  try {
    return { hints: readHints(text), error: null };
  } catch (e) {
    const error = e instanceof HintsFormatError || e instanceof SyntaxError ? e.message : String(e);
    return { hints: emptyHints(), error };
  }
}

function readHints(text) {
  if (text == null || (typeof text === "string" && text.trim() === "")) return emptyHints();
  const obj = typeof text === "string" ? JSON.parse(text) : text;
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) throw new HintsFormatError("expected a JSON object");
  if (Object.keys(obj).length === 0) return emptyHints();
  if (obj.version !== HINTS_FORMAT_VERSION) {
    throw new HintsFormatError(`version: expected ${HINTS_FORMAT_VERSION}, got ${JSON.stringify(obj.version)}`);
  }
  const width = readSize(obj, "width");
  const height = readSize(obj, "height");
  const brushIn = obj.brush ?? [];
  if (!Array.isArray(brushIn)) throw new HintsFormatError("brush: expected a list of strokes");
  const brush = brushIn.map((s, i) => {
    const path = `brush[${i}]`;
    if (s === null || typeof s !== "object") throw new HintsFormatError(`${path}: expected {mode, radius, points}`);
    if (!BRUSH_MODES.includes(s.mode)) throw new HintsFormatError(`${path}.mode: expected "paint" or "erase"`);
    if (!isNumber(s.radius) || s.radius <= 0) throw new HintsFormatError(`${path}.radius: expected a positive number`);
    return { mode: s.mode, radius: s.radius, points: readPoints(s.points, `${path}.points`) };
  });
  const tracksIn = obj.tracks ?? [];
  if (!Array.isArray(tracksIn)) throw new HintsFormatError("tracks: expected a list of tracks");
  const tracks = tracksIn.map((t, i) => readPoints(t, `tracks[${i}]`));
  return { width, height, brush, tracks };
}

/** The same hints in a `width x height` image space (per-axis scaling, as MotionHints.resized). */
export function rescaleHints(hints, width, height) {
  const sx = width / hints.width;
  const sy = height / hints.height;
  const pt = ([x, y]) => [x * sx, y * sy];
  return {
    width,
    height,
    brush: hints.brush.map((s) => ({ mode: s.mode, radius: s.radius * Math.sqrt(sx * sy), points: s.points.map(pt) })),
    tracks: hints.tracks.map((t) => t.map(pt)),
  };
}
