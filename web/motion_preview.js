// The editor's Play preview: the same rough flow as the Drags To Flow node
// (motion_i2v_core/motion/flow_preview.py:drags_to_flow) and the same warp as Preview Motion
// (flow_preview.py:warp_preview: forward bilinear splat, 'avg' normalisation, push-pull hole fill),
// computed on a small raster so the artist sees the image itself move while drawing.
// Pure functions on typed arrays: no DOM, so node can run them against the Python side
// (tests/browser/preview_check.mjs, tests/test_draw_motion_brush_format.py).

import { sampleTrack } from "./track_sampling.js";

// Must match flow_preview.py (FALLOFF_FRACTION, EDGE_FRACTION) and trajectories.py (default_flow_unit).
export const FALLOFF_FRACTION = 0.25;
export const EDGE_FRACTION = 1 / 48;
const HOLE_THRESHOLD = 0.5;

export function defaultFlowUnit(height, width) {
  return Math.max(1, Math.round(64 * Math.sqrt((height * width) / (512 * 320))));
}

const smoothstep = (x) => {
  const t = Math.min(1, Math.max(0, x));
  return t * t * (3 - 2 * t);
};

/** Mean of `values` (width x height) over the (2r+1)^2 window around each pixel, inside the image only. */
function boxMean(values, width, height, r) {
  const sat = new Float64Array((width + 1) * (height + 1)); // summed-area table
  for (let y = 0; y < height; y++) {
    let row = 0;
    for (let x = 0; x < width; x++) {
      row += values[y * width + x];
      sat[(y + 1) * (width + 1) + x + 1] = sat[y * (width + 1) + x + 1] + row;
    }
  }
  const out = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    const y0 = Math.max(0, y - r);
    const y1 = Math.min(height, y + r + 1);
    for (let x = 0; x < width; x++) {
      const x0 = Math.max(0, x - r);
      const x1 = Math.min(width, x + r + 1);
      const s = sat[y1 * (width + 1) + x1] - sat[y0 * (width + 1) + x1] - sat[y1 * (width + 1) + x0] + sat[y0 * (width + 1) + x0];
      out[y * width + x] = s / ((y1 - y0) * (x1 - x0));
    }
  }
  return out;
}

/**
 * Dense flow from tracks and brush on a `width x height` raster (all lengths in raster pixels).
 * @param {object} o
 * @param {number[][][]} o.tracks tracks of [x, y] points
 * @param {(object|null)[]} [o.timing] per-track timing parallel to `tracks` (track_sampling.js:timingProgress)
 * @param {ArrayLike<number>|null} o.painted 1 = painted (may move), per pixel; null = nothing painted
 * @param {number} o.frames frames including the reference frame (>= 2)
 * @param {number} o.flowUnit half-size of each track's drag square
 * @param {number} o.reach how far past its square a drag's pull fades out when nothing is painted
 * @param {number} o.edgeRamp width of the soft edge just inside the painted border
 * @returns {{dx: Float32Array, dy: Float32Array}[]} one per frame; frame 0 is zero
 */
export function dragsToFlow({ tracks, timing, painted, width, height, frames, flowUnit, reach, edgeRamp }) {
  const n = width * height;
  const flow = Array.from({ length: frames }, () => ({ dx: new Float32Array(n), dy: new Float32Array(n) }));
  const paths = [];
  for (const [index, track] of tracks.entries()) {
    let p = track.map(([x, y]) => [Math.min(Math.max(x, 0), width - 1), Math.min(Math.max(y, 0), height - 1)]);
    if (p.length === 1) p = [p[0], [p[0][0] + 1, p[0][1] + 1]]; // a single click: the app's 1 px anchor drift
    if (painted && !(painted[Math.trunc(p[0][1]) * width + Math.trunc(p[0][0])] > 0)) continue;
    paths.push(sampleTrack(p, frames, timing?.[index] ?? null));
  }
  if (!paths.length) return flow;
  const u = Math.trunc(flowUnit);
  const squares = paths.map((q) => [Math.trunc(q[0][0]), Math.trunc(q[0][1])]);
  let amount = null;
  if (painted) {
    const paintedF = Float32Array.from(painted, (v) => (v > 0 ? 1 : 0));
    const near = boxMean(paintedF, width, height, Math.max(1, Math.round(edgeRamp)));
    amount = near.map((v, i) => paintedF[i] * smoothstep(2 * v - 1));
  }
  const k = paths.length;
  const dist = new Float64Array(k);
  const weights = new Float64Array(k);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      let owner = -1;
      let dmin = Infinity;
      for (let t = 0; t < k; t++) {
        const [x0, y0] = squares[t];
        const ddx = Math.max(x0 - u - x, x - (x0 + u - 1), 0);
        const ddy = Math.max(y0 - u - y, y - (y0 + u - 1), 0);
        dist[t] = Math.hypot(ddx, ddy);
        if (dist[t] === 0) owner = t; // the last square wins, as the rasteriser overwrites
        dmin = Math.min(dmin, dist[t]);
      }
      const a = amount ? amount[i] : smoothstep(1 - dmin / reach);
      if (a === 0) continue;
      if (owner >= 0) {
        weights.fill(0);
        weights[owner] = a;
      } else {
        let total = 0;
        for (let t = 0; t < k; t++) total += weights[t] = 1 / Math.max(dist[t], 1e-3) ** 2;
        for (let t = 0; t < k; t++) weights[t] *= a / total;
      }
      for (let f = 1; f < frames; f++) {
        let dx = 0;
        let dy = 0;
        for (let t = 0; t < k; t++) {
          dx += weights[t] * (paths[t][f][0] - paths[t][0][0]);
          dy += weights[t] * (paths[t][f][1] - paths[t][0][1]);
        }
        flow[f].dx[i] = dx;
        flow[f].dy[i] = dy;
      }
    }
  }
  return flow;
}

/** One level of the pyramid: 2x2 means (windows cut by the border average what they cover). */
function halve(values, conf, width, height, channels) {
  const w2 = Math.ceil(width / 2);
  const h2 = Math.ceil(height / 2);
  const v2 = new Float32Array(w2 * h2 * channels);
  const c2 = new Float32Array(w2 * h2);
  for (let y = 0; y < h2; y++) {
    for (let x = 0; x < w2; x++) {
      let count = 0;
      const o = y * w2 + x;
      for (let yy = 2 * y; yy < Math.min(2 * y + 2, height); yy++) {
        for (let xx = 2 * x; xx < Math.min(2 * x + 2, width); xx++) {
          const i = yy * width + xx;
          count++;
          c2[o] += conf[i];
          for (let c = 0; c < channels; c++) v2[o * channels + c] += values[i * channels + c];
        }
      }
      c2[o] /= count;
      for (let c = 0; c < channels; c++) v2[o * channels + c] /= count;
    }
  }
  return [v2, c2, w2, h2];
}

/** Bilinear resize (half-pixel centres, like align_corners=False) of interleaved `channels` data. */
function upsample(values, w, h, width, height, channels) {
  const out = new Float32Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(Math.max(((y + 0.5) * h) / height - 0.5, 0), h - 1);
    const y0 = Math.floor(sy);
    const y1 = Math.min(y0 + 1, h - 1);
    const fy = sy - y0;
    for (let x = 0; x < width; x++) {
      const sx = Math.min(Math.max(((x + 0.5) * w) / width - 0.5, 0), w - 1);
      const x0 = Math.floor(sx);
      const x1 = Math.min(x0 + 1, w - 1);
      const fx = sx - x0;
      for (let c = 0; c < channels; c++) {
        const v = (i) => values[i * channels + c];
        const top = v(y0 * w + x0) * (1 - fx) + v(y0 * w + x1) * fx;
        const bottom = v(y1 * w + x0) * (1 - fx) + v(y1 * w + x1) * fx;
        out[(y * width + x) * channels + c] = top * (1 - fy) + bottom * fy;
      }
    }
  }
  return out;
}

/** Push-pull hole fill: `values` (premultiplied by `conf`) and conf in [0, 1] -> filled colours. */
function pushPull(premult, conf, width, height, channels) {
  if (width === 1 && height === 1) {
    return conf[0] > 0 ? premult.map((v) => v / conf[0]) : new Float32Array(channels);
  }
  const [v2, c2, w2, h2] = halve(premult, conf, width, height, channels);
  const up = upsample(pushPull(v2, c2, w2, h2, channels), w2, h2, width, height, channels);
  for (let i = 0; i < width * height; i++) {
    for (let c = 0; c < channels; c++) up[i * channels + c] = premult[i * channels + c] + up[i * channels + c] * (1 - conf[i]);
  }
  return up;
}

/**
 * Push an RGBA image along one frame's flow (forward bilinear splat, 'avg'), fill the holes.
 * @param {Uint8ClampedArray} rgba width x height x 4
 * @returns {Uint8ClampedArray} the warped frame (alpha 255)
 */
export function warpImage(rgba, flow, width, height) {
  const n = width * height;
  const sum = new Float32Array(n * 3);
  const weight = new Float32Array(n);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      const tx = x + flow.dx[i];
      const ty = y + flow.dy[i];
      const x0 = Math.floor(tx);
      const y0 = Math.floor(ty);
      const fx = tx - x0;
      const fy = ty - y0;
      for (const [cx, cy, w] of [[x0, y0, (1 - fx) * (1 - fy)], [x0 + 1, y0, fx * (1 - fy)], [x0, y0 + 1, (1 - fx) * fy], [x0 + 1, y0 + 1, fx * fy]]) {
        if (cx < 0 || cy < 0 || cx >= width || cy >= height || w === 0) continue;
        const j = cy * width + cx;
        weight[j] += w;
        for (let c = 0; c < 3; c++) sum[j * 3 + c] += w * rgba[i * 4 + c];
      }
    }
  }
  const conf = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    conf[j] = Math.min(1, weight[j] / HOLE_THRESHOLD);
    for (let c = 0; c < 3; c++) sum[j * 3 + c] = (sum[j * 3 + c] / (weight[j] + 1e-7)) * conf[j];
  }
  const filled = pushPull(sum, conf, width, height, 3);
  const out = new Uint8ClampedArray(n * 4);
  for (let j = 0; j < n; j++) {
    for (let c = 0; c < 3; c++) out[j * 4 + c] = filled[j * 3 + c];
    out[j * 4 + 3] = 255;
  }
  return out;
}

/**
 * Where the node's generation size puts things in the image: the image is resized to cover
 * `target` and centre-cropped (image_prep.fit_transform). Returns, in image pixels, the drag
 * square half-size, the fade-out reach and the brush edge width that Drags To Flow uses at that
 * size, and the crop rectangle.
 */
export function targetInImage(imageWidth, imageHeight, target) {
  const s = Math.max(target.width / imageWidth, target.height / imageHeight);
  const flowUnit = target.flowUnit > 0 ? target.flowUnit : defaultFlowUnit(target.height, target.width);
  return {
    flowUnit: flowUnit / s,
    reach: (FALLOFF_FRACTION * Math.max(target.width, target.height)) / s,
    edgeRamp: Math.max(2, Math.round(EDGE_FRACTION * Math.min(target.width, target.height))) / s,
    crop: {
      x: (imageWidth - target.width / s) / 2,
      y: (imageHeight - target.height / s) / 2,
      width: target.width / s,
      height: target.height / s,
    },
  };
}
