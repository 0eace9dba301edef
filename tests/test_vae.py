"""AutoencoderKL: official key names/shapes at SD-1.5 size, old/new attention names, parity numbers."""

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from motion_i2v_core.models.config import VAEConfig
from motion_i2v_core.models.vae import AutoencoderKL, DiagonalGaussian, attention_key_style, rename_attention_keys
from harness.reference import KEYS, PARITY

S1 = PARITY / "models/stage1/StableDiffusion-FlowGen"
S2 = PARITY / "models/stage2/StableDiffusion"


def _official_flow_vae_keys():
    text = (KEYS / "stage1_keys.txt").read_text()
    section = text.split("## [C]")[1].split("\n## ")[0]
    out = []
    for line in section.splitlines()[1:]:
        if "\t" in line:
            key, shape = line.split("\t")
            out.append((key, tuple(int(x) for x in re.findall(r"\d+", shape))))
    return out


def test_flow_vae_keys_match_official_list_on_meta():
    ref = _official_flow_vae_keys()
    assert len(ref) == 248
    vae = AutoencoderKL(VAEConfig.sd15(2), device="meta")
    ours = [(k, tuple(v.shape)) for k, v in vae.state_dict().items()]
    assert ours == ref  # names, shapes and order
    assert sum(v.numel() for v in vae.state_dict().values()) == pytest.approx(83.652e6, rel=1e-4)


def test_image_vae_keys_are_the_flow_vae_keys_with_3_channels():
    ref = dict(_official_flow_vae_keys())
    ref["encoder.conv_in.weight"] = (128, 3, 3, 3)
    ref["decoder.conv_out.weight"] = (3, 128, 3, 3)
    ref["decoder.conv_out.bias"] = (3,)
    vae = AutoencoderKL(VAEConfig.sd15(3), device="meta", dtype=torch.float16)
    assert {k: tuple(v.shape) for k, v in vae.state_dict().items()} == ref
    assert all(v.dtype == torch.float16 for v in vae.state_dict().values())


def _tiny(in_ch=3, seed=0):
    torch.manual_seed(seed)
    cfg = VAEConfig(in_channels=in_ch, out_channels=in_ch, block_out_channels=(8, 16), layers_per_block=1,
                    norm_num_groups=4)
    return AutoencoderKL(cfg).eval()


def test_new_attention_names_are_renamed_and_load():
    vae = _tiny()
    sd = vae.state_dict()
    new = {}
    for k, v in sd.items():
        for old, nw in (("query", "to_q"), ("key", "to_k"), ("value", "to_v"), ("proj_attn", "to_out.0")):
            k = k.replace(f"attentions.0.{old}.", f"attentions.0.{nw}.")
        new[k] = v
    assert attention_key_style(new) == "new" and attention_key_style(sd) == "old"
    renamed, style = rename_attention_keys(new)
    assert style == "new"
    assert list(renamed) == list(sd) and all(torch.equal(renamed[k], sd[k]) for k in sd)
    # 1x1-conv shaped projections (some converters write them as 4-D) are flattened
    conv_style = {k: (v[..., None, None] if k.endswith("to_q.weight") else v) for k, v in new.items()}
    renamed, _ = rename_attention_keys(conv_style)
    AutoencoderKL(vae.config).load_state_dict(renamed, strict=True)
    same, style = rename_attention_keys(sd)
    assert style == "old" and list(same) == list(sd)


def test_posterior_clamp_and_sample():
    moments = torch.cat([torch.zeros(1, 4, 2, 2), torch.full((1, 4, 2, 2), 50.0)], dim=1)
    post = DiagonalGaussian(moments)
    assert torch.all(post.logvar == 20.0)
    assert torch.allclose(post.std, torch.exp(torch.tensor(10.0)))
    noise = torch.randn(1, 4, 2, 2)
    assert torch.equal(post.sample(noise), post.mean + post.std * noise)
    with pytest.raises(ValueError, match="noise shape"):
        post.sample(torch.zeros(1, 4, 3, 3))


def test_shapes_and_input_validation():
    vae = _tiny(in_ch=2)
    with torch.no_grad():
        post = vae.encode(torch.rand(3, 2, 16, 24))
        assert post.mean.shape == (3, 4, 8, 12) and post.std.shape == (3, 4, 8, 12)
        assert vae.decode(post.mean).shape == (3, 2, 16, 24)
    with pytest.raises(ValueError, match="expects"):
        vae.encode(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="multiples of 2"):
        vae.encode(torch.rand(1, 2, 15, 16))


def test_channels_last_input_gives_the_same_posterior():
    vae = _tiny()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        a = vae.encode(x).mean
        b = vae.encode(x.to(memory_format=torch.channels_last)).mean
    assert torch.allclose(a, b, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# parity bundle numbers


def _load_parity_vae(config_dir, weights):
    cfg = json.loads((config_dir / "config.json").read_text())
    vae = AutoencoderKL.from_config(cfg)
    vae.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    return vae.eval()


@pytest.fixture(scope="module")
def parity():
    return {
        "image_vae": _load_parity_vae(S2 / "vae", S2 / "vae/diffusion_pytorch_model.bin"),
        "flow_vae": _load_parity_vae(S1 / "vae", S1 / "vae_flow/diffusion_pytorch_model.bin"),
        "s1_in": load_file(PARITY / "stage1_inputs.safetensors"),
        "s1_out": load_file(PARITY / "stage1_outputs.safetensors"),
        "s2_in": load_file(PARITY / "stage2_inputs.safetensors"),
        "s2_out": load_file(PARITY / "stage2_outputs.safetensors"),
    }


def _rel_err(a, ref):
    return ((a - ref).abs().max() / ref.abs().max()).item()


POSTERIOR_TOL = 2e-5  # parity README section 7: VAE posteriors, max abs / max |ref|


@torch.no_grad()
def test_image_vae_posterior_matches_official(parity):
    post = parity["image_vae"].encode(parity["s1_in"]["image01"][None])
    assert _rel_err(post.mean, parity["s1_in"]["img_posterior_mean"]) < POSTERIOR_TOL
    assert _rel_err(post.std, parity["s1_in"]["img_posterior_std"]) < POSTERIOR_TOL
    latent = post.sample(parity["s1_in"]["img_posterior_eps"]) * 0.18215
    assert _rel_err(latent, parity["s1_in"]["image_latent"]) < POSTERIOR_TOL


@torch.no_grad()
def test_flow_vae_posterior_matches_official(parity):
    flow = parity["s1_in"]["sparse_flow01"]  # (1, 2, 15, H, W) -> (15, 2, H, W)
    frames = flow[0].permute(1, 0, 2, 3)
    post = parity["flow_vae"].encode(frames)
    assert _rel_err(post.mean, parity["s1_in"]["ctrl_posterior_mean"]) < POSTERIOR_TOL
    assert _rel_err(post.std, parity["s1_in"]["ctrl_posterior_std"]) < POSTERIOR_TOL
    latent = post.sample(parity["s1_in"]["ctrl_posterior_eps"])  # control latent: no 0.18215
    ref = parity["s1_in"]["control_latent"][0].permute(1, 0, 2, 3)
    assert _rel_err(latent, ref) < POSTERIOR_TOL


@torch.no_grad()
def test_stage2_vae_posterior_matches_official(parity):
    post = parity["image_vae"].encode(parity["s2_in"]["image_pm1"][None])
    assert _rel_err(post.mean, parity["s2_in"]["img_posterior_mean"]) < POSTERIOR_TOL
    assert _rel_err(post.std, parity["s2_in"]["img_posterior_std"]) < POSTERIOR_TOL


@torch.no_grad()
def test_flow_decode_matches_official(parity):
    z = parity["s1_out"]["final_latents"][0].permute(1, 0, 2, 3) / 0.18215
    decoded = parity["flow_vae"].decode(z).permute(1, 0, 2, 3)[None]
    err = (decoded - parity["s1_out"]["decoded_flow01"]).abs().max().item()
    assert err < 1e-2 * parity["s1_out"]["decoded_flow01"].abs().max().item()


@torch.no_grad()
def test_video_decode_matches_official(parity):
    z = parity["s2_out"]["final_latents"][0].permute(1, 0, 2, 3) / 0.18215
    video = (parity["image_vae"].decode(z) / 2 + 0.5).clamp(0, 1).permute(1, 0, 2, 3)[None]
    assert (video - parity["s2_out"]["video"]).abs().max().item() < 1e-2
