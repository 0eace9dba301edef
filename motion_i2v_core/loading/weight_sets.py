"""Weight sets: the Motion-I2V weights found under a list of model folders, and loading one stage of a set.

Two layouts are recognised under each folder (for ComfyUI: every `models/motion_i2v` folder):
- the official Hugging Face tree (wangfuyun/Motion-I2V): `<set>/stage1/StableDiffusion-FlowGen/...`
  and `<set>/stage2/{StableDiffusion,Motion_Module}/...`, `<set>` being the folder itself or a subfolder;
- converted single files (`python -m motion_i2v_core convert`): `<set>/flow_unet.safetensors`,
  `flow_vae`, `image_vae`, `render_unet`, `vae` (`.safetensors`), config embedded.
A set is named by its folder relative to the model folder ("." = the model folder itself).

The search is bounded whatever the folders hold: at most MAX_DEPTH folders down and MAX_ENTRIES
directory entries per model folder; a folder link is followed only if it stays inside the real
folder it was found in (a link directly in the model folder mounts a set from elsewhere and sets
the bounds below it), never to a folder already seen or to an ancestor of the model folder (no
loop). Listings are cached and reused while no folder that was read has changed (modification
times). A set's fingerprint stats the files its loader reads, by name: no walk at all.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import torch

from motion_i2v_core.loading.convert import STAGE1_COMPONENTS, STAGE2_COMPONENTS, load_converted_stage1, load_converted_stage2
from motion_i2v_core.loading.files import PICKLE_SUFFIXES, find_weight_file
from motion_i2v_core.loading.official import (DIFFUSERS_WEIGHTS, IMAGE_VAE_SUBDIR, PLAIN_LAYERS, STAGE1_SUBDIR,
                                              STAGE2_SUBDIR, LayerOptions, Stage1Models, Stage2Models, load_stage1,
                                              load_stage2)

log = logging.getLogger(__name__)

STAGE1_MARKER = STAGE1_SUBDIR                      # "stage1/StableDiffusion-FlowGen"
STAGE2_MARKER = f"{STAGE2_SUBDIR}/Motion_Module"   # "stage2/Motion_Module"
LAYOUTS = ("official", "converted")
MAX_DEPTH = 6
MAX_ENTRIES = 5_000  # a models/motion_i2v with several sets has a few hundred
# A folder changed this recently may change again within its timestamp's granularity: list it again.
_RACY_NS = 2_000_000_000

# The official files each stage reads: (folder below the set, weight-file stems or None for config.json).
_SD2 = f"{STAGE2_SUBDIR}/StableDiffusion"
OFFICIAL_FILES = {
    1: ((f"{STAGE1_SUBDIR}/unet", None), (f"{STAGE1_SUBDIR}/unet", DIFFUSERS_WEIGHTS),
        (f"{STAGE1_SUBDIR}/controlnet", ("controlnet",)), (f"{STAGE1_SUBDIR}/vae", None),
        (f"{STAGE1_SUBDIR}/vae_flow", DIFFUSERS_WEIGHTS), (IMAGE_VAE_SUBDIR, None), (IMAGE_VAE_SUBDIR, DIFFUSERS_WEIGHTS)),
    2: ((f"{_SD2}/unet", None), (f"{_SD2}/unet", DIFFUSERS_WEIGHTS), (f"{_SD2}/vae", None),
        (f"{_SD2}/vae", DIFFUSERS_WEIGHTS), (STAGE2_MARKER, ("motion_block",))),
}
_WEIGHT_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES  # the order find_weight_file looks in


@dataclass(frozen=True)
class WeightSet:
    name: str  # relative to its model folder, "/"-separated; "." = the folder itself
    root: Path
    layout: str  # "official" | "converted"
    has_stage1: bool
    has_stage2: bool

    def fingerprint(self) -> tuple:
        """(path, size, mtime) of every file this set may load from, so that replaced files are noticed.

        The candidate files are named by the layout (no folder is walked); one that is absent or
        cannot be read, such as a dangling symlink, counts as missing (None, None).
        """
        if self.layout == "converted":
            paths = [self.root / f"{c}.safetensors" for c in STAGE1_COMPONENTS + STAGE2_COMPONENTS]
        else:
            paths = []
            for folder, stems in OFFICIAL_FILES[1] + OFFICIAL_FILES[2]:
                names = ["config.json"] if stems is None else [s + x for s in stems for x in _WEIGHT_SUFFIXES]
                paths += [self.root / folder / n for n in names]
        items = []
        for path in sorted(set(map(str, paths))):
            try:
                st = os.stat(path)
                items.append((path, st.st_size, st.st_mtime_ns))
            except OSError:
                items.append((path, None, None))
        return tuple(items)

    def missing_files(self, stage: int) -> list[str]:
        """The files of `stage` that are not there, relative to the set ("stage2/Motion_Module/motion_block.bin")."""
        if self.layout == "converted":
            names = STAGE1_COMPONENTS if stage == 1 else STAGE2_COMPONENTS
            return [f"{c}.safetensors" for c in names if not (self.root / f"{c}.safetensors").is_file()]
        missing = []
        for folder, stems in OFFICIAL_FILES[stage]:
            if stems is None:
                if not (self.root / folder / "config.json").is_file():
                    missing.append(f"{folder}/config.json")
            elif find_weight_file(self.root / folder, stems) is None:
                missing.append(f"{folder}/{stems[0]}.bin (or .safetensors)")
        return missing

    def missing_message(self, stage: int) -> str:
        """What `stage` lacks and how to get it, in one sentence; "" when nothing is missing."""
        missing = self.missing_files(stage)
        if not missing:
            return ""
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        fix = ("convert them with `python -m motion_i2v_core convert`" if self.layout == "converted" else
               "download them from huggingface.co/wangfuyun/Motion-I2V (the same paths below its models/ folder)")
        return f"missing {shown} in {self.root}; {fix}."


def _set_name(rel_dir: str) -> str:
    return rel_dir.replace(os.sep, "/").strip("/") or "."


def find_weight_sets(folders: Iterable[str | os.PathLike], max_depth: int = MAX_DEPTH,
                     max_entries: int = MAX_ENTRIES) -> dict[str, WeightSet]:
    """Every official tree or converted folder under `folders`, by name (sorted).

    A file below `<set>/stage1/StableDiffusion-FlowGen/` or `<set>/stage2/Motion_Module/` marks an
    official set with that stage; a `<component>.safetensors` file marks a converted set with the
    component's stage. Sets of the same name in several folders are merged into the first folder's.
    Folders that do not exist are skipped; hidden folders are not searched. The walk is bounded
    (see the module docstring) and its result cached until a folder it read changes.
    """
    folders = tuple(os.fspath(f) for f in folders)
    key = (folders, max_depth, max_entries)
    cached = _LISTINGS.get(key)
    if cached is not None and _still_valid(*cached[:2]):
        return dict(cached[2])
    started = time.time_ns()
    found: dict[str, dict] = {}
    read: list[tuple[str, int | None]] = []
    for base in folders:
        files, dirs = _walk_files(base, max_depth, max_entries)
        read += dirs
        for rel_posix in files:
            for marker, stage in ((STAGE1_MARKER + "/", 1), (STAGE2_MARKER + "/", 2)):
                at = rel_posix.find(marker)
                if at == 0 or (at > 0 and rel_posix[at - 1] == "/"):
                    name = _set_name(rel_posix[:at])
                    entry = found.setdefault(name, {"root": Path(base) / rel_posix[:at], "layout": "official"})
                    entry[stage] = True
            folder, _, filename = rel_posix.rpartition("/")
            stem, ext = os.path.splitext(filename)
            if ext == ".safetensors" and stem in STAGE1_COMPONENTS + STAGE2_COMPONENTS:
                name = _set_name(folder)
                entry = found.setdefault(name, {"root": Path(base) / folder, "layout": "converted"})
                if entry["layout"] == "converted":
                    entry[1 if stem in STAGE1_COMPONENTS else 2] = True
    sets = {
        name: WeightSet(name, e["root"], e["layout"], bool(e.get(1)), bool(e.get(2)))
        for name, e in sorted(found.items())
    }
    _LISTINGS[key] = (started, tuple(read), sets)
    return dict(sets)


# (folders, limits) -> (when the walk started, (folder, mtime) of every folder read, the sets)
_LISTINGS: dict[tuple, tuple[int, tuple, dict]] = {}


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _still_valid(started: int, read: tuple) -> bool:
    for path, mtime in read:
        if _mtime(path) != mtime or (mtime is not None and mtime > started - _RACY_NS):
            return False
    return True


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _walk_files(base: str, max_depth: int = MAX_DEPTH, max_entries: int = MAX_ENTRIES) -> tuple[list[str], list]:
    """("/"-separated relative paths of the files under `base`, (folder, mtime) of every folder read).

    Folder links are followed within the real folder they were found in (a link directly in
    `base` sets the bounds below it), never to an ancestor of `base` or to a folder already seen;
    hidden folders are skipped; at most `max_depth` folders down and `max_entries` entries.
    """
    base_real = os.path.realpath(base)
    try:
        st = os.stat(base)
    except OSError:
        return [], [(base, None)]
    files: list[str] = []
    read: list = []
    seen = {(st.st_dev, st.st_ino)}
    stack = [(base, "", 0, base_real)]  # folder, its relative path, depth, the real folder it must stay in
    entries = 0
    while stack:
        path, rel, depth, bound = stack.pop()
        try:
            st = os.stat(path)
            read.append((path, st.st_mtime_ns))
            dev = st.st_dev
            with os.scandir(path) as listing:
                children = []
                for entry in listing:
                    entries += 1
                    if entries > max_entries:
                        log.warning("Motion-I2V: stopped searching %s for weights after %d entries (the limit); "
                                    "keep only weight folders there", base, max_entries)
                        return files, read
                    children.append(entry)
        except OSError:
            continue
        for entry in children:
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if not is_dir:
                files.append(child_rel)
                continue
            if entry.name.startswith(".") or depth >= max_depth:
                continue
            child_bound = bound
            if entry.is_symlink():
                real = os.path.realpath(entry.path)
                if _inside(base_real, real):
                    continue  # a link to base or one of its ancestors: a loop
                if depth == 0:
                    child_bound = real  # a set mounted from elsewhere
                elif not _inside(real, bound):
                    continue
                try:
                    cst = os.stat(entry.path)
                except OSError:
                    continue
                identity = (cst.st_dev, cst.st_ino)
            else:
                identity = (dev, entry.inode())  # a plain folder: no extra stat
            if identity in seen:
                continue
            seen.add(identity)
            stack.append((entry.path, child_rel, depth + 1, child_bound))
    return files, read


def load_weight_set(weight_set: WeightSet, stage: int, dtype: torch.dtype = torch.float32, device="cpu",
                    unet_state_dict: Mapping[str, torch.Tensor] | None = None,
                    vae_state_dict: Mapping[str, torch.Tensor] | None = None,
                    dtypes: Mapping[str, torch.dtype] | None = None,
                    layers: LayerOptions | None = None) -> Stage1Models | Stage2Models:
    """Build one stage of a weight set, whatever its layout (see load_stage1/2, load_converted_stage1/2).

    `unet_state_dict` / `vae_state_dict` (stage 2 only) replace the SD-1.5 appearance weights of the
    stage-2 UNet (its 2-D part) and VAE. `dtypes` sets the dtype of single components by name
    (convert.COMPONENTS: "flow_unet", "flow_vae", "image_vae", "render_unet", "vae"), `dtype` the rest;
    `layers` the layer namespace and the UNets' compute dtype (official.LayerOptions).
    """
    layers = layers or PLAIN_LAYERS
    if weight_set.layout not in LAYOUTS:
        raise ValueError(f"unknown weight-set layout {weight_set.layout!r}; expected one of {LAYOUTS}")
    if stage == 1:
        if unet_state_dict is not None or vae_state_dict is not None:
            raise ValueError("appearance weights (unet_state_dict / vae_state_dict) are for stage 2 only")
        if weight_set.layout == "official":
            return load_stage1(weight_set.root / STAGE1_MARKER, dtype=dtype, device=device, dtypes=dtypes,
                               layers=layers)
        return load_converted_stage1(weight_set.root, dtype=dtype, device=device, rel=weight_set.name,
                                     dtypes=dtypes, layers=layers)
    if stage == 2:
        if weight_set.layout == "official":
            return load_stage2(weight_set.root / STAGE2_SUBDIR, dtype=dtype, device=device,
                               unet_state_dict=unet_state_dict, vae_state_dict=vae_state_dict, dtypes=dtypes,
                               layers=layers)
        return load_converted_stage2(weight_set.root, dtype=dtype, device=device, unet_state_dict=unet_state_dict,
                                     vae_state_dict=vae_state_dict, rel=weight_set.name, dtypes=dtypes,
                                     layers=layers)
    raise ValueError(f"stage must be 1 or 2, got {stage!r}")
