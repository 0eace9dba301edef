"""Chunked and tiled VAE calls over many frames (models/vae_frames.py)."""

import copy

import pytest
import torch
import torch.nn.functional as F

from motion_i2v_core.models import vae_frames
from motion_i2v_core.models.vae import AutoencoderKL
from motion_i2v_core.models.vae_frames import (at_precision, decode_frames, decode_tiled, encode_frames,
                                               frames_per_chunk)


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 16),
                         layers_per_block=1, norm_num_groups=4).eval()


class Spy:
    """Wraps a VAE, records the batch of each call, and raises out-of-memory above a batch / size."""

    def __init__(self, vae, max_batch=None, max_side=None):
        self.vae, self.config, self.downscale_factor = vae, vae.config, vae.downscale_factor
        self.max_batch, self.max_side, self.batches = max_batch, max_side, []

    def parameters(self):
        return self.vae.parameters()

    def _check(self, x):
        self.batches.append(x.shape[0])
        if (self.max_batch and x.shape[0] > self.max_batch) or (self.max_side and max(x.shape[-2:]) > self.max_side):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    def encode(self, x):
        self._check(x)
        return self.vae.encode(x)

    def decode(self, z):
        self._check(z)
        return self.vae.decode(z)


def test_frames_per_chunk_from_free_memory():
    assert frames_per_chunk(10_000, 1_000, 16) == 8  # 80 % of the free memory
    assert frames_per_chunk(10 ** 12, 1_000, 16) == 16  # never more than the frames
    assert frames_per_chunk(1_000, 1_000, 16) == 0  # not one frame fits: tile
    assert frames_per_chunk(5, 0, 3) == 3


def test_auto_chunk_uses_the_free_memory_on_a_gpu_and_a_fixed_chunk_elsewhere(vae, monkeypatch):
    z = torch.randn(10, 4, 4, 4)
    spy = Spy(vae)
    with torch.no_grad():
        decode_frames(spy, z)
    assert spy.batches == [vae_frames.CPU_CHUNK_FRAMES] * 2 + [10 - 2 * vae_frames.CPU_CHUNK_FRAMES]
    per_frame = vae_frames.decode_bytes_per_frame(vae, 4, 4)
    monkeypatch.setattr(vae_frames, "free_memory", lambda device: int(3.5 * per_frame / vae_frames.MEMORY_MARGIN))
    spy.batches.clear()
    with torch.no_grad():
        decode_frames(spy, z)
    assert spy.batches == [3, 3, 3, 1]


def test_chunked_encode_and_decode_equal_the_whole_batch(vae):
    x = torch.rand(7, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = vae.encode(x)
        z = whole.mean
        full = vae.decode(z)
        for chunk in (1, 2, 3, 7):
            mean, std = encode_frames(vae, x, chunk)
            # the kernels' summation order depends on the batch size: ~1e-7 here, bitwise at chunk 7
            torch.testing.assert_close(mean, whole.mean, rtol=0, atol=1e-5)
            torch.testing.assert_close(std, whole.std, rtol=0, atol=1e-5)
            torch.testing.assert_close(decode_frames(vae, z, chunk), full, rtol=0, atol=1e-5)
        assert torch.equal(decode_frames(vae, z, 7), full)
        assert torch.equal(encode_frames(vae, x, 7)[0], whole.mean)
        # the same chunk size always gives bitwise the same frames
        assert torch.equal(decode_frames(vae, z, 1)[3:4], vae.decode(z[3:4]))


def test_out_of_memory_halves_the_chunk_then_tiles(vae):
    z = F.interpolate(torch.randn(5, 4, 3, 3, generator=torch.Generator().manual_seed(2)), size=(8, 8))
    with torch.no_grad():
        spy = Spy(vae, max_batch=2)
        out = decode_frames(spy, z, chunk=5)
        assert spy.batches == [5, 2, 2, 1]  # 5 fails, then chunks of 2 (the last frame alone)
        torch.testing.assert_close(out, vae.decode(z), rtol=0, atol=1e-5)
        # not even one whole frame fits: each frame is decoded in tiles no larger than what fits
        spy = Spy(vae, max_side=4)
        out = decode_frames(spy, z, chunk=2)
        assert max(spy.batches[2:]) == 1 and len(spy.batches) > 2 + 5
        assert out.shape == (5, 3, 32, 32)
        # out of memory in an encode at one frame propagates (there is no tiled encode)
        with pytest.raises(torch.OutOfMemoryError):
            encode_frames(Spy(vae, max_side=8), torch.rand(2, 3, 32, 32), 2)


class LocalDecoder:
    """A decoder without global operations (no GroupNorm, no attention): tiles must reproduce it."""

    downscale_factor = 4

    def __init__(self):
        torch.manual_seed(3)
        self.conv1 = torch.nn.Conv2d(4, 6, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(6, 3, 3, padding=1)

    def decode(self, z):
        x = F.interpolate(torch.tanh(self.conv1(z)), scale_factor=4.0, mode="nearest")
        return self.conv2(x)


def test_tiled_decode_blends_tiles_exactly_for_a_local_decoder():
    dec = LocalDecoder()
    z = torch.randn(2, 4, 13, 18, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = dec.decode(z)
        for tile, overlap in ((12, 6), (16, 8), (13, 6)):
            tiled = decode_tiled(dec, z, tile, overlap)
            # the tile borders spoil 1 latent px + 1 pixel (5 px), less than the quarter of the
            # overlap that gets no weight: every blended pixel equals the full decode
            torch.testing.assert_close(tiled, full, rtol=0, atol=1e-5)
        assert torch.equal(decode_tiled(dec, z, 18, 4), full)  # one tile covers the frame


def test_tiled_decode_of_a_real_vae_is_approximate(vae):
    """GroupNorm and attention see one tile at a time, so a tiled decode is approximate: on this
    random tiny VAE (the worst case, statistics of 2-4 channels) the mean error is about a third of
    the output's spread, shrinking as tiles grow; one tile per frame is exact."""
    z = F.interpolate(torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(5)), size=(24, 24),
                      mode="bilinear")
    with torch.no_grad():
        full = vae.decode(z)
        errors = [((decode_tiled(vae, z, tile, 8) - full).abs().mean() / full.std()).item() for tile in (12, 16, 20)]
        assert torch.equal(decode_tiled(vae, z, 24, 8), full)
    assert errors[0] > errors[1] > errors[2] and errors[1] < 0.5, errors


def test_decoding_at_another_precision_leaves_the_vae_alone(vae):
    half = copy.deepcopy(vae).to(torch.bfloat16)
    widened = copy.deepcopy(half).float()  # what a float32 decode of the bf16 weights computes
    z = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        at32 = at_precision(half, torch.float32, "cpu")
        out = decode_frames(at32, z, 2)
        assert out.dtype == torch.float32
        assert torch.equal(out, torch.cat([widened.decode(z[:2]), widened.decode(z[2:])]))
    assert next(half.parameters()).dtype == torch.bfloat16
    assert at_precision(vae, torch.float32, "cpu") is vae
