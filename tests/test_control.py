"""Sparse flow / mask / brush and the 5-channel control, incl. exact parity with the recorded
preprocessing of the official app (tests/data/parity)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from motion_i2v_core.motion.brush import latent_mask, static_mask
from motion_i2v_core.motion.control import encode_control, sparse_flow_from_hints
from motion_i2v_core.motion.hints import MotionHints, parse_widget_json
from harness.reference import PARITY



class RecordedVAE:
    """Stand-in flow VAE: returns fixed posterior statistics and records its input."""

    def __init__(self, mean, std):
        self.mean, self.std, self.seen = mean, std, None

    def encode(self, x):
        self.seen = x
        return SimpleNamespace(mean=self.mean, std=self.std)


class PoolVAE:
    """Tiny deterministic 'encoder': 8x8 average pool, 2 -> 4 channels."""

    def encode(self, x):
        m = torch.nn.functional.avg_pool2d(x, 8)
        mean = torch.cat([m, -m], dim=1)
        return SimpleNamespace(mean=mean, std=torch.full_like(mean, 0.5))


@pytest.fixture(scope="module")
def parity():
    st = pytest.importorskip("safetensors.torch")
    return json.loads((PARITY / "tracks.json").read_text()), st.load_file(str(PARITY / "stage1_inputs.safetensors"))


def test_parity_preprocessing_exact(parity):
    tracks, s1 = parity
    hints = MotionHints([np.asarray(t, np.float64) for t in tracks["tracks"]], s1["brush_painted"] / 255.0, 64, 64)
    flow01, mask, static, warnings = sparse_flow_from_hints(hints, 64, 64, 15, tracks["flow_unit"], return_warnings=True)
    assert warnings == []
    assert flow01.shape == (1, 2, 15, 64, 64) and mask.shape == (1, 1, 15, 64, 64) and static.shape == (1, 1, 1, 64, 64)
    assert (static - s1["brush_mask"]).abs().max().item() <= 1e-6
    assert (flow01 - s1["sparse_flow01"]).abs().max().item() <= 1e-6
    assert (mask - s1["sparse_mask"].expand(1, 1, 15, 64, 64)).abs().max().item() <= 1e-6


def test_parity_control_from_recorded_posterior(parity):
    _, s1 = parity
    vae = RecordedVAE(s1["ctrl_posterior_mean"], s1["ctrl_posterior_std"])
    mask = s1["sparse_mask"].expand(1, 1, 15, 64, 64)
    # chunk=15: the recorded statistics are those of the whole batch
    control = encode_control(vae, s1["sparse_flow01"], mask, noise=s1["ctrl_posterior_eps"], chunk=15)
    # the encoder sees the frames in (b f) order
    assert torch.equal(vae.seen, s1["sparse_flow01"][0].permute(1, 0, 2, 3))
    assert control.shape == (1, 5, 15, 8, 8)
    assert (control[:, 4:] - s1["control_mask_8"]).abs().max().item() <= 1e-6
    assert (control[:, :4] - s1["control_latent"]).abs().max().item() <= 1e-6
    assert (control - s1["control"]).abs().max().item() <= 1e-6
    # a single-frame mask (1,1,1,H,W) broadcasts over the frames the same way
    control1 = encode_control(vae, s1["sparse_flow01"], s1["sparse_mask"], noise=s1["ctrl_posterior_eps"], chunk=15)
    assert torch.equal(control1, control)


def test_encode_control_sampling_modes():
    flow01 = torch.rand(1, 2, 3, 16, 24)
    mask = (torch.rand(1, 1, 3, 16, 24) > 0.5).float()
    vae = PoolVAE()
    mean_only = encode_control(vae, flow01, mask, sample=False)
    expected_mean = vae.encode(flow01[0].permute(1, 0, 2, 3)).mean.reshape(1, 3, 4, 2, 3).permute(0, 2, 1, 3, 4)
    assert torch.equal(mean_only[:, :4], expected_mean)
    assert torch.equal(mean_only[:, 4:], mask[..., ::8, ::8])
    a = encode_control(vae, flow01, mask, generator=torch.Generator().manual_seed(1))
    b = encode_control(vae, flow01, mask, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, mean_only)
    noise = torch.randn(3, 4, 2, 3)
    c = encode_control(vae, flow01, mask, noise=noise)
    assert torch.allclose(c[:, :4], expected_mean + 0.5 * noise.reshape(1, 3, 4, 2, 3).permute(0, 2, 1, 3, 4))
    with pytest.raises(ValueError, match="noise must have shape"):
        encode_control(vae, flow01, mask, noise=torch.randn(3, 4, 4, 4))


# ---------------------------------------------------------------- brush semantics

def test_brush_painted_region_moves_rest_is_static_zero_hint():
    movable = torch.zeros(64, 64)
    movable[:, :32] = 1  # left half may move
    track = np.array([[40.0, 32.0], [56.0, 32.0]])  # starts in the static half, square spans both
    flow01, mask, static = sparse_flow_from_hints(MotionHints([track], movable, 64, 64), 64, 64, 15, 16)
    assert torch.equal(static[0, 0, 0], 1 - movable)
    # static half: known zero motion (mask 1, flow 0.5) even inside the drag square
    assert torch.all(mask[0, 0, :, :, 32:] == 1)
    assert torch.all(flow01[0, :, :, :, 32:] == 0.5)
    # movable part of the square keeps the drag; outside any hint the mask is 0 and the flow 0.5
    assert flow01[0, 0, 14, 32, 30].item() == pytest.approx(0.5 + 0.5 * 16 / 64)
    assert mask[0, 0, 0, 0, 0] == 0 and flow01[0, :, 0, 0, 0].tolist() == [0.5, 0.5]


@pytest.mark.parametrize("movable", [None, torch.zeros(64, 64), torch.ones(64, 64), torch.full((64, 64), 0.4)])
def test_brush_nothing_or_everything_painted_means_no_static_region(movable):
    assert torch.equal(static_mask(movable, 64, 64), torch.zeros(64, 64))
    flow01, mask, static = sparse_flow_from_hints(MotionHints([], movable, 64, 64), 64, 64, 15)
    assert torch.all(static == 0) and torch.all(mask == 0) and torch.all(flow01 == 0.5)


def test_static_mask_resizes_linear_and_thresholds():
    m = torch.zeros(32, 32)
    m[:, :16] = 1
    s = static_mask(m, 64, 64)
    assert s.shape == (64, 64) and torch.all(s[:, :31] == 0) and torch.all(s[:, 33:] == 1)
    assert set(torch.unique(s).tolist()) == {0.0, 1.0}
    assert torch.equal(latent_mask(s[None, None, None]), s[None, None, None, ::8, ::8])


def test_no_hints_gives_neutral_control_inputs():
    flow01, mask, static = sparse_flow_from_hints(None, 64, 128, 15)
    assert flow01.shape == (1, 2, 15, 64, 128) and torch.all(flow01 == 0.5)
    assert torch.all(mask == 0) and torch.all(static == 0)


# ---------------------------------------------------------------- hint-space -> target mapping

def test_hints_are_rescaled_to_the_target_size():
    big = MotionHints([np.array([[200.0, 100.0], [260.0, 100.0]])], None, 1024, 640)
    flow01, mask, _ = sparse_flow_from_hints(big, 320, 512, 15, flow_unit=8)
    # (200,100) -> (100,50), displacement 60 -> 30 px = 30/512
    assert mask[0, 0, 0, 50, 100] == 1 and mask[0, 0, 0, 50, 92] == 1 and mask[0, 0, 0, 50, 91] == 0
    assert flow01[0, 0, 14, 50, 100].item() == pytest.approx(0.5 + 0.5 * 30 / 512)


def test_hints_follow_the_centre_crop_and_cropped_points_are_warned():
    # square 640x640 hint image -> 512x320: scale 0.8 to 512x512, crop 96 rows at the top
    h = MotionHints([np.array([[320.0, 320.0], [320.0, 370.0]]), np.array([[100.0, 20.0]])], None, 640, 640)
    flow01, mask, _, warnings = sparse_flow_from_hints(h, 320, 512, 15, flow_unit=4, return_warnings=True)
    # (320,320) -> (256, 256-96=160), dy 50 -> 40 px
    assert mask[0, 0, 0, 160, 256] == 1
    assert flow01[0, 1, 14, 160, 256].item() == pytest.approx(0.5 + 0.5 * 40 / 320)
    assert len(warnings) == 1 and "track 1 point 0" in warnings[0] and "cropped" in warnings[0]
    assert mask[0, 0, 0, 0, 80] == 1  # (100,20) -> (80, -80) clamped to row 0


def test_brush_follows_the_centre_crop():
    value = {"version": 1, "width": 128, "height": 128,
             "brush": [{"mode": "paint", "radius": 10, "points": [[64, 64]]}], "tracks": []}
    hints = parse_widget_json(value)
    _, _, static = sparse_flow_from_hints(hints, 64, 128, 15)  # scale 1, crop 32 rows
    assert static[0, 0, 0, 32, 64] == 0  # disc centre (64, 64) -> (64, 32), movable
    assert static[0, 0, 0, 0, 0] == 1 and static[0, 0, 0, 32, 100] == 1


def test_encode_control_with_the_real_flow_vae_class():
    vae_mod = pytest.importorskip("motion_i2v_core.models.vae")
    torch.manual_seed(0)
    vae = vae_mod.AutoencoderKL(in_channels=2, out_channels=2, latent_channels=4,
                                block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4).eval()
    hints = MotionHints([np.array([[10.0, 10.0], [30.0, 20.0]])], None, 64, 32)
    flow01, mask, _ = sparse_flow_from_hints(hints, 32, 64, num_frames=3, flow_unit=4)
    noise = torch.randn(3, 4, 4, 8)
    with torch.no_grad():
        control = encode_control(vae, flow01, mask, noise=noise)
        posterior = vae.encode(flow01[0].transpose(0, 1))
    assert control.shape == (1, 5, 3, 4, 8)
    # frame f of the control = posterior of frame f (no 0.18215 scaling)
    assert torch.allclose(control[0, :4].transpose(0, 1), posterior.mean + posterior.std * noise, atol=1e-6)
    assert torch.equal(control[0, 4], mask[0, 0, :, ::8, ::8])
