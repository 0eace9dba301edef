"""Loading the official layout (pickles and safetensors), the converter, and every bad-file case."""

import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from motion_i2v_core.loading import (CheckpointError, component_info, convert_official_tree, identify_state_dict,
                                     load_component, load_stage1, load_stage2, read_state_dict, save_component)
from motion_i2v_core.loading.official import overlay_controlnet
from harness.reference import PARITY

MODELS = PARITY / "models"
S1 = MODELS / "stage1/StableDiffusion-FlowGen"
S2 = MODELS / "stage2"
MAX_MSG = 1500


def _short(err: CheckpointError, must_name) -> str:
    msg = str(err)
    assert str(must_name) in msg, msg
    assert len(msg) < MAX_MSG, len(msg)
    return msg


def _rel(a, ref):
    return ((a - ref).abs().max() / ref.abs().max()).item()


@pytest.fixture(scope="module")
def s1():
    return load_stage1(S1, S2 / "StableDiffusion/vae")


@pytest.fixture(scope="module")
def s2():
    return load_stage2(S2)


@pytest.fixture(scope="module")
def io():
    return {n: load_file(PARITY / f"{n}.safetensors")
            for n in ("stage1_inputs", "stage1_outputs", "stage2_inputs", "stage2_outputs")}


# ------------------------------------------------------------------------------------------------
# official layout


def _assert_frozen_eval(*modules):
    for m in modules:
        assert not m.training
        assert all(not p.requires_grad for p in m.parameters())
        assert all(not t.is_meta for t in m.state_dict().values())


def test_stage1_official_layout_loads_and_matches(s1, io):
    _assert_frozen_eval(s1.unet, s1.flow_vae, s1.image_vae)
    assert s1.unet.controlnet is not None
    sd = s1.unet.state_dict()
    assert sd["conv_in.weight"].shape[1] == 8
    assert sd["controlnet.controlnet_cond_embedding.layers.0.weight"].shape == (512, 5, 1, 3, 3)
    # fp16 file values land in fp32 parameters exactly
    raw = torch.load(S1 / "unet/diffusion_pytorch_model.bin", map_location="cpu", weights_only=True)
    assert torch.equal(sd["conv_in.weight"], raw["conv_in.weight"].float())
    ctrl = torch.load(S1 / "controlnet/controlnet.bin", map_location="cpu", weights_only=True)
    k = next(k for k in ctrl if k.endswith("weight") and ctrl[k].ndim == 4)
    assert torch.equal(sd[k], ctrl[k].float())
    i = io["stage1_inputs"]
    with torch.no_grad():
        eps = s1.unet(i["fwd_sample"], i["fwd_timestep"], i["stride"], i["fwd_encoder_hidden_states"],
                      control=i["fwd_control"])
        post = s1.flow_vae.encode(i["sparse_flow01"][0].permute(1, 0, 2, 3))
    assert _rel(eps, io["stage1_outputs"]["fwd_eps"]) < 2e-3
    assert _rel(post.mean, i["ctrl_posterior_mean"]) < 2e-5


def test_stage2_official_layout_loads_every_file_value(s2, io):
    """Each key of the assembled UNet holds exactly the value of the file it comes from (the
    numerical stage-2 forward is checked by the parity runner)."""
    _assert_frozen_eval(s2.unet, s2.vae)
    got = s2.unet.state_dict()
    sd2d = torch.load(S2 / "StableDiffusion/unet/diffusion_pytorch_model.bin", map_location="cpu", weights_only=True)
    mm = torch.load(S2 / "Motion_Module/motion_block.bin", map_location="cpu", weights_only=True)
    assert set(got) == set(sd2d) | set(mm) and not set(sd2d) & set(mm)
    assert all(torch.equal(got[k], v.float()) for src in (sd2d, mm) for k, v in src.items())
    with torch.no_grad():
        post = s2.vae.encode(io["stage2_inputs"]["image_pm1"][None])
    assert _rel(post.mean, io["stage2_inputs"]["img_posterior_mean"]) < 2e-5


def _copy_as_safetensors(dst_models: Path):
    """The bundle's tree with every .bin re-saved as .safetensors (diffusers / HF naming)."""
    shutil.copytree(MODELS, dst_models)
    for p in list(dst_models.rglob("*.bin")):
        sd = torch.load(p, map_location="cpu", weights_only=True)
        if "vae" in p.parent.name:  # newer diffusers writes to_q/to_k/to_v/to_out.0
            sd = {k.replace("attentions.0.query.", "attentions.0.to_q.").replace("attentions.0.key.", "attentions.0.to_k.")
                  .replace("attentions.0.value.", "attentions.0.to_v.").replace("attentions.0.proj_attn.", "attentions.0.to_out.0."): v
                  for k, v in sd.items()}
            assert any(".to_out.0." in k for k in sd)
        save_file({k: v.contiguous() for k, v in sd.items()}, str(p.with_suffix(".safetensors")))
        p.unlink()
    return dst_models


def test_safetensors_layout_loads_identically(tmp_path, s1, s2):
    models = _copy_as_safetensors(tmp_path / "models")
    a1 = load_stage1(models / "stage1/StableDiffusion-FlowGen")  # image VAE dir found by default
    a2 = load_stage2(models / "stage2")
    for ours, ref in ((a1.unet, s1.unet), (a1.flow_vae, s1.flow_vae), (a1.image_vae, s1.image_vae),
                      (a2.unet, s2.unet), (a2.vae, s2.vae)):
        r = ref.state_dict()
        o = ours.state_dict()
        assert list(o) == list(r) and all(torch.equal(o[k], r[k]) for k in r)


def test_pe_buffers_may_be_absent(tmp_path, s2):
    models = tmp_path / "models"
    shutil.copytree(MODELS / "stage2", models / "stage2")
    mm = models / "stage2/Motion_Module/motion_block.bin"
    sd = torch.load(mm, map_location="cpu", weights_only=True)
    assert any(k.endswith("pos_encoder.pe") for k in sd)
    torch.save({k: v for k, v in sd.items() if not k.endswith("pos_encoder.pe")}, mm)
    loaded = load_stage2(models / "stage2")
    ref = s2.unet.state_dict()
    got = loaded.unet.state_dict()
    pe_keys = [k for k in ref if k.endswith("pos_encoder.pe")]
    assert pe_keys and all(torch.allclose(got[k], ref[k], atol=1e-6) for k in pe_keys)


def test_pe_buffer_with_wrong_shape_is_reported(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(MODELS / "stage2", models / "stage2")
    mm = models / "stage2/Motion_Module/motion_block.bin"
    sd = torch.load(mm, map_location="cpu", weights_only=True)
    key = next(k for k in sd if k.endswith("pos_encoder.pe"))
    sd[key] = torch.zeros(1, 24, sd[key].shape[-1])
    torch.save(sd, mm)
    with pytest.raises(CheckpointError) as e:
        load_stage2(models / "stage2")
    msg = _short(e.value, mm)
    assert key in msg and "[1, 24," in msg


def test_unprefixed_controlnet_gets_the_prefix():
    unet = {"conv_in.weight": torch.zeros(1)}
    ctrl = {"conv_in.weight": torch.ones(1), "controlnet_cond_embedding.conv_in.weight": torch.ones(2)}
    merged = overlay_controlnet(unet, ctrl)
    assert torch.equal(merged["conv_in.weight"], torch.zeros(1))  # the UNet's own conv_in is kept
    assert set(merged) == {"conv_in.weight", "controlnet.conv_in.weight",
                           "controlnet.controlnet_cond_embedding.conv_in.weight"}
    prefixed = overlay_controlnet(unet, {"controlnet.conv_in.weight": torch.ones(1)})
    assert set(prefixed) == {"conv_in.weight", "controlnet.conv_in.weight"}


def test_stage2_with_user_unet_and_vae_in_ldm_naming(s2):
    """A user SD-1.5 UNet / VAE (here: the bundle's weights renamed to LDM keys) replace the official ones."""
    try:
        from test_loading_ldm import diffusers_unet_to_ldm, diffusers_vae_to_ldm
    except ImportError:  # tests/ imported as a package
        from .test_loading_ldm import diffusers_unet_to_ldm, diffusers_vae_to_ldm

    sd = torch.load(S2 / "StableDiffusion/unet/diffusion_pytorch_model.bin", map_location="cpu", weights_only=True)
    scaled = {k: v.float() * (1.5 if k == "conv_out.bias" else 1.0) for k, v in sd.items()}
    # ComfyUI hands over its model state dict with the "diffusion_model." prefix
    loaded = load_stage2(S2, unet_state_dict=diffusers_unet_to_ldm(scaled, prefix="diffusion_model."))
    got, ref = loaded.unet.state_dict(), s2.unet.state_dict()
    assert torch.equal(got["conv_out.bias"], ref["conv_out.bias"] * 1.5)
    assert all(torch.equal(got[k], ref[k]) for k in ref if k != "conv_out.bias")
    # a whole single-file checkpoint dict for both: each loader takes its own part
    vae_sd = torch.load(S2 / "StableDiffusion/vae/diffusion_pytorch_model.bin", map_location="cpu", weights_only=True)
    ckpt = {**diffusers_unet_to_ldm(scaled), **diffusers_vae_to_ldm(vae_sd)}
    both = load_stage2(S2, unet_state_dict=ckpt, vae_state_dict=ckpt)
    assert torch.equal(both.unet.state_dict()["conv_out.bias"], ref["conv_out.bias"] * 1.5)
    vae_ref = s2.vae.state_dict()
    assert all(torch.equal(v, vae_ref[k]) for k, v in both.vae.state_dict().items())


# ------------------------------------------------------------------------------------------------
# converter


def test_converter_round_trip_fp32(tmp_path, s1, s2):
    for name, module in (("flow_unet", s1.unet), ("flow_vae", s1.flow_vae), ("image_vae", s1.image_vae),
                         ("render_unet", s2.unet), ("vae", s2.vae)):
        path = save_component(module, tmp_path / f"{name}.safetensors", torch.float32, component=name)
        info = component_info(path)
        assert info["component"] == name and info["format_version"] == "1" and info["dtype"] == "float32"
        back = load_component(path, expected=name)
        assert type(back) is type(module) and back.config == module.config
        ref, got = module.state_dict(), back.state_dict()
        assert list(got) == list(ref)
        assert all(got[k].dtype == ref[k].dtype and torch.equal(got[k], ref[k]) for k in ref), name
        _assert_frozen_eval(back)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temporary files


def test_converter_fp16_and_whole_tree(tmp_path, s1, io):
    written = convert_official_tree(MODELS, tmp_path / "converted", dtype=torch.float16)
    assert set(written) == {"flow_unet", "flow_vae", "image_vae", "render_unet", "vae"}
    raw = load_file(written["flow_unet"])
    pe = [k for k in raw if k.endswith("pos_encoder.pe")]
    assert pe and all(raw[k].dtype == torch.float32 for k in pe)  # exact tables, never rounded
    assert all(v.dtype == torch.float16 for k, v in raw.items() if k not in pe and v.is_floating_point())
    # the bundle weights are fp16 values, so the fp16 files hold them exactly
    got = load_component(written["flow_unet"]).state_dict()
    ref = s1.unet.state_dict()
    assert list(got) == list(ref) and all(torch.equal(got[k], ref[k]) for k in ref)
    half = load_component(written["flow_vae"], dtype=None)
    assert half.decoder.conv_out.weight.dtype == torch.float16
    with pytest.raises(FileExistsError):
        convert_official_tree(MODELS, tmp_path / "converted")
    with pytest.raises(CheckpointError, match="holds the flow_vae, expected render_unet") as e:
        load_component(written["flow_vae"], expected="render_unet")
    _short(e.value, written["flow_vae"])


# ------------------------------------------------------------------------------------------------
# bad files: one short CheckpointError naming the file


def _stage1_copy(tmp_path):
    dst = tmp_path / "models"
    shutil.copytree(MODELS, dst)
    return dst / "stage1/StableDiffusion-FlowGen", dst


def test_missing_file_names_the_expected_path(tmp_path):
    s1dir, root = _stage1_copy(tmp_path)
    (s1dir / "controlnet/controlnet.bin").unlink()
    with pytest.raises(CheckpointError) as e:
        load_stage1(s1dir)
    msg = _short(e.value, "models/motion_i2v/stage1/StableDiffusion-FlowGen/controlnet/controlnet")
    assert "controlnet.safetensors" in msg and str(s1dir / "controlnet") in msg
    (root / "stage2/Motion_Module/motion_block.bin").unlink()
    with pytest.raises(CheckpointError) as e:
        load_stage2(root / "stage2")
    _short(e.value, "models/motion_i2v/stage2/Motion_Module/motion_block")
    (s1dir / "vae/config.json").unlink()
    (s1dir / "controlnet/controlnet.bin").write_bytes((MODELS / "stage1/StableDiffusion-FlowGen/controlnet/controlnet.bin").read_bytes())
    with pytest.raises(CheckpointError) as e:
        load_stage1(s1dir)
    _short(e.value, "stage1/StableDiffusion-FlowGen/vae/config.json")


def test_read_state_dict_bad_files(tmp_path):
    good = read_state_dict(S1 / "vae_flow/diffusion_pytorch_model.bin")
    data = (S1 / "vae_flow/diffusion_pytorch_model.bin").read_bytes()
    cases = {}
    cases["missing.bin"] = None
    cases["empty.bin"] = b""
    cases["truncated.bin"] = data[: len(data) // 2]
    cases["random.bin"] = os.urandom(4096)
    cases["random_pickle_header.bin"] = b"\x80\x02" + os.urandom(4096)
    save_file({k: v.contiguous() for k, v in good.items()}, str(tmp_path / "ok.safetensors"))
    st = (tmp_path / "ok.safetensors").read_bytes()
    cases["truncated.safetensors"] = st[: len(st) // 2]
    cases["random.safetensors"] = os.urandom(4096)
    expect = {"missing.bin": "not found", "empty.bin": "empty", "truncated.bin": "truncated or corrupt",
              "random.bin": "corrupt", "random_pickle_header.bin": "corrupt",
              "truncated.safetensors": "truncated or corrupt", "random.safetensors": "truncated or corrupt"}
    for name, content in cases.items():
        p = tmp_path / name
        if content is not None:
            p.write_bytes(content)
        with pytest.raises(CheckpointError, match=expect[name]) as e:
            read_state_dict(p)
        _short(e.value, p)


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())


def test_pickle_with_disallowed_object_is_refused(tmp_path):
    p = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "cb": _Payload()}, p)
    with pytest.raises(CheckpointError, match="refused") as e:
        read_state_dict(p)
    msg = _short(e.value, p)
    assert "safetensors" in msg and ("os.getcwd" in msg or "posix.getcwd" in msg)


def test_non_dict_and_wrapped_pickles(tmp_path):
    p = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], p)
    with pytest.raises(CheckpointError, match="not a dictionary") as e:
        read_state_dict(p)
    _short(e.value, p)
    p = tmp_path / "wrapped.ckpt"
    torch.save({"module": {"state_dict": {"module.a": torch.ones(2)}}, "epoch": 3}, p)
    assert list(read_state_dict(p)) == ["a"]
    p = tmp_path / "no_tensors.pt"
    torch.save({"epoch": 3}, p)
    with pytest.raises(CheckpointError, match="contains no tensors"):
        read_state_dict(p)


def test_wrong_component_in_slot(tmp_path):
    s1dir, _ = _stage1_copy(tmp_path)
    # the flow VAE file where the UNet is expected
    shutil.copy(s1dir / "vae_flow/diffusion_pytorch_model.bin", s1dir / "unet/diffusion_pytorch_model.bin")
    with pytest.raises(CheckpointError) as e:
        load_stage1(s1dir)
    msg = _short(e.value, s1dir / "unet/diffusion_pytorch_model.bin")
    assert "flow VAE" in msg and "flow UNet" in msg


def test_image_vae_where_flow_vae_is_expected(tmp_path):
    s1dir, root = _stage1_copy(tmp_path)
    shutil.copy(root / "stage2/StableDiffusion/vae/diffusion_pytorch_model.bin",
                s1dir / "vae_flow/diffusion_pytorch_model.bin")
    with pytest.raises(CheckpointError) as e:
        load_stage1(s1dir)
    msg = _short(e.value, s1dir / "vae_flow/diffusion_pytorch_model.bin")
    assert "image VAE" in msg and "encoder.conv_in.weight" in msg


def test_mis_shaped_and_missing_keys_are_summarised(tmp_path):
    s1dir, root = _stage1_copy(tmp_path)
    p = s1dir / "unet/diffusion_pytorch_model.bin"
    sd = torch.load(p, map_location="cpu", weights_only=True)
    key = next(k for k in sd if k.endswith("attn1.to_q.weight"))
    sd[key] = torch.zeros(3, 3, dtype=sd[key].dtype)
    dropped = [k for k in sd if k.startswith("up_blocks.")][:300]
    for k in dropped:
        del sd[k]
    sd["extra.thing.weight"] = torch.zeros(1)
    torch.save(sd, p)
    with pytest.raises(CheckpointError) as e:
        load_stage1(s1dir)
    msg = _short(e.value, p)
    n_missing = sum(1 for k in dropped if not k.endswith("pos_encoder.pe"))  # pe may be absent
    assert f"Missing {n_missing} keys" in msg and "up_blocks (" in msg
    assert "Unexpected 1 keys" in msg and "extra" in msg
    assert key in msg and "[3, 3]" in msg
    assert msg.count("\n") < 25


def test_motion_module_file_of_the_wrong_kind(tmp_path):
    root = tmp_path / "models"
    shutil.copytree(MODELS / "stage2", root / "stage2")
    shutil.copy(root / "stage2/StableDiffusion/unet/diffusion_pytorch_model.bin",
                root / "stage2/Motion_Module/motion_block.bin")
    with pytest.raises(CheckpointError) as e:
        load_stage2(root / "stage2")
    msg = _short(e.value, root / "stage2/Motion_Module/motion_block.bin")
    assert "2-D Stable Diffusion UNet" in msg


def test_config_that_does_not_match_the_weights(tmp_path):
    s1dir, _ = _stage1_copy(tmp_path)
    cfg = (s1dir / "unet/config.json").read_text().replace('"layers_per_block": 2', '"layers_per_block": 1')
    (s1dir / "unet/config.json").write_text(cfg)
    with pytest.raises(CheckpointError) as e:
        load_stage1(s1dir)
    msg = _short(e.value, "unet/config.json")
    assert msg.startswith(str(s1dir / "unet/config.json")), "the config, not the weights, is named first"
    assert "layers_per_block is 1 here, the weights have 2" in msg and "restore it" in msg


@pytest.mark.parametrize("folder, change, expected", [
    ("unet", {"layers_per_block": 5000}, "layers_per_block = 5000 is outside the supported range 1..8"),
    ("unet", {"block_out_channels": "abc"}, "block_out_channels must be a list of integers"),
    ("unet", {"block_out_channels": [32, 64, 32, 4096 * 2]}, "outside the supported range 1..4096"),
    ("unet", {"cross_attention_dim": 64}, "cross_attention_dim is 64 here, the weights have 32"),
    ("unet", {"block_out_channels": [4096, 4096, 4096, 4096], "norm_num_groups": 8},
     "describes a model of at least"),
    ("unet", {"attention_head_dim": [[1], 2]}, "per-level head counts"),
    ("unet", {"down_block_types": 5}, "down_block_types must be a list of block names"),
    ("unet", {"norm_eps": "x"}, "norm_eps must be a number"),
    ("unet", {"flip_sin_to_cos": "yes"}, "flip_sin_to_cos must be true or false"),
    ("vae", {"layers_per_block": 2}, "layers_per_block is 2 here, the weights have 1"),
    ("vae", {"latent_channels": 1000}, "latent_channels = 1000 is outside"),
    ("vae", {"scaling_factor": -1}, "scaling_factor must be a number"),
])
def test_config_mistakes_name_config_json(tmp_path, folder, change, expected):
    import json

    s1dir, _ = _stage1_copy(tmp_path)
    path = s1dir / folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(change)
    path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as e:
        load_stage1(s1dir)
    msg = _short(e.value, path)
    assert msg.startswith(str(path)) and expected in msg, msg


def test_identify_state_dict_kinds():
    assert identify_state_dict(read_state_dict(S1 / "unet/diffusion_pytorch_model.bin"))[0] == "flow_unet"
    assert identify_state_dict(read_state_dict(S1 / "controlnet/controlnet.bin"))[0] == "controlnet"
    assert identify_state_dict(read_state_dict(S2 / "Motion_Module/motion_block.bin"))[0] == "motion_module"
    assert identify_state_dict(read_state_dict(S2 / "StableDiffusion/unet/diffusion_pytorch_model.bin"))[0] == "sd_unet"
    kind, text = identify_state_dict(read_state_dict(S1 / "vae_flow/diffusion_pytorch_model.bin"))
    assert kind == "vae" and "flow VAE" in text and "old attention names" in text
    assert identify_state_dict({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)})[0] == "ldm_checkpoint"
    assert identify_state_dict({"input_blocks.0.0.weight": torch.zeros(1)})[0] == "ldm_unet"
    assert identify_state_dict({"encoder.down.0.block.0.conv1.weight": torch.zeros(1)})[0] == "ldm_vae"


def test_a_file_that_is_no_checkpoint_is_described_not_echoed(tmp_path):
    for name, content, looks in (("pointer.bin", b"version https://git-lfs.github.com/spec/v1\noid sha256:secret42\n", "text file"),
                                 ("odd.bin", b"\x01\x02secret42\x00" * 8, "other binary format")):
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(CheckpointError) as e:
            read_state_dict(p)
        msg = _short(e.value, p)
        assert looks in msg and "secret42" not in msg and "Re-download" in msg
