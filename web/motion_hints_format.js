// The Draw Motion Brush widget value, format v2 (see motion_i2v_core/motion/hints.py, the Python
// reader, which must accept everything written here):
//   {"version":2,"width":W,"height":H,
//    "brush":[{"mode":"paint"|"erase","radius":r,"points":[[x,y],...]},...],
//    "tracks":[[[x,y],...],...],
//    "timing":[null | {"start":frame,"end":frame|null,"ease_in":bool,"ease_out":bool}, ...]}
// "timing" (one entry per track, written only when some track has one) is new in v2; a v1 value
// (no timing) still reads and means the same: every track runs over the whole clip.
// Coordinates are image pixels (x right, y down), rounded to 0.1. "" and "{}" mean "no hints".
// The value is written by serializeHints() and read by parseHints(); nothing else touches JSON.

export const HINTS_FORMAT_VERSION = 2;
const READ_VERSIONS = [1, 2];
const MAX_FRAME = 10000;
export const DEFAULT_WIDTH = 512;
export const DEFAULT_HEIGHT = 320;
const MAX_SIZE = 16384;
const BRUSH_MODES = ["paint", "erase"];

/** Editor state with nothing drawn, in a `width x height` image space. */
export function emptyHints(width = DEFAULT_WIDTH, height = DEFAULT_HEIGHT) {
  return { width, height, brush: [], tracks: [], timing: [] };
}

export function isEmptyHints(hints) {
  return hints.brush.length === 0 && hints.tracks.length === 0;
}

const round1 = (v) => Math.round(v * 10) / 10 || 0; // `|| 0` turns -0 into 0

/** True when a track timing changes nothing (whole clip, no easing); null counts as default. */
export function isDefaultTiming(t) {
  return !t || ((t.start ?? 0) === 0 && t.end == null && !t.ease_in && !t.ease_out);
}

/** The only writer of the widget value: compact JSON, fixed key order, numbers rounded to 0.1. */
export function serializeHints(hints) {
  const pt = ([x, y]) => [round1(x), round1(y)];
  const value = {
    version: HINTS_FORMAT_VERSION,
    width: hints.width,
    height: hints.height,
    brush: hints.brush.map((s) => ({ mode: s.mode, radius: round1(s.radius), points: s.points.map(pt) })),
    tracks: hints.tracks.map((t) => t.map(pt)),
  };
  const timing = hints.tracks.map((_, i) => hints.timing?.[i] ?? null);
  if (timing.some((t) => !isDefaultTiming(t))) {
    value.timing = timing.map((t) =>
      isDefaultTiming(t) ? null : { start: t.start ?? 0, end: t.end ?? null, ease_in: !!t.ease_in, ease_out: !!t.ease_out });
  }
  return JSON.stringify(value);
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
  if (!READ_VERSIONS.includes(obj.version)) {
    throw new HintsFormatError(`version: expected one of ${READ_VERSIONS.join(", ")}, got ${JSON.stringify(obj.version)}`);
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
  if (obj.version < 2 && "timing" in obj) throw new HintsFormatError("timing: per-track timing needs format version 2");
  const timingIn = (obj.version >= 2 ? obj.timing : null) ?? [];
  if (!Array.isArray(timingIn)) throw new HintsFormatError("timing: expected a list of track timings");
  if (timingIn.length > tracks.length) throw new HintsFormatError(`timing: ${timingIn.length} entries for ${tracks.length} tracks`);
  const timing = tracks.map((_, i) => readTiming(timingIn[i] ?? null, `timing[${i}]`));
  return { width, height, brush, tracks, timing };
}

const isFrame = (v) => Number.isInteger(v) && v >= 0 && v <= MAX_FRAME;

function readTiming(t, path) {
  if (t === null) return null;
  if (typeof t !== "object" || Array.isArray(t)) throw new HintsFormatError(`${path}: expected null or {start, end, ease_in, ease_out}`);
  const extra = Object.keys(t).find((k) => !["start", "end", "ease_in", "ease_out"].includes(k));
  if (extra !== undefined) throw new HintsFormatError(`${path}: unknown key ${JSON.stringify(extra)}`);
  const start = t.start ?? 0;
  const end = t.end ?? null;
  if (!isFrame(start)) throw new HintsFormatError(`${path}.start: expected a frame index 0..${MAX_FRAME}`);
  if (end !== null && !isFrame(end)) throw new HintsFormatError(`${path}.end: expected a frame index 0..${MAX_FRAME} or null`);
  if (end !== null && end <= start) throw new HintsFormatError(`${path}: end frame must come after start frame`);
  for (const k of ["ease_in", "ease_out"]) {
    if (t[k] !== undefined && typeof t[k] !== "boolean") throw new HintsFormatError(`${path}.${k}: expected true or false`);
  }
  return { start, end, ease_in: !!t.ease_in, ease_out: !!t.ease_out };
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
    timing: (hints.timing ?? []).slice(),
  };
}
