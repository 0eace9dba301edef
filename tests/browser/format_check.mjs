// Runs the editor's value reader/writer and track sampler under node (no browser), for
// tests/test_draw_motion_brush_format.py to compare with the Python side.
// stdin: {"values": [string, ...], "states": [editor state, ...], "tracks": [[[x, y], ...], ...], "frames": n}
// stdout: {"parsed": [{error, value}], "written": [string], "sampled": [[[x, y], ...]]}
import { readFileSync } from "node:fs";
import { parseHints, serializeHints } from "../../web/motion_hints_format.js";
import { sampleTrack } from "../../web/track_sampling.js";

const input = JSON.parse(readFileSync(0, "utf8"));
const parsed = input.values.map((v) => {
  const { hints, error } = parseHints(v);
  return { error, value: error ? null : serializeHints(hints) };
});
const written = input.states.map((s) => serializeHints(s));
const sampled = input.tracks.map((t) => sampleTrack(t, input.frames));
console.log(JSON.stringify({ parsed, written, sampled }));
