// How the model samples a drawn track (motion_i2v_core/trajectories.py:resample_track): knots at
// t = linspace(0, 1, n), monotone cubic (PCHIP, Fritsch-Carlson with the three-point end rule)
// per coordinate, evaluated at linspace(0, 1, frames). Used by the editor's "play" preview.

function endSlope(h0, h1, m0, m1) {
  const d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1);
  if (Math.sign(d) !== Math.sign(m0)) return 0;
  if (Math.sign(m0) !== Math.sign(m1) && Math.abs(d) > Math.abs(3 * m0)) return 3 * m0;
  return d;
}

/** Knot derivatives of the PCHIP interpolant of (x, y), x strictly increasing, n >= 2. */
export function pchipSlopes(x, y) {
  const n = x.length;
  const h = [];
  const m = [];
  for (let k = 0; k < n - 1; k++) {
    h.push(x[k + 1] - x[k]);
    m.push((y[k + 1] - y[k]) / h[k]);
  }
  if (n === 2) return [m[0], m[0]];
  const d = new Array(n).fill(0);
  for (let k = 1; k < n - 1; k++) {
    const ml = m[k - 1];
    const mr = m[k];
    // A local extremum (or flat side) keeps a zero slope, so the curve never overshoots.
    if (ml === 0 || mr === 0 || Math.sign(ml) !== Math.sign(mr)) continue;
    const wl = 2 * h[k] + h[k - 1];
    const wr = h[k] + 2 * h[k - 1];
    d[k] = (wl + wr) / (wl / ml + wr / mr);
  }
  d[0] = endSlope(h[0], h[1], m[0], m[1]);
  d[n - 1] = endSlope(h[n - 2], h[n - 3], m[n - 2], m[n - 3]);
  return d;
}

/** Evaluate the PCHIP interpolant at each of `xq` (inside [x0, x_{n-1}]). */
export function pchipInterpolate(x, y, xq) {
  const d = pchipSlopes(x, y);
  const n = x.length;
  return xq.map((q) => {
    let k = 0;
    while (k < n - 2 && q > x[k + 1]) k++;
    const h = x[k + 1] - x[k];
    const s = (q - x[k]) / h;
    const s2 = s * s;
    const s3 = s2 * s;
    return (
      (2 * s3 - 3 * s2 + 1) * y[k] + (s3 - 2 * s2 + s) * h * d[k] + (-2 * s3 + 3 * s2) * y[k + 1] + (s3 - s2) * h * d[k + 1]
    );
  });
}

const linspace = (n) => Array.from({ length: n }, (_, i) => (n === 1 ? 0 : i / (n - 1)));

/**
 * Where along its path a track is at each of `frames` frames, 0..1 (trajectories.py:timing_progress):
 * still before `start`, held after `end` (null = last frame), both clamped into the clip; easing
 * in u^2, out 1-(1-u)^2, both smoothstep. No timing = linspace(frames).
 */
export function timingProgress(timing, frames) {
  const last = frames - 1;
  const defaultTiming = !timing || ((timing.start ?? 0) === 0 && timing.end == null && !timing.ease_in && !timing.ease_out);
  if (defaultTiming || last < 1) return linspace(frames);
  const start = Math.min(Math.max(timing.start ?? 0, 0), last - 1);
  const end = timing.end == null ? last : Math.min(Math.max(timing.end, start + 1), last);
  return Array.from({ length: frames }, (_, k) => {
    const u = Math.min(Math.max((k - start) / (end - start), 0), 1);
    if (timing.ease_in && timing.ease_out) return u * u * (3 - 2 * u);
    if (timing.ease_in) return u * u;
    if (timing.ease_out) return 1 - (1 - u) ** 2;
    return u;
  });
}

/** Positions of a track at each of `frames` frames; a one-point track (static anchor) stays put. */
export function sampleTrack(points, frames = 16, timing = null) {
  if (points.length === 1) return Array.from({ length: frames }, () => [points[0][0], points[0][1]]);
  const t = linspace(points.length);
  const tq = timingProgress(timing, frames);
  const xs = pchipInterpolate(t, points.map((p) => p[0]), tq);
  const ys = pchipInterpolate(t, points.map((p) => p[1]), tq);
  return xs.map((x, i) => [x, ys[i]]);
}
