"""Unit checks of the UNet building blocks: embeddings, config, motion attention, dtypes, odd sizes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from motion_i2v_core.models.config import UNetConfig, VAEConfig
from motion_i2v_core.models.embeddings import temporal_position_table, timestep_sinusoid
from motion_i2v_core.models.motion_module import FlowWarpContext
from motion_i2v_core.ops.motion_attention import motion_augmented_attention, warp_source_index
from motion_i2v_core.models.unet3d import FlowUNet, RenderUNet


def tiny_config(**overrides) -> UNetConfig:
    base = dict(
        block_out_channels=(32, 32, 32, 32), layers_per_block=1, cross_attention_dim=16,
        norm_num_groups=8, attention_heads=8,
    )
    base.update(overrides)
    return UNetConfig(**base)


# ---- reference values (stage1_spec.md section 6) ----

def test_timestep_sinusoid_reference_values():
    e = timestep_sinusoid(torch.tensor([8, 961]), 320, flip_sin_to_cos=True, freq_shift=0)
    cols = [0, 1, 159, 160, 161, 319]
    expected = torch.tensor(
        [[-0.1455, 0.296948, 1.0, 0.989358, 0.954894, 0.000847],
         [0.946897, -0.778964, 0.994823, -0.321537, 0.627069, 0.101619]]
    )
    assert e.dtype == torch.float32 and e.shape == (2, 320)
    torch.testing.assert_close(e[:, cols], expected, atol=2e-5, rtol=0)


def test_temporal_position_table_reference_values():
    pe = temporal_position_table(320, 32)
    assert pe.shape == (1, 32, 320)
    got = [pe[0, 1, 0], pe[0, 1, 1], pe[0, 14, 2], pe[0, 14, 3], pe[0, 31, 318], pe[0, 31, 319]]
    expected = [0.841471, 0.540302, 0.60557, 0.795792, 0.003284, 0.999995]
    for g, e in zip(got, expected):
        assert abs(g.item() - e) < 2e-5


# ---- config ----

def test_config_from_diffusers_reads_fields_and_overrides():
    raw = {
        "in_channels": 8, "out_channels": 4, "block_out_channels": [32, 64, 32, 32], "layers_per_block": 2,
        "attention_head_dim": 8, "cross_attention_dim": 32, "norm_num_groups": 8, "norm_eps": 1e-5,
        "flip_sin_to_cos": True, "freq_shift": 0,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    }
    cfg = UNetConfig.from_diffusers(raw, stride_embedding=True)
    assert cfg.block_out_channels == (32, 64, 32, 32) and cfg.attention_heads == 8
    assert cfg.in_channels == 8 and cfg.norm_num_groups == 8 and cfg.stride_embedding
    assert cfg.time_embed_dim == 128
    sd = UNetConfig.sd15_flow()
    assert (sd.in_channels, sd.out_channels, sd.block_out_channels) == (8, 4, (320, 640, 1280, 1280))


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"block_out_channels": [320, 650, 1280, 1280]}, "650"),
        ({"norm_num_groups": 0}, "norm_num_groups"),
        ({"attention_head_dim": [5, 10, 20, 20]}, "attention_head_dim"),
        ({"use_linear_projection": True}, "use_linear_projection"),
        ({"down_block_types": ["DownBlock2D"] * 4}, "down_block_types"),
    ],
)
def test_config_validation_names_field_and_value(raw, field):
    with pytest.raises(ValueError, match=field):
        UNetConfig.from_diffusers(raw)


def test_motion_overrides_accept_official_and_reject_unsupported():
    official = {
        "use_inflated_groupnorm": True, "motion_module_resolutions": [1, 2, 4, 8], "motion_module_mid_block": True,
        "motion_module_type": "Vanilla",
        "motion_module_kwargs": {"num_attention_heads": 8, "num_transformer_block": 1,
                                 "attention_block_types": ["Temporal_Self", "Temporal_Self"],
                                 "temporal_position_encoding": True, "temporal_position_encoding_max_len": 32},
    }
    assert UNetConfig.motion_overrides(official) == {"motion_module_heads": 8, "motion_module_pe_max_len": 32}
    with pytest.raises(ValueError, match="num_transformer_block"):
        UNetConfig.motion_overrides({"motion_module_kwargs": {"num_transformer_block": 2}})


def test_vae_config_from_diffusers():
    cfg = VAEConfig.from_diffusers(
        {"in_channels": 2, "out_channels": 2, "latent_channels": 4, "block_out_channels": [32, 32, 32, 32],
         "layers_per_block": 1, "norm_num_groups": 32, "act_fn": "silu"}
    )
    assert (cfg.in_channels, cfg.latent_channels, cfg.layers_per_block, cfg.scaling_factor) == (2, 4, 1, 0.18215)
    assert VAEConfig.sd15(2).block_out_channels == (128, 256, 512, 512)
    with pytest.raises(ValueError, match="latent_channels"):
        VAEConfig(latent_channels=-1)


# ---- motion-augmented attention ----

def test_q1_source_mapping():
    # B=2, F=16: even j take the other CFG branch, odd j their own.
    src = warp_source_index(2, 16, official_compat=True).reshape(2, 15)
    for b in range(2):
        for j in range(1, 16):
            assert src[b, j - 1].item() == (b * 15 + j - 1) % 2 == (b + j - 1) % 2
    own = warp_source_index(2, 16, official_compat=False).reshape(2, 15)
    assert (own == torch.arange(2)[:, None]).all()


def _reference_motion_attention(x, flow, frames, h, w, pe, heads, wq, wk, wv, compat):
    """Literal per-(b, j) transcription of stage2_spec.md 3.3 in float64."""
    from motion_i2v_core.ops.splat import forward_splat

    bf, n, c = x.shape
    batch = bf // frames
    z = x.reshape(batch, frames, n, c).double()
    outs = torch.zeros(batch, frames, n, c, dtype=torch.float64)
    for b in range(batch):
        seq = []
        for i in range(frames):
            if i > 0:
                k = b * (frames - 1) + i - 1
                src = k % batch if compat else b
                ref = z[src, 0].T.reshape(1, c, h, w)
                fl = flow[b if flow.shape[0] > 1 else 0, i][None].double()
                seq.append(forward_splat(ref, fl, mode="avg").reshape(c, n).T)
            seq.append(z[b, i])
        seq = torch.stack(seq, dim=1) + pe[0, : 2 * frames - 1].double()  # (n, T, c), PE rows 0..2F-2
        q = seq[:, 0::2] @ wq.double().T
        k = seq @ wk.double().T
        v = seq @ wv.double().T
        d = c // heads
        for hd in range(heads):
            s = slice(hd * d, (hd + 1) * d)
            att = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(d), dim=-1)
            outs[b, :, :, s] = (att @ v[..., s]).transpose(0, 1)
    return outs.reshape(bf, n, c)


@pytest.mark.parametrize("compat", [False, True])
def test_motion_augmented_attention_matches_literal_reference(compat):
    torch.manual_seed(0)
    batch, frames, h, w, c, heads = 2, 4, 5, 6, 16, 4
    x = torch.randn(batch * frames, h * w, c, dtype=torch.float64)
    flow = torch.randn(batch, frames, 2, h, w, dtype=torch.float64) * 2
    flow[:, :, :, 0, 0] = 50.0  # sends a source far outside: holes stay exact zeros and are still keys
    pe = temporal_position_table(c, 32).double()
    wq, wk, wv = (torch.randn(c, c, dtype=torch.float64) / 4 for _ in range(3))
    ours = motion_augmented_attention(
        x, flow, num_frames=frames, height=h, width=w, pe=pe, heads=heads, w_q=wq, w_k=wk, w_v=wv,
        official_compat=compat,
    )
    ref = _reference_motion_attention(x, flow, frames, h, w, pe, heads, wq, wk, wv, compat)
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=0)


def test_flow_context_resizes_once_and_rescales_to_feature_pixels():
    flow = torch.zeros(1, 3, 2, 64, 64)
    flow[:, :, 0] = 16.0  # 16 image px right = 2 px at 8x8
    flow[:, :, 1] = -8.0
    ctx = FlowWarpContext(flow)
    small = ctx.at(8, 8)
    assert small.shape == (1, 3, 2, 8, 8)
    assert torch.allclose(small[:, :, 0], torch.tensor(2.0)) and torch.allclose(small[:, :, 1], torch.tensor(-1.0))
    assert ctx.at(8, 8) is small
    expected = F.interpolate(flow.reshape(3, 2, 64, 64), size=(4, 4), mode="bilinear", align_corners=False) / 16
    torch.testing.assert_close(ctx.at(4, 4).reshape(3, 2, 4, 4), expected)


# ---- whole-model behaviour on tiny configs ----

def test_render_unet_rejects_too_many_frames_and_bad_flow():
    model = RenderUNet(tiny_config())
    sample, text = torch.randn(1, 4, 17, 8, 8), torch.randn(1, 5, 16)
    with pytest.raises(ValueError, match="at most 16 frames"):
        model(sample, 10, text, flow=torch.zeros(1, 17, 2, 64, 64))
    with pytest.raises(ValueError, match="flow must be"):
        model(sample[:, :, :4], 10, text, flow=torch.zeros(1, 3, 2, 64, 64))


def test_flow_unet_odd_latent_size_and_control_residual_shapes():
    torch.manual_seed(0)
    cfg = tiny_config(in_channels=8, stride_embedding=True)
    model = FlowUNet(cfg).eval()
    sample = torch.randn(2, 8, 3, 5, 7)  # 5x7 does not halve evenly: upsampling must follow the skips
    control = torch.randn(2, 5, 3, 5, 7)
    with torch.no_grad():
        eps, (down, mid) = model(sample, 500, torch.tensor([[8, 16, 24]]), torch.randn(2, 6, 16), control=control,
                                 return_control_residuals=True)
    assert eps.shape == (2, 4, 3, 5, 7)
    sizes = [r.shape[-2:] for r in down]
    # 1 layer per block: conv_in + 4 layers + 3 downsamplers = 8 skips; 5x7 -> 3x4 -> 2x2 -> 1x1
    assert len(down) == 8 and sizes[0] == (5, 7) and sizes[2] == (3, 4) and sizes[-1] == (1, 1)
    assert mid.shape == (2, 32, 3, 1, 1)
    with pytest.raises(ValueError, match="control must have shape"):
        model(sample, 500, torch.tensor([[8, 16, 24]]), torch.randn(2, 6, 16), control=control[:, :4])


def test_stride_changes_output_per_frame():
    torch.manual_seed(0)
    model = FlowUNet(tiny_config(in_channels=8, stride_embedding=True), with_controlnet=False).eval()
    sample, text = torch.randn(1, 8, 3, 8, 8), torch.randn(1, 6, 16)
    with torch.no_grad():
        a = model(sample, 500, torch.tensor([[8, 16, 24]]), text)
        b = model(sample, 500, torch.tensor([[8, 16, 32]]), text)
    assert (a - b).abs().max() > 1e-4


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_half_precision_forward_runs(dtype):
    torch.manual_seed(0)
    render = RenderUNet(tiny_config(), dtype=dtype).eval()
    flow_unet = FlowUNet(tiny_config(in_channels=8, stride_embedding=True), dtype=dtype).eval()
    with torch.no_grad():
        eps = render(torch.randn(2, 4, 3, 8, 8), torch.tensor([300, 300]), torch.randn(2, 6, 16),
                     flow=torch.randn(1, 3, 2, 64, 64) * 4)
        eps1 = flow_unet(torch.randn(1, 8, 3, 8, 8), 300, torch.tensor([[8, 16, 24]]), torch.randn(1, 6, 16),
                         control=torch.randn(1, 5, 3, 8, 8))
    assert eps.dtype == dtype and eps1.dtype == dtype
    assert torch.isfinite(eps.float()).all() and torch.isfinite(eps1.float()).all()


def test_controlnet_is_the_unet_down_half_with_a_stem_and_zero_convs():
    """With the UNet's down-half weights, a zero condition stem and identity zero convs, the ControlNet
    residuals are exactly the UNet's own skips and mid-block output."""
    torch.manual_seed(0)
    model = FlowUNet(tiny_config(in_channels=8, stride_embedding=True)).eval().requires_grad_(False)
    net = model.controlnet
    shared = {k: v for k, v in model.state_dict().items() if k.split(".")[0] in
              ("conv_in", "time_embedding", "stride_embedding", "down_blocks", "mid_block")}
    missing, unexpected = net.load_state_dict(shared, strict=False)
    assert not unexpected and all(k.startswith("controlnet_") for k in missing)
    for conv in [*net.controlnet_down_blocks, net.controlnet_mid_block]:
        conv.weight.copy_(torch.eye(conv.weight.shape[0])[:, :, None, None])
        conv.bias.zero_()
    net.controlnet_cond_embedding.layers[2].weight.zero_()
    net.controlnet_cond_embedding.layers[2].bias.zero_()
    sample, text, stride = torch.randn(1, 8, 3, 8, 8), torch.randn(1, 6, 16), torch.tensor([[8, 16, 24]])
    down, mid = net.frame_residuals(sample, torch.tensor(500), stride, text, torch.randn(1, 5, 3, 8, 8))
    temb = model.frame_embedding(torch.tensor(500), stride, 1, 3, sample.device)
    x0 = model.conv_in(sample.transpose(1, 2).reshape(3, 8, 8, 8))
    mid_ref, skips = model.encode(x0, temb, text, 3)
    assert len(down) == len(skips) and all(torch.equal(a, b) for a, b in zip(down, skips))
    assert torch.equal(mid, mid_ref)


def test_compute_dtype_reaches_the_controlnet():
    model = FlowUNet(tiny_config(in_channels=8, stride_embedding=True), device="meta")
    assert model.dtype == model.controlnet.dtype == torch.float32
    model.compute_dtype = torch.bfloat16
    assert model.dtype == model.controlnet.dtype == torch.bfloat16


def test_in_place_activations_leave_inputs_alone_and_keep_autograd():
    """The blocks activate and add residuals in place on fresh outputs only: inputs stay as they were, and
    backward still works (no tensor autograd saved was overwritten)."""
    torch.manual_seed(0)
    model = FlowUNet(tiny_config(in_channels=8, stride_embedding=True))
    render = RenderUNet(tiny_config())
    sample, text, control = torch.randn(1, 8, 3, 8, 8), torch.randn(1, 6, 16), torch.randn(1, 5, 3, 8, 8)
    flow = torch.randn(1, 3, 2, 64, 64) * 4
    inputs = [sample, text, control, flow]
    before = [t.clone() for t in inputs]
    loss = model(sample, torch.tensor(500), torch.tensor([[8, 16, 24]]), text, control=control).square().mean()
    loss = loss + render(sample[:, :4], torch.tensor(300), text, flow=flow).square().mean()
    loss.backward()
    assert all(torch.equal(a, b) for a, b in zip(inputs, before))
    grads = [p.grad for p in [*model.parameters(), *render.parameters()]]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
