"""Finding weight sets in model folders (both layouts) and loading them, converted files included."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from motion_i2v_core.loading import (CheckpointError, WeightSet, find_weight_sets, load_converted_stage1,
                                     load_converted_stage2, load_stage1, load_stage2, load_weight_set,
                                     save_component)
from motion_i2v_core.loading.convert import STAGE1_COMPONENTS, STAGE2_COMPONENTS, converted_file
from harness.reference import PARITY_MODELS

MODELS = PARITY_MODELS

OFFICIAL_FILES = (
    "stage1/StableDiffusion-FlowGen/unet/config.json",
    "stage1/StableDiffusion-FlowGen/unet/diffusion_pytorch_model.bin",
    "stage2/StableDiffusion/unet/config.json",
    "stage2/Motion_Module/motion_block.bin",
)


def _touch(base: Path, *rels: str) -> None:
    for rel in rels:
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def _sd_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------------------------------------
# finding sets (empty placeholder files are enough: only names are looked at)


def test_both_layouts_at_the_root_and_in_nested_folders(tmp_path):
    base = tmp_path / "motion_i2v"
    _touch(base, *OFFICIAL_FILES)  # the folder itself is an official tree: "."
    _touch(base, *(f"Motion-I2V/{r}" for r in OFFICIAL_FILES))
    _touch(base, *(f"conv/{c}.safetensors" for c in STAGE1_COMPONENTS + STAGE2_COMPONENTS))
    _touch(base, *(f"mine/fp16/{c}.safetensors" for c in STAGE2_COMPONENTS))  # a nested, stage-2-only set
    _touch(base, "deep/er/Motion-I2V/stage1/StableDiffusion-FlowGen/vae/config.json")  # stage-1-only tree
    _touch(base, "notes.txt", "conv/readme.md", "other/flow_unet.ckpt", "other/unet.safetensors")
    sets = find_weight_sets([str(base)])
    assert list(sets) == sorted(sets) == [".", "Motion-I2V", "conv", "deep/er/Motion-I2V", "mine/fp16"]
    assert sets["."] == WeightSet(".", base, "official", True, True)
    assert sets["Motion-I2V"] == WeightSet("Motion-I2V", base / "Motion-I2V", "official", True, True)
    assert sets["conv"] == WeightSet("conv", base / "conv", "converted", True, True)
    assert sets["mine/fp16"] == WeightSet("mine/fp16", base / "mine/fp16", "converted", False, True)
    assert sets["deep/er/Motion-I2V"].has_stage1 and not sets["deep/er/Motion-I2V"].has_stage2


def test_markers_must_be_whole_folder_names(tmp_path):
    _touch(tmp_path, "xstage1/StableDiffusion-FlowGen/unet/config.json", "stage2/Motion_Modules/motion_block.bin",
           "stage2/StableDiffusion/unet/config.json")  # stage2/ without Motion_Module is not a set
    assert find_weight_sets([tmp_path]) == {}


def test_empty_missing_and_hidden_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    _touch(tmp_path / "hidden", *(f".cache/conv/{c}.safetensors" for c in STAGE2_COMPONENTS))
    assert find_weight_sets([]) == {}
    assert find_weight_sets([tmp_path / "empty", tmp_path / "does-not-exist", tmp_path / "hidden"]) == {}


def test_depth_limit(tmp_path):
    _touch(tmp_path, "a/b/c/d/e/f/vae.safetensors", "a/b/c/d/e/f/g/render_unet.safetensors")
    assert list(find_weight_sets([tmp_path])) == ["a/b/c/d/e/f"]  # files up to 6 folders down
    assert list(find_weight_sets([tmp_path], max_depth=3)) == []


def test_several_folders_merge_by_name_first_folder_wins(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    _touch(first, *(f"Motion-I2V/{r}" for r in OFFICIAL_FILES if r.startswith("stage1")))
    _touch(second, *(f"Motion-I2V/{r}" for r in OFFICIAL_FILES if r.startswith("stage2")))
    _touch(second, *(f"conv/{c}.safetensors" for c in STAGE1_COMPONENTS))
    sets = find_weight_sets([str(first), second])
    assert sets["Motion-I2V"] == WeightSet("Motion-I2V", first / "Motion-I2V", "official", True, True)
    assert sets["conv"].root == second / "conv" and sets["conv"].has_stage1 and not sets["conv"].has_stage2


def test_fingerprint_notices_replaced_files(tmp_path):
    _touch(tmp_path, *(f"conv/{c}.safetensors" for c in STAGE2_COMPONENTS))
    ws = find_weight_sets([tmp_path])["conv"]
    before = ws.fingerprint()
    assert sum(size is not None for _, size, _ in before) == 2 and before == ws.fingerprint()
    (tmp_path / "conv/vae.safetensors").write_bytes(b"1234")
    assert ws.fingerprint() != before


def test_load_weight_set_argument_errors(tmp_path):
    ws = WeightSet("x", tmp_path, "official", True, True)
    with pytest.raises(ValueError, match="stage must be 1 or 2"):
        load_weight_set(ws, 3)
    with pytest.raises(ValueError, match="stage 2 only"):
        load_weight_set(ws, 1, unet_state_dict={})
    with pytest.raises(ValueError, match="layout"):
        load_weight_set(WeightSet("x", tmp_path, "zip", True, True), 1)


# ------------------------------------------------------------------------------------------------
# half-complete sets: the error names the missing file below models/motion_i2v/


def test_half_complete_converted_set_names_the_missing_file(tmp_path):
    _touch(tmp_path, "mine/v1/flow_unet.safetensors", "mine/v1/image_vae.safetensors", "mine/v1/vae.safetensors")
    ws = find_weight_sets([tmp_path])["mine/v1"]
    assert ws.has_stage1 and ws.has_stage2
    for stage, missing in ((1, "flow_vae"), (2, "render_unet")):
        with pytest.raises(CheckpointError) as err:
            load_weight_set(ws, stage)
        msg = str(err.value)
        assert f"models/motion_i2v/mine/v1/{missing}.safetensors" in msg, msg
        assert str(tmp_path / "mine/v1" / f"{missing}.safetensors") in msg and "motion_i2v_core convert" in msg


def test_converted_file_names_the_root_set_plainly(tmp_path):
    with pytest.raises(CheckpointError, match=r"Missing models/motion_i2v/vae\.safetensors "):
        converted_file(tmp_path, "vae", rel=".")
    with pytest.raises(CheckpointError, match=f"models/motion_i2v/{tmp_path.name}/vae.safetensors"):
        converted_file(tmp_path, "vae")  # no rel: the folder's own name
    with pytest.raises(ValueError, match="component"):
        converted_file(tmp_path, "unet")


def test_half_complete_official_tree_names_the_missing_file(tmp_path):
    shutil.copytree(MODELS, tmp_path / "Motion-I2V")
    os.remove(tmp_path / "Motion-I2V/stage1/StableDiffusion-FlowGen/vae_flow/diffusion_pytorch_model.bin")
    shutil.rmtree(tmp_path / "Motion-I2V/stage2/Motion_Module")
    (tmp_path / "Motion-I2V/stage2/Motion_Module").mkdir()
    ws = find_weight_sets([tmp_path])["Motion-I2V"]
    assert ws.has_stage1 and not ws.has_stage2  # an empty Motion_Module folder does not mark stage 2
    with pytest.raises(CheckpointError) as err:
        load_weight_set(ws, 1)
    assert "models/motion_i2v/stage1/StableDiffusion-FlowGen/vae_flow/diffusion_pytorch_model" in str(err.value)
    with pytest.raises(CheckpointError) as err:
        load_weight_set(ws, 2)
    assert "models/motion_i2v/stage2/Motion_Module/motion_block" in str(err.value)


# ------------------------------------------------------------------------------------------------
# converted files from the parity models


@pytest.fixture(scope="module")
def official():
    return load_stage1(MODELS / "stage1/StableDiffusion-FlowGen"), load_stage2(MODELS / "stage2")


@pytest.fixture(scope="module")
def converted(official, tmp_path_factory):
    """models/motion_i2v/ holding the official tree as "." and its fp32 conversion as "conv"."""
    base = tmp_path_factory.mktemp("motion_i2v")
    for part in ("stage1", "stage2"):
        os.symlink(MODELS / part, base / part, target_is_directory=True)
    s1, s2 = official
    for name, module in (("flow_unet", s1.unet), ("flow_vae", s1.flow_vae), ("image_vae", s1.image_vae),
                         ("render_unet", s2.unet), ("vae", s2.vae)):
        save_component(module, base / "conv" / f"{name}.safetensors", torch.float32, component=name)
    return base


def test_converted_stages_equal_the_official_ones(official, converted):
    s1, s2 = official
    c1 = load_converted_stage1(converted / "conv")
    c2 = load_converted_stage2(converted / "conv")
    for ours, ref in ((c1.unet, s1.unet), (c1.flow_vae, s1.flow_vae), (c1.image_vae, s1.image_vae),
                      (c2.unet, s2.unet), (c2.vae, s2.vae)):
        assert type(ours) is type(ref) and not ours.training
        _sd_equal(ours.state_dict(), ref.state_dict())
    assert c1.unet.controlnet is not None


def test_load_weight_set_dispatches_on_the_layout(official, converted):
    sets = find_weight_sets([converted])
    assert {n: ws.layout for n, ws in sets.items()} == {".": "official", "conv": "converted"}
    s1, s2 = official
    for ws in sets.values():
        m1 = load_weight_set(ws, 1, dtype=torch.float16)
        m2 = load_weight_set(ws, 2, dtype=torch.float16)
        assert m1.unet.conv_in.weight.dtype == torch.float16
        _sd_equal(m1.flow_vae.state_dict(), {k: v.half() for k, v in s1.flow_vae.state_dict().items()})
        assert torch.equal(m2.unet.conv_out.weight, s2.unet.conv_out.weight.half())


def _appearance(s2):
    """Changed 2-D UNet weights (no motion modules, like load_ldm_checkpoint gives) and VAE weights."""
    unet_sd = {k: v.clone() for k, v in s2.unet.state_dict().items() if ".motion_modules." not in k}
    unet_sd["conv_out.weight"] = unet_sd["conv_out.weight"] * 2
    vae_sd = {k: v.clone() for k, v in s2.vae.state_dict().items()}
    vae_sd["decoder.conv_out.bias"] = vae_sd["decoder.conv_out.bias"] + 0.05
    return unet_sd, vae_sd


def test_converted_stage2_takes_appearance_weights_like_the_official_loader(official, converted):
    _, s2 = official
    unet_sd, vae_sd = _appearance(s2)
    ours = load_converted_stage2(converted / "conv", unet_state_dict=unet_sd, vae_state_dict=vae_sd)
    ref = load_stage2(MODELS / "stage2", unet_state_dict=unet_sd, vae_state_dict=vae_sd)
    _sd_equal(ours.unet.state_dict(), ref.unet.state_dict())
    _sd_equal(ours.vae.state_dict(), ref.vae.state_dict())
    got = ours.unet.state_dict()
    assert torch.equal(got["conv_out.weight"], s2.unet.conv_out.weight * 2)
    motion = [k for k in got if ".motion_modules." in k]
    assert motion and all(torch.equal(got[k], s2.unet.state_dict()[k]) for k in motion)
    assert torch.equal(ours.vae.decoder.conv_out.bias, s2.vae.decoder.conv_out.bias + 0.05)
    # only the UNet replaced: the converted VAE stays
    only_unet = load_weight_set(find_weight_sets([converted])["conv"], 2, unet_state_dict=unet_sd)
    _sd_equal(only_unet.vae.state_dict(), s2.vae.state_dict())
    assert torch.equal(only_unet.unet.conv_out.weight, s2.unet.conv_out.weight * 2)


def test_unusable_appearance_weights_are_clear_errors(official, converted):
    _, s2 = official
    unet_sd, vae_sd = _appearance(s2)
    wrong = dict(unet_sd, **{"conv_out.weight": torch.zeros(4, 64, 3, 3)})
    with pytest.raises(CheckpointError, match="the SD-1.5 appearance UNet") as err:
        load_converted_stage2(converted / "conv", unet_state_dict=wrong)
    assert "conv_out.weight" in str(err.value)
    missing = {k: v for k, v in vae_sd.items() if not k.startswith("decoder.")}
    with pytest.raises(CheckpointError, match="the checkpoint's VAE"):
        load_converted_stage2(converted / "conv", vae_state_dict=missing)


def test_converted_files_in_the_wrong_slot(converted, tmp_path):
    for c in STAGE2_COMPONENTS:
        os.symlink(converted / "conv" / f"{c}.safetensors", tmp_path / f"{c}.safetensors")
    os.symlink(converted / "conv" / "render_unet.safetensors", tmp_path / "flow_unet.safetensors")
    os.symlink(converted / "conv" / "vae.safetensors", tmp_path / "flow_vae.safetensors")
    os.symlink(converted / "conv" / "image_vae.safetensors", tmp_path / "image_vae.safetensors")
    with pytest.raises(CheckpointError, match="holds the render_unet, expected flow_unet"):
        load_converted_stage1(tmp_path)


def test_fingerprint_survives_dangling_links_and_ignores_sibling_sets(tmp_path):
    unet = tmp_path / "stage1/StableDiffusion-FlowGen/unet"
    _touch(tmp_path, "stage1/StableDiffusion-FlowGen/unet/diffusion_pytorch_model.bin",
           "Other/flow_unet.safetensors")  # another set below the "." set
    os.symlink(tmp_path / "nowhere.bin", unet / "diffusion_pytorch_model.safetensors")
    root = find_weight_sets([tmp_path])["."]
    before = dict((path, size) for path, size, _ in root.fingerprint())
    assert before[str(unet / "diffusion_pytorch_model.safetensors")] is None, "the dangling link counts as missing"
    assert before[str(unet / "diffusion_pytorch_model.bin")] == 0
    (tmp_path / "Other/flow_unet.safetensors").write_bytes(b"changed")
    (unet / "notes.txt").write_bytes(b"not a weight file")
    assert dict((p, s) for p, s, _ in root.fingerprint()) == before, "only the files the loader reads count"
    (unet / "diffusion_pytorch_model.bin").write_bytes(b"1234")
    assert root.fingerprint() != tuple(before.items())


# ------------------------------------------------------------------------------------------------
# bounded searches: links out of a set, loops, entry limits, cached listings


@pytest.fixture
def links():
    """os.symlink that removes its links afterwards (no link to / or loop stays in a temp folder)."""
    made = []

    def link(target, path):
        os.symlink(target, path, target_is_directory=True)
        made.append(Path(path))

    yield link
    for path in made:
        if path.is_symlink():
            path.unlink()


def _count_scandir(monkeypatch):
    import motion_i2v_core.loading.weight_sets as module

    calls = []
    real = os.scandir

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(module.os, "scandir", counting)
    return calls


def test_links_to_the_root_or_a_parent_are_not_followed(tmp_path, links, monkeypatch):
    base = tmp_path / "motion_i2v"
    _touch(base, *(f"Motion-I2V/{r}" for r in OFFICIAL_FILES))
    links("/", base / "root")                                    # directly in the model folder
    links("/", base / "Motion-I2V/stage1/StableDiffusion-FlowGen/root")  # inside a set
    links(base, base / "Motion-I2V/stage2/loop")                 # a parent: a loop
    links(tmp_path, base / "Motion-I2V/up")
    calls = _count_scandir(monkeypatch)
    sets = find_weight_sets([base])
    assert list(sets) == ["Motion-I2V"] and sets["Motion-I2V"].has_stage1 and sets["Motion-I2V"].has_stage2
    assert len(calls) < 20, calls  # the set's own folders only
    calls.clear()
    fingerprint = sets["Motion-I2V"].fingerprint()
    assert calls == [] and all(p.startswith(str(base / "Motion-I2V")) for p, _, _ in fingerprint)


def test_links_leave_neither_the_set_nor_the_folder_they_were_found_in(tmp_path, links):
    outside = tmp_path / "elsewhere"
    _touch(outside, *(f"mounted/{r}" for r in OFFICIAL_FILES), "stray/stage1/StableDiffusion-FlowGen/unet/config.json")
    base = tmp_path / "motion_i2v"
    _touch(base, "mine/vae.safetensors")
    links(outside / "mounted", base / "Motion-I2V")         # a link directly in the folder mounts a set
    links(outside / "stray", base / "mine" / "more")        # deeper: it would leave the folder
    links(outside, base / "Motion-I2V" / "stage2" / "out")  # leaves the mounted set's real folder
    links(base / "mine", base / "Motion-I2V" / "again")     # not inside the mounted set either
    assert sorted(find_weight_sets([base])) == ["Motion-I2V", "mine"]


def test_symlink_cycles_and_many_entries_end_the_walk(tmp_path, links):
    base = tmp_path / "motion_i2v"
    _touch(base, "a/conv/vae.safetensors")
    deep = base / "a"
    for i in range(3):  # a -> a/b0 -> a/b0/b1 -> ... each also linking back up
        links(deep, deep / f"back{i}")
        deep = deep / f"b{i}"
        deep.mkdir()
    assert list(find_weight_sets([base])) == ["a/conv"]
    many = base / "many"
    many.mkdir()
    for i in range(300):
        (many / f"f{i:03d}.txt").write_bytes(b"")
    _touch(base, "zz/vae.safetensors")
    assert "zz" in find_weight_sets([base])
    limited = find_weight_sets([base], max_entries=50)
    assert len(limited) <= 2  # stopped early, whatever it had found by then


def test_listing_is_cached_until_a_folder_changes(tmp_path, monkeypatch):
    base = tmp_path / "motion_i2v"
    _touch(base, *(f"Motion-I2V/{r}" for r in OFFICIAL_FILES), "conv/vae.safetensors")
    old = 1_000_000_000  # 2001: older than the racy window
    for folder, dirs, _ in os.walk(base):
        os.utime(folder, (old, old))
    first = find_weight_sets([base])
    calls = _count_scandir(monkeypatch)
    assert find_weight_sets([base]) == first and calls == []  # answered from the cache: no folder read
    _touch(base, "new/render_unet.safetensors")  # changes the model folder's modification time
    again = find_weight_sets([base])
    assert "new" in again and calls, "a changed folder is read again"


def test_missing_files_name_what_a_stage_lacks(tmp_path):
    shutil.copytree(MODELS, tmp_path / "Motion-I2V")
    os.remove(tmp_path / "Motion-I2V/stage2/Motion_Module/motion_block.bin")
    ws = find_weight_sets([tmp_path])["Motion-I2V"]
    assert ws.has_stage1 and not ws.has_stage2
    assert ws.missing_files(1) == []
    assert ws.missing_files(2) == ["stage2/Motion_Module/motion_block.bin (or .safetensors)"]
    assert ws.missing_message(1) == ""
    assert ws.missing_message(2).startswith("missing stage2/Motion_Module/motion_block.bin (or .safetensors) in ")
    assert "huggingface.co/wangfuyun/Motion-I2V" in ws.missing_message(2)
    _touch(tmp_path, "conv/flow_unet.safetensors")
    assert find_weight_sets([tmp_path])["conv"].missing_files(1) == ["flow_vae.safetensors", "image_vae.safetensors"]
