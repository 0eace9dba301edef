"""Weight sets: the Motion-I2V weights found under a list of model folders, and loading one stage of a set.

Two layouts are recognised under each folder (for ComfyUI: every `models/motion_i2v` folder):
- the official Hugging Face tree (wangfuyun/Motion-I2V): `<set>/stage1/StableDiffusion-FlowGen/...`
  and `<set>/stage2/{StableDiffusion,Motion_Module}/...`, `<set>` being the folder itself or a subfolder;
- converted single files (`python -m motion_i2v_core convert`): `<set>/flow_unet.safetensors`,
  `flow_vae`, `image_vae`, `render_unet`, `vae` (`.safetensors`), config embedded.
A set is named by its folder relative to the model folder ("." = the model folder itself).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import torch

from motion_i2v_core.loading.convert import STAGE1_COMPONENTS, STAGE2_COMPONENTS, load_converted_stage1, load_converted_stage2
from motion_i2v_core.loading.official import (PLAIN_LAYERS, STAGE1_SUBDIR, STAGE2_SUBDIR, LayerOptions, Stage1Models,
                                              Stage2Models, load_stage1, load_stage2)

STAGE1_MARKER = STAGE1_SUBDIR                      # "stage1/StableDiffusion-FlowGen"
STAGE2_MARKER = f"{STAGE2_SUBDIR}/Motion_Module"   # "stage2/Motion_Module"
LAYOUTS = ("official", "converted")


@dataclass(frozen=True)
class WeightSet:
    name: str  # relative to its model folder, "/"-separated; "." = the folder itself
    root: Path
    layout: str  # "official" | "converted"
    has_stage1: bool
    has_stage2: bool

    def fingerprint(self) -> tuple:
        """(path, size, mtime) of the files this set loads from, so that replaced files are noticed.

        Only the set's own files count (not sibling sets below a "." set); an entry that cannot be
        read, such as a dangling symlink, counts as missing instead of failing.
        """
        if self.layout == "converted":
            paths = [str(self.root / f"{c}.safetensors") for c in STAGE1_COMPONENTS + STAGE2_COMPONENTS]
        else:
            paths = []
            for sub in ("stage1", "stage2"):
                for dirpath, dirnames, filenames in os.walk(self.root / sub, followlinks=True):
                    dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                    paths += [os.path.join(dirpath, f) for f in filenames]
        items = []
        for path in sorted(paths):
            try:
                st = os.stat(path)
                items.append((path, st.st_size, st.st_mtime_ns))
            except OSError:
                items.append((path, None, None))
        return tuple(items)


def _set_name(rel_dir: str) -> str:
    return rel_dir.replace(os.sep, "/").strip("/") or "."


def find_weight_sets(folders: Iterable[str | os.PathLike], max_depth: int = 6) -> dict[str, WeightSet]:
    """Every official tree or converted folder under `folders`, by name (sorted).

    A file below `<set>/stage1/StableDiffusion-FlowGen/` or `<set>/stage2/Motion_Module/` marks an
    official set with that stage; a `<component>.safetensors` file marks a converted set with the
    component's stage. Sets of the same name in several folders are merged into the first folder's.
    Folders that do not exist are skipped; hidden folders are not searched.
    """
    found: dict[str, dict] = {}
    for base in folders:
        base = os.fspath(base)
        for rel in _walk_files(base, max_depth):
            rel_posix = rel.replace(os.sep, "/")
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
    return {
        name: WeightSet(name, e["root"], e["layout"], bool(e.get(1)), bool(e.get(2)))
        for name, e in sorted(found.items())
    }


def _walk_files(base: str, max_depth: int = 6) -> Iterator[str]:
    """Relative paths of the files under `base` (symlinks followed, hidden folders skipped)."""
    if not os.path.isdir(base):
        return
    base_depth = base.rstrip(os.sep).count(os.sep)
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if dirpath.count(os.sep) - base_depth >= max_depth:
            dirnames[:] = []
        for f in filenames:
            yield os.path.relpath(os.path.join(dirpath, f), base)


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
