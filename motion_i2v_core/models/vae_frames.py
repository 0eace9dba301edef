"""Running a VAE over many frames without running out of memory.

A 16-frame decode at 512x320 needs several GiB of activations in one batch, more than the UNet
steps. Frames are therefore encoded / decoded in chunks whose size comes from the free device
memory and a per-frame cost estimate; when not even one frame fits (or the device still runs out
of memory at one frame), the decode falls back to overlapping spatial tiles blended linearly.

Chunking changes only which frames share a batch: each frame's result is computed by the same
per-frame math (GroupNorm and attention never mix frames), so chunked equals unchunked up to the
kernels' batch-size-dependent summation order (on the CPU about 1e-6 for unit-scale values; the
same chunk size gives bitwise the same result). Tiling is approximate: GroupNorm statistics and
the mid-block attention see one tile instead of the whole frame.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

CPU_CHUNK_FRAMES = 4  # off the GPU there is no free-memory query worth trusting: a fixed chunk
MEMORY_MARGIN = 0.8  # use at most this share of the free memory (allocator fragmentation, workspace)
TILE_OVERLAP = 8  # latent pixels shared by neighbouring tiles (64 output pixels at f8)
MIN_TILE = 16  # latent pixels: smaller tiles see too little context to decode faithfully


def frames_per_chunk(free_bytes: int, bytes_per_frame: int, frames: int) -> int:
    """How many of ``frames`` frames fit in ``free_bytes`` at ``bytes_per_frame`` each (0 = not one)."""
    if bytes_per_frame <= 0:
        return frames
    return max(0, min(frames, int(free_bytes * MEMORY_MARGIN) // int(bytes_per_frame)))


def free_memory(device: torch.device) -> Optional[int]:
    """Bytes a new allocation can get on ``device``: driver-free plus what PyTorch's allocator holds
    unused; None where it cannot be known (CPU, meta)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def _widths(vae) -> tuple[int, int]:
    channels = tuple(vae.config.block_out_channels)
    return channels[0], channels[min(1, len(channels) - 1)]


def _element_size(vae, dtype: Optional[torch.dtype]) -> int:
    if dtype is None:
        dtype = next(vae.parameters()).dtype
    return torch.empty((), dtype=dtype).element_size()


def encode_bytes_per_frame(vae, height: int, width: int, dtype: Optional[torch.dtype] = None) -> int:
    """Activation bytes of encoding one ``height x width`` frame: the full-resolution blocks dominate
    (about six live tensors of the first block's width)."""
    c0, _ = _widths(vae)
    f = vae.downscale_factor
    tokens = (height // f) * (width // f)
    return _element_size(vae, dtype) * (6 * c0 * height * width + tokens * tokens)


def decode_bytes_per_frame(vae, h: int, w: int, dtype: Optional[torch.dtype] = None) -> int:
    """Activation bytes of decoding one ``h x w`` latent: the last upsampling writes the second
    block's width at full resolution, next to the tensors of the last block (about four such
    tensors), plus the mid-block attention scores."""
    _, c1 = _widths(vae)
    f = vae.downscale_factor
    return _element_size(vae, dtype) * (4 * c1 * (h * f) * (w * f) + (h * w) ** 2)


def auto_chunk(device, frames: int, bytes_per_frame: Callable[[], int]) -> int:
    """The chunk for ``frames`` frames on ``device`` (0 = tile); a fixed chunk where memory is unknown."""
    free = free_memory(device)
    if free is None:
        return min(frames, CPU_CHUNK_FRAMES)
    return frames_per_chunk(free, bytes_per_frame(), frames)


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def _release_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _in_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int,
               last_resort: Optional[Callable[[torch.Tensor], torch.Tensor]]) -> torch.Tensor:
    """``cat([fn(c) for c in x.split(chunk)])``, halving the chunk on out-of-memory; when one frame
    does not fit (or ``chunk`` is 0), ``last_resort`` on each frame, or the error without one."""
    out, start = [], 0
    while start < x.shape[0]:
        part = x[start:start + max(chunk, 1)]
        try:
            y = fn(part) if chunk > 0 else last_resort(part)
        except RuntimeError as e:  # torch.OutOfMemoryError is one
            if not _is_oom(e) or chunk == 0 or (chunk == 1 and last_resort is None):
                raise
            del e
            _release_cache()
            chunk = chunk // 2 if chunk > 1 else 0
            continue
        out.append(y)
        start += part.shape[0]
    return torch.cat(out)


def encode_frames(vae, frames: torch.Tensor, chunk: Optional[int] = None):
    """Encode ``(N, C, H, W)`` in chunks of frames; returns the posterior ``(mean, std)``.

    chunk: frames per encoder call; None = chosen from the free memory (CPU: CPU_CHUNK_FRAMES).
    """
    n, _, height, width = frames.shape
    if chunk is None:
        chunk = max(1, auto_chunk(frames.device, n, lambda: encode_bytes_per_frame(vae, height, width)))

    def encode(part):
        posterior = vae.encode(part)
        return torch.cat([posterior.mean, posterior.std], dim=1)

    moments = _in_chunks(encode, frames, max(1, int(chunk)), None)
    return moments.chunk(2, dim=1)


def decode_frames(vae, latents: torch.Tensor, chunk: Optional[int] = None,
                  out_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Decode ``(N, c, h, w)`` in chunks of frames; returns ``(N, C, H, W)``.

    chunk: frames per decoder call; None = chosen from the free memory (CPU: CPU_CHUNK_FRAMES),
        0 = tiled decode of each frame. Out of memory halves the chunk, then tiles.
    out_dtype: each chunk's output is cast to it at once (no full-size copy in the VAE's dtype).
    """
    n, _, h, w = latents.shape
    if chunk is None:
        chunk = auto_chunk(latents.device, n, lambda: decode_bytes_per_frame(vae, h, w))

    def decode(part):
        y = vae.decode(part)
        return y if out_dtype is None else y.to(out_dtype)

    def tiled(frame):
        tile = tile_for_memory(vae, frame)
        while True:
            try:
                return decode_tiled(vae, frame, tile).to(out_dtype or frame.dtype)
            except RuntimeError as e:
                if not _is_oom(e) or tile <= 2:
                    raise
                del e
                _release_cache()
                tile //= 2

    return _in_chunks(decode, latents, int(chunk), tiled)


def tile_for_memory(vae, latent: torch.Tensor) -> int:
    """Latent tile side whose decode fits in the free memory (at least MIN_TILE)."""
    h, w = latent.shape[-2:]
    free = free_memory(latent.device)
    if free is None:
        return max(MIN_TILE, min(h, w) // 2)
    side = max(h, w)
    while side > MIN_TILE and decode_bytes_per_frame(vae, side, side) > free * MEMORY_MARGIN:
        side //= 2
    return max(MIN_TILE, side)


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step))
    return starts + [size - tile]


def _ramp(length: int, left: int, right: int, device) -> torch.Tensor:
    """Blend weights along one axis of a tile with overlaps of ``left`` / ``right`` samples.

    Across an overlap the weight is 0 over its outer quarter (where the tile's own border, seen
    through zero padding, spoils the decode), rises linearly over the middle half, and is 1 over the
    inner quarter; the neighbour's weight mirrors it, so the two always sum to 1.
    """
    pos = torch.arange(length, device=device, dtype=torch.float32) + 0.5
    weight = torch.ones(length, device=device)
    for n, dist in ((left, pos), (right, length - pos)):
        if n:
            margin = n // 4
            weight = weight * ((dist - margin) / max(1, n - 2 * margin)).clamp(0, 1)
    return weight


def decode_tiled(vae, latent: torch.Tensor, tile: int, overlap: int = TILE_OVERLAP) -> torch.Tensor:
    """Decode ``(N, c, h, w)`` in overlapping ``tile x tile`` latent tiles, blended linearly.

    Returns float32. Approximate: GroupNorm and the mid-block attention see one tile, not the frame.
    On the random-weight test VAE (statistics of 2-4 channels, the worst case) the mean error is
    about a third of the output's spread and shrinks as tiles grow; it has not been measured on
    trained weights. It is the last resort, used only when one frame does not fit in memory.
    """
    n, _, h, w = latent.shape
    f = vae.downscale_factor
    tile = max(1, min(int(tile), max(h, w)))
    overlap = min(overlap, max(0, tile // 2))
    out = weight_sum = None
    for y0 in _starts(h, tile, overlap):
        for x0 in _starts(w, tile, overlap):
            y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
            decoded = vae.decode(latent[:, :, y0:y1, x0:x1]).float()
            if out is None:
                out = torch.zeros(n, decoded.shape[1], h * f, w * f, device=decoded.device)
                weight_sum = torch.zeros(1, 1, h * f, w * f, device=decoded.device)
            top, bottom = (overlap * f if y0 > 0 else 0), (overlap * f if y1 < h else 0)
            left, right = (overlap * f if x0 > 0 else 0), (overlap * f if x1 < w else 0)
            wy = _ramp(decoded.shape[-2], top, bottom, decoded.device)
            wx = _ramp(decoded.shape[-1], left, right, decoded.device)
            weight = wy[:, None] * wx[None, :]
            out[:, :, y0 * f:y1 * f, x0 * f:x1 * f] += decoded * weight
            weight_sum[:, :, y0 * f:y1 * f, x0 * f:x1 * f] += weight
    return out / weight_sum


class _Decoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, z):
        return self.vae.decode(z)


class VAEAtPrecision:
    """A VAE's decoder run at another precision, the module itself untouched.

    The decoder weights are cast once (a copy the size of the decoder) and used through
    ``torch.func.functional_call``; the flow is decoded this way in float32 whatever precision the
    flow VAE was loaded in, since flow pixels scale the decoded [0, 1] values by the image size.
    """

    def __init__(self, vae, dtype: torch.dtype, device):
        self.vae, self.dtype = vae, dtype
        self.config, self.downscale_factor = vae.config, vae.downscale_factor
        self._module = _Decoder(vae)
        self._weights = {
            f"vae.{name}": t.to(device=device, dtype=dtype)
            for name, t in list(vae.named_parameters()) + list(vae.named_buffers())
            if name.startswith(("decoder.", "post_quant_conv.")) and t.is_floating_point()
        }

    def parameters(self):
        return iter(self._weights.values())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self._module, self._weights, (z.to(self.dtype),))


def at_precision(vae, dtype: torch.dtype, device):
    """``vae`` itself when its weights already have ``dtype``, else a :class:`VAEAtPrecision`."""
    return vae if next(vae.parameters()).dtype == dtype else VAEAtPrecision(vae, dtype, device)
