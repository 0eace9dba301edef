"""Forward (push) bilinear splatting: the softsplat op of Motion-I2V, in pure torch.

Semantics follow stage2_spec.md section 4 exactly. Each source pixel ``(n, y, x)`` is pushed to
``(tx, ty) = (x + dx, y + dy)``; a source with a non-finite target is skipped; it adds
``value * w`` to each of the four integer corners around the target that lie inside the image
(corners outside ``[0, W) x [0, H)`` are dropped, with no renormalisation). The corner weights are
computed in float32 like the CUDA kernel::

    x0 = floor(tx), y0 = floor(ty), x1 = x0 + 1, y1 = y0 + 1
    w_NW = (x1 - tx)(y1 - ty)   w_NE = (tx - x0)(y1 - ty)
    w_SW = (x1 - tx)(ty - y0)   w_SE = (tx - x0)(ty - y0)

Modes: ``sum`` = S(X); ``avg`` = S([X, 1]); ``linear`` = S([X*M, M]); ``soft`` = S([X*exp(M), exp(M)]);
every mode but ``sum`` divides by the splatted last channel (the normaliser), with the suffix
``-addeps`` (default, normaliser + 1e-7), ``-zeroeps`` (a normaliser of exactly 0 becomes 1) or
``-clipeps`` (normaliser clamped to >= 1e-7).

Accumulation is float32 for float16/bfloat16/float32 inputs (float64 inputs are computed in
float64) and the result is cast back to the input dtype. It is deterministic on CPU: contributions
are added with ``index_add_`` corner by corner in the order NW, NE, SW, SE, sources in raster order
(the official kernel uses atomicAdd, so it differs from this by about 1 ulp).

``forward_splat`` is the exact reference, the "torch" backend of the op registry; the Triton kernel
(ops/triton_splat.py) replaces it on CUDA behind the same signature, so keep that signature stable.
``splat_corners`` / ``splat_sum`` / ``splat_normaliser`` / ``normalise_splat`` are its pieces, public so
that one flow's corners and normaliser can serve several images (the flow preview pushes one image
along every frame's flow), with results bitwise identical to ``forward_splat``.
On CUDA, ``index_add_`` uses atomics, so these torch paths are deterministic only on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

__all__ = [
    "SplatCorners",
    "SPLAT_MODES",
    "SPLAT_EPS",
    "forward_splat",
    "splat_corners",
    "splat_sum",
    "splat_normaliser",
    "normalise_splat",
    "parse_splat_mode",
]

SPLAT_MODES = ("sum", "avg", "linear", "soft")
SPLAT_EPS = ("addeps", "zeroeps", "clipeps")
_EPS = 1e-7


_PAD = 2  # margin of the target grid that absorbs every dropped corner (see SplatCorners)
# Largest zeroed scratch grid of one splat, in elements (16 MiB in float32): channel rows beyond it are
# splatted chunk by chunk.
SCRATCH_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class SplatCorners:
    """Target slots and bilinear weights of the four corners of every source pixel of a flow.

    Corner k (0..3 = NW, NE, SW, SE) of source ``m = n*H*W + y*W + x`` (raster order) goes to slot
    ``base[m] + offsets[k]`` with weight ``weight[k, m]``. Slots live on a padded grid of
    ``batch x (H + 4) x (W + 4)`` with a 2-pixel margin: image pixel (n, y, x) is slot
    ``n*(H+4)*(W+4) + (y+2)*(W+4) + (x+2)``. Corners outside the image, and all corners of a source
    with a non-finite target, land in the margin, whose sums are discarded; so no masks are needed,
    and weights of such corners are not meaningful (they may be NaN). ``inside_mask()`` tells which
    corners count.
    """

    base: torch.Tensor  # (N*H*W,) int64 slot of the NW corner on the padded grid
    weight: torch.Tensor  # (4, N*H*W) compute dtype (float32 or float64)
    batch: int
    height: int
    width: int

    @property
    def offsets(self) -> tuple[int, int, int, int]:
        wp = self.width + 2 * _PAD
        return (0, 1, wp, wp + 1)

    def corner_index(self, k: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Slots of corner k of every source, (N*H*W,) int64 (written into ``out`` if given)."""
        return torch.add(self.base, self.offsets[k], out=out)

    @property
    def index(self) -> torch.Tensor:
        """(4, N*H*W) int64 slots of all corners (materialised; the splat loops avoid this)."""
        return torch.stack([self.corner_index(k) for k in range(4)])

    @property
    def padded_shape(self) -> tuple[int, int, int]:
        return self.batch, self.height + 2 * _PAD, self.width + 2 * _PAD

    @property
    def num_slots(self) -> int:
        n, hp, wp = self.padded_shape
        return n * hp * wp

    def crop(self, padded: torch.Tensor) -> torch.Tensor:
        """(R, num_slots) sums on the padded grid -> (R, N, H, W) image pixels."""
        n, hp, wp = self.padded_shape
        grid = padded.reshape(padded.shape[0], n, hp, wp)
        return grid[:, :, _PAD : _PAD + self.height, _PAD : _PAD + self.width]

    def inside_mask(self) -> torch.Tensor:
        """(4, N*H*W) bool: corners that land inside the image (the ones the kernel adds)."""
        n, hp, wp = self.padded_shape
        local = self.index % (hp * wp)  # (4, N*H*W)
        y, x = local // wp - _PAD, local % wp - _PAD
        return (x >= 0) & (x < self.width) & (y >= 0) & (y < self.height)


def parse_splat_mode(mode: str) -> tuple[str, str]:
    """Split ``"avg-zeroeps"`` into ``("avg", "zeroeps")``; a bare mode gets ``"addeps"``."""
    if not isinstance(mode, str):
        raise ValueError(f"splat mode must be a string such as 'avg', got {type(mode).__name__}")
    base, _, eps = mode.partition("-")
    eps = eps or "addeps"
    if base not in SPLAT_MODES or eps not in SPLAT_EPS:
        raise ValueError(
            f"unknown splat mode {mode!r}: use one of {', '.join(SPLAT_MODES)}, optionally with a "
            f"suffix -{', -'.join(SPLAT_EPS)} (for example 'avg' or 'soft-zeroeps')"
        )
    return base, eps


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # float64 stays float64 (tests, analysis); every other float type accumulates in float32.
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_flow(flow: torch.Tensor) -> None:
    if not isinstance(flow, torch.Tensor) or flow.dim() != 4 or flow.shape[1] != 2:
        shape = tuple(flow.shape) if isinstance(flow, torch.Tensor) else type(flow).__name__
        raise ValueError(f"flow must be a tensor of shape (N, 2, H, W) (dx, dy in pixels), got {shape}")
    if not flow.is_floating_point():
        raise ValueError(f"flow must be a floating-point tensor, got {flow.dtype}")


def splat_corners(flow: torch.Tensor, dtype: Optional[torch.dtype] = None) -> SplatCorners:
    """Corner indices and bilinear weights of every source pixel of ``flow`` (N, 2, H, W).

    :param flow: displacement in pixels, ch0 = dx (+right), ch1 = dy (+down).
    :param dtype: arithmetic dtype of the target coordinates and weights; default float32
        (float64 for a float64 flow).
    """
    _check_flow(flow)
    n, _, h, w = flow.shape
    dtype = dtype or _compute_dtype(flow.dtype)
    dev = flow.device
    fl = flow.to(dtype)
    # In-place arithmetic on few buffers below: on CPU, page faults of freshly allocated large
    # tensors cost more than the arithmetic itself.
    tx = torch.add(fl[:, 0], torch.arange(w, device=dev, dtype=dtype).view(1, 1, w))
    ty = torch.add(fl[:, 1], torch.arange(h, device=dev, dtype=dtype).view(1, h, 1))
    x0 = torch.floor(tx)
    y0 = torch.floor(ty)

    # Slot of the NW corner. Map x0 into [-2, W] (and y0 into [-2, H]): in-image corners keep their
    # place, every corner that would be outside the image lands in the 2-pixel margin. NaN -> -2
    # and +-inf clamp into the margin too, so a non-finite target drops all four corners like the
    # kernel's isfinite check. The arithmetic is done in floating point (exact below 2**24 / 2**53
    # slots) because int64 multiplies are several times slower on CPU.
    wp = w + 2 * _PAD
    slots_per_item = (h + 2 * _PAD) * wp
    slot_dtype = torch.float32 if n * slots_per_item < 2**24 else torch.float64
    base = torch.nan_to_num(y0.to(slot_dtype), nan=-_PAD).clamp_(-_PAD, h).mul_(wp)
    base.add_(torch.nan_to_num(x0.to(slot_dtype), nan=-_PAD).clamp_(-_PAD, w))
    base.add_(torch.arange(n, device=dev, dtype=slot_dtype).mul_(slots_per_item).add_(_PAD * wp + _PAD).view(n, 1, 1))
    base = base.long().reshape(-1)

    # Per-axis bilinear factors exactly as the kernel: (x1 - tx) and (tx - x0) with x1 = x0 + 1.
    wx1 = torch.sub(tx, x0)
    wx0 = x0.add_(1).sub_(tx)
    wy1 = torch.sub(ty, y0)
    wy0 = y0.add_(1).sub_(ty)
    weights = torch.empty(4, n, h, w, device=dev, dtype=dtype)
    for k, (wx, wy) in enumerate(((wx0, wy0), (wx1, wy0), (wx0, wy1), (wx1, wy1))):
        torch.mul(wx, wy, out=weights[k])
    return SplatCorners(base, weights.reshape(4, -1), n, h, w)


def _as_channel_rows(x: torch.Tensor, corners: SplatCorners, dtype: torch.dtype) -> tuple[torch.Tensor, int]:
    """(G*N, C, H, W) -> (G*C, N*H*W) rows in ``dtype``; item g*N + n uses the flow of item n."""
    n, h, w = corners.batch, corners.height, corners.width
    if x.dim() != 4 or x.shape[2:] != (h, w) or x.shape[0] == 0 or x.shape[0] % n != 0:
        raise ValueError(
            f"splat input must have shape (k*{n}, C, {h}, {w}) or (1, C, {h}, {w}) to match the flow "
            f"(N={n}, H={h}, W={w}), got {tuple(x.shape)}"
        )
    c = x.shape[1]
    g = x.shape[0] // n
    rows = x.to(dtype).reshape(g, n, c, h * w).transpose(1, 2).reshape(g * c, n * h * w)
    return rows, g


def splat_sum(x: torch.Tensor, corners: SplatCorners) -> torch.Tensor:
    """Plain splat S(x) with precomputed corners, in the corners' dtype.

    ``x`` has shape (G*N, C, H, W) for any G >= 1: item ``g*N + n`` is moved by flow item n (so the
    two CFG halves, concatenated, share one corner computation); or (1, C, H, W), moved by every
    flow item (result (N, C, H, W)). The result may be a non-contiguous view.
    """
    if x.dim() == 4 and x.shape[0] == 1 and corners.batch > 1:
        x = x.expand(corners.batch, -1, -1, -1)
    rows, g = _as_channel_rows(x, corners, corners.weight.dtype)
    n, h, w, c = corners.batch, corners.height, corners.width, x.shape[1]
    return _scatter_rows(rows, corners).reshape(g, c, n, h, w).transpose(1, 2).reshape(g * n, c, h, w)


def _scatter_rows(rows: torch.Tensor, corners: SplatCorners) -> torch.Tensor:
    """(R, N*H*W) source rows -> (R, N, H, W) splatted sums.

    Rows are independent, so they are splatted in chunks: the zeroed padded grid and the weighted
    contributions are scratch of one chunk (at most ``SCRATCH_ELEMENTS`` grid slots), not of all rows.
    """
    n, h, w = corners.batch, corners.height, corners.width
    total = rows.shape[0]
    chunk = max(1, min(total, SCRATCH_ELEMENTS // corners.num_slots))
    if chunk < total:
        result = rows.new_empty(total, n, h, w)
    grid = torch.empty(chunk, corners.num_slots, device=rows.device, dtype=rows.dtype)
    contrib = torch.empty(chunk, rows.shape[1], device=rows.device, dtype=rows.dtype)
    index = torch.empty_like(corners.base)
    for start in range(0, total, chunk):
        stop = min(total, start + chunk)
        padded, part = grid[: stop - start].zero_(), contrib[: stop - start]
        for k in range(4):  # NW, NE, SW, SE: the fixed order keeps the result deterministic
            corners.corner_index(k, out=index)
            padded.index_add_(1, index, torch.mul(rows[start:stop], corners.weight[k], out=part))
        if chunk == total:
            return corners.crop(padded)  # one chunk: its grid is the result
        result[start:stop] = corners.crop(padded)
    return result


def splat_normaliser(corners: SplatCorners) -> torch.Tensor:
    """S(1): total splat weight received by every target pixel, shape (N, 1, H, W).

    Bitwise equal to the ones-channel of ``S(cat[X, 1])``: each pixel sums the same products in the
    same order.
    """
    out = torch.zeros(1, corners.num_slots, device=corners.weight.device, dtype=corners.weight.dtype)
    index = torch.empty_like(corners.base)
    for k in range(4):
        out.index_add_(1, corners.corner_index(k, out=index), corners.weight[k].unsqueeze(0))
    return corners.crop(out).transpose(0, 1).contiguous()


def normalise_splat(summed: torch.Tensor, normaliser: torch.Tensor, eps: str = "addeps") -> torch.Tensor:
    """Divide splatted values by the splatted normaliser with one of the eps rules.

    ``normaliser`` (N, 1, H, W) broadcasts over channels, and over groups when ``summed`` has
    G*N items.
    """
    if eps == "addeps":
        denom = normaliser + _EPS
    elif eps == "zeroeps":
        denom = torch.where(normaliser == 0, torch.ones_like(normaliser), normaliser)
    elif eps == "clipeps":
        denom = normaliser.clamp(min=_EPS)
    else:
        raise ValueError(f"unknown eps rule {eps!r}: use one of {', '.join(SPLAT_EPS)}")
    n = denom.shape[0]
    if summed.shape[0] != n:
        g = summed.shape[0] // n
        return (summed.reshape(g, n, *summed.shape[1:]) / denom).reshape(summed.shape)
    return summed / denom


def forward_splat(
    x: torch.Tensor, flow: torch.Tensor, mode: str = "avg", metric: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Forward-splat ``x`` along ``flow`` (the exact reference implementation).

    :param x: features [N x C x H x W], any float dtype.
    :param flow: displacement [N x 2 x H x W] in pixels (ch0 = dx right, ch1 = dy down).
    :param mode: "sum", "avg", "linear" or "soft", optionally with "-addeps" (default),
        "-zeroeps" or "-clipeps".
    :param metric: [N x 1 x H x W] importance metric, required for "linear" and "soft", not allowed
        otherwise.
    :return: [N x C x H x W] in x's dtype; pixels that nothing reaches are exactly 0.
    """
    base, eps = parse_splat_mode(mode)
    _check_flow(flow)
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"splat input must be a float tensor of shape (N, C, H, W), got {getattr(x, 'shape', x)}")
    if x.shape[0] != flow.shape[0] or x.shape[2:] != flow.shape[2:]:
        raise ValueError(
            f"splat input {tuple(x.shape)} and flow {tuple(flow.shape)} must have the same N, H and W"
        )
    if base in ("linear", "soft"):
        if metric is None:
            raise ValueError(f"splat mode {mode!r} needs a metric tensor of shape (N, 1, H, W)")
        if metric.shape != (x.shape[0], 1, *x.shape[2:]):
            raise ValueError(
                f"splat metric must have shape {(x.shape[0], 1, *x.shape[2:])}, got {tuple(metric.shape)}"
            )
    elif metric is not None:
        raise ValueError(f"splat mode {mode!r} takes no metric; use 'linear' or 'soft' to weight by a metric")

    dtype = _compute_dtype(x.dtype)
    corners = splat_corners(flow, dtype=dtype)
    xc = x.to(dtype)
    if base == "sum":
        return splat_sum(xc, corners).to(x.dtype)
    if base == "avg":
        summed = splat_sum(xc, corners)
        normaliser = splat_normaliser(corners)
    else:
        m = metric.to(dtype)
        m = m if base == "linear" else m.exp()
        # Same values as splatting cat[X*M, M]: each channel is accumulated independently.
        summed = splat_sum(torch.cat([xc * m, m], dim=1), corners)
        summed, normaliser = summed[:, :-1], summed[:, -1:]
    return normalise_splat(summed, normaliser, eps).to(x.dtype)
