"""Load Motion-I2V: find the weights under models/motion_i2v/, build the modules, hand them to ComfyUI.

The weight sets under each `motion_i2v` model folder (remappable in extra_model_paths.yaml), official
tree or converted files, are found and built by motion_i2v_core.loading.weight_sets; each set is one
entry of the `weights` list. This node adds the ComfyUI parts: the folder registration, the appearance
weights from a connected MODEL or a checkpoint file, caching, and ModelPatchers, so that ComfyUI's model
management moves the modules to the GPU when a node needs them and offloads them when memory runs short.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import weakref
from dataclasses import dataclass

import torch

import comfy.model_management as mm
import folder_paths
from comfy_api.latest import io

from motion_i2v_core.loading import CheckpointError, load_ldm_checkpoint
from motion_i2v_core.loading.convert import STAGE1_COMPONENTS
from motion_i2v_core.loading.ldm import convert_ldm_unet_state_dict
from motion_i2v_core.loading.official import IMAGE_VAE_SUBDIR
from motion_i2v_core.loading.weight_sets import WeightSet, find_weight_sets, load_weight_set

from .appearance import model_fingerprint, read_patched_unet
from .comfy_layers import comfy_layers
from .motion_model import (STAGE1_PARTS, STAGE2_PARTS, WEIGHTS_HELP, MotionI2VModel, make_patcher,
                           stage1_modules, stage2_modules)
from .types import CATEGORY, ModelType

log = logging.getLogger("motion_i2v")

FOLDER = "motion_i2v"
NO_CHECKPOINT = "(none)"
APPEARANCE_HELP = (
    "Stage 2 takes the UNet (and VAE) of an SD-1.5 model with the same sizes as its own "
    "(for the official weights: any SD-1.5 checkpoint, 768-wide text). Connect an SD-1.5 MODEL or pick an "
    f"SD-1.5 checkpoint, or disconnect appearance_model and set appearance_checkpoint to {NO_CHECKPOINT} "
    "to keep the official stage-2 weights."
)
PRECISIONS = ("auto", "fp16", "bf16", "fp32", "fp8_e4m3fn")
PRECISION_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32,
                    "fp8_e4m3fn": torch.float8_e4m3fn}
VAE_PARTS = ("flow_vae", "image_vae", "vae")
def register_model_folder() -> None:
    """Register models/motion_i2v with the weight-file extensions, keeping paths from extra_model_paths.yaml."""
    default = os.path.join(folder_paths.models_dir, FOLDER)
    extensions = set(folder_paths.supported_pt_extensions) | {".safetensors", ".bin", ".pt", ".ckpt", ".pth", ".json"}
    if FOLDER in folder_paths.folder_names_and_paths:
        paths, known = folder_paths.folder_names_and_paths[FOLDER]
        if default not in paths:
            paths.append(default)
        folder_paths.folder_names_and_paths[FOLDER] = (paths, set(known) | extensions)
    else:
        folder_paths.folder_names_and_paths[FOLDER] = ([default], extensions)


register_model_folder()


def weight_sets() -> dict[str, WeightSet]:
    """Every weight set under the registered motion_i2v folders, by name."""
    return find_weight_sets(folder_paths.get_folder_paths(FOLDER))


# ------------------------------------------------------------------------------------------------
# precision


def _half_compute_dtype(device) -> torch.dtype:
    if device.type == "cpu":
        return torch.float32
    if mm.should_use_fp16(device):
        return torch.float16
    if mm.should_use_bf16(device):
        return torch.bfloat16
    return torch.float32


def resolve_dtype(precision: str) -> torch.dtype:
    """The UNet weight dtype for a precision choice; auto = fp32 on the CPU, fp16/bf16 where the GPU supports it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = mm.get_torch_device()
    if precision == "auto":
        return _half_compute_dtype(device)
    if device.type == "cpu" and precision in ("fp16", "bf16"):
        # It runs, but the CPU has no fast half-precision kernels: about 3x slower than fp32.
        log.warning("Motion-I2V: %s on the CPU is several times slower than fp32; choose precision "
                    "'auto' or 'fp32' unless you are checking half-precision results", precision)
    return PRECISION_DTYPES[precision]


def resolve_compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The UNets' compute dtype for their weight dtype: the same, except fp8 weights, which compute in
    fp16 or bf16 (whichever the GPU supports; fp32 on the CPU)."""
    return _half_compute_dtype(mm.get_torch_device()) if dtype == torch.float8_e4m3fn else dtype


def component_dtypes(precision: str) -> dict[str, torch.dtype]:
    """The VAEs' dtypes. Image VAE: ComfyUI's own VAE choice (bf16 where supported, else fp32; fp16 only
    with --fp16-vae), fp32 with precision fp32: fp16 overflows in the SD-1.5 VAE decoder. Flow VAE:
    fp32, since bf16 would round a 512-pixel displacement to about 2 pixels."""
    image = torch.float32 if precision == "fp32" else mm.vae_dtype(mm.vae_device(), [torch.bfloat16, torch.float32])
    return {"flow_vae": torch.float32, "image_vae": image, "vae": image}


# ------------------------------------------------------------------------------------------------
# loading, cached

# Loads are cached: re-running a workflow (or changing only the seed) must not rebuild 2 GB of modules,
# and a new appearance (another LoRA strength) rebuilds stage 2 only. One weight set is kept at a
# time, so switching sets frees the old modules before the new ones are built.
_CACHE: dict[str, "_CachedSet"] = {}
# What the loader did, for the model-management tests: builds per stage and appearance MODEL reads.
STATS = {"stage1_builds": 0, "stage2_builds": 0, "appearance_reads": 0, "shared_image_vae": 0}
_BUILT: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


@dataclass
class _CachedSet:
    key1: tuple
    key2: tuple
    handle: MotionI2VModel


def alive_weight_sets() -> list[str]:
    """Names of the weight sets whose modules are still in memory (after a garbage collection)."""
    gc.collect()
    return sorted(set(_BUILT.values()))


def _stage_files(ws: WeightSet) -> tuple[tuple, tuple]:
    """The fingerprint items of the files each stage loads (stage 1 also reads the image VAE)."""
    items = ws.fingerprint()
    if ws.layout == "converted":
        names1 = tuple(f"{c}.safetensors" for c in STAGE1_COMPONENTS)
        return (tuple(i for i in items if os.path.basename(i[0]) in names1),
                tuple(i for i in items if os.path.basename(i[0]) not in names1))
    stage2 = str(ws.root / "stage2")
    image_vae = str(ws.root / IMAGE_VAE_SUBDIR)
    return (tuple(i for i in items if not i[0].startswith(stage2) or i[0].startswith(image_vae)),
            tuple(i for i in items if i[0].startswith(stage2)))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa)


def _place(modules: dict) -> None:
    """Tell the core where each module computes: ComfyUI may keep part of its weights on the CPU."""
    for part, module in modules.items():
        module.compute_device = mm.vae_device() if part in VAE_PARTS else mm.get_torch_device()


def _appearance(appearance_model, appearance_checkpoint: str):
    """(description, cache key, reader) of the stage-2 appearance source; reader() -> (unet_sd, vae_sd)."""
    if appearance_model is not None:
        def read():
            STATS["appearance_reads"] += 1
            sd = read_patched_unet(appearance_model)
            return convert_ldm_unet_state_dict(sd, prefix="", file="the connected MODEL"), None
        return ("The MODEL connected to appearance_model",
                ("model", weakref.ref(appearance_model.model), model_fingerprint(appearance_model)), read)
    if appearance_checkpoint and appearance_checkpoint != NO_CHECKPOINT:
        what = f"The appearance_checkpoint '{appearance_checkpoint}'"
        try:
            path = folder_paths.get_full_path_or_raise("checkpoints", appearance_checkpoint)
            st = os.stat(path)
        except (FileNotFoundError, OSError) as e:
            raise CheckpointError(f"{what} cannot be used: {e}\n{APPEARANCE_HELP}") from None

        def read():
            unet_sd, vae_sd = load_ldm_checkpoint(path)
            if unet_sd is None:
                raise CheckpointError(f"{path} holds a VAE but no UNet (model.diffusion_model.*)")
            return unet_sd, vae_sd
        return what, ("checkpoint", path, st.st_size, st.st_mtime_ns), read
    return "", ("official",), None


def _same_key(a: tuple, b: tuple) -> bool:
    """Cache keys compare equal, a weak reference to the MODEL's base model by identity."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, weakref.ref) or isinstance(y, weakref.ref):
            if not (isinstance(x, weakref.ref) and isinstance(y, weakref.ref)) or x() is None or x() is not y():
                return False
        elif isinstance(x, tuple) and isinstance(y, tuple):
            if not _same_key(x, y):
                return False
        elif x != y:
            return False
    return True


def _build_stage2(ws: WeightSet, weights: str, dtype, dtypes, layers, what: str, read, stage1):
    unet_sd = vae_sd = None
    try:
        if read is not None:
            unet_sd, vae_sd = read()
    except (CheckpointError, FileNotFoundError) as e:
        raise CheckpointError(f"{what} cannot be used: {e}\n{APPEARANCE_HELP}") from None
    try:
        stage2 = load_weight_set(ws, 2, dtype, unet_state_dict=unet_sd, vae_state_dict=vae_sd, dtypes=dtypes,
                                 layers=layers)
    except CheckpointError as e:
        if not what:
            raise
        # Says "with", not "because of": the failing file may also be one of the set's own.
        raise CheckpointError(f"Stage 2 of '{weights}' cannot be built with {what[0].lower()}{what[1:]}: "
                              f"{e}\n{APPEARANCE_HELP}") from None
    STATS["stage2_builds"] += 1
    if stage1 is not None and _same_weights(stage2.vae, stage1.image_vae):
        stage2.vae = stage1.image_vae  # one image VAE (and one patcher) for both stages
        STATS["shared_image_vae"] += 1
    return stage2


def load_motion_i2v(weights: str, precision: str, appearance_model=None, appearance_checkpoint: str = NO_CHECKPOINT):
    sets = weight_sets()
    ws = sets.get(weights)
    if ws is None:
        folders = ", ".join(folder_paths.get_folder_paths(FOLDER))
        available = ", ".join(sets) or "none"
        raise ValueError(f"No Motion-I2V weights named '{weights}' in {folders} (found: {available}).\n{WEIGHTS_HELP}")
    dtype = resolve_dtype(precision)
    dtypes = component_dtypes(precision)
    layers = comfy_layers(dtype, resolve_compute_dtype(dtype))
    what, appearance_key, read = _appearance(appearance_model, appearance_checkpoint)
    files1, files2 = _stage_files(ws)
    base = (weights, str(ws.root), ws.layout, str(dtype), tuple(sorted((k, str(v)) for k, v in dtypes.items())))
    key1, key2 = (base, files1), (base, files2, appearance_key)

    cached = _CACHE.get(weights)
    if cached is not None and cached.key1 == key1 and _same_key(cached.key2, key2):
        return cached.handle
    if cached is None or cached.key1[0] != base:
        # One set at a time: switching sets (or precisions) frees the old modules before building.
        _CACHE.clear()
        cached = None

    handle = MotionI2VModel(name=weights, dtype=dtype, source=f"{ws.layout} weights at {ws.root}",
                            missing={stage: ws.missing_message(stage) for stage in (1, 2)})
    if ws.has_stage1:
        if cached is not None and cached.key1 == key1:
            handle.stage1 = cached.handle.stage1
            handle.patchers.update({p: cached.handle.patchers[p] for p in STAGE1_PARTS})
        else:
            handle.stage1 = load_weight_set(ws, 1, dtype, dtypes=dtypes, layers=layers)
            STATS["stage1_builds"] += 1
            modules = stage1_modules(handle.stage1)
            _place(modules)
            handle.patchers.update({p: make_patcher(m, p in VAE_PARTS) for p, m in modules.items()})
    if ws.has_stage2:
        if cached is not None and _same_key(cached.key2, key2):
            handle.stage2 = cached.handle.stage2
            handle.patchers.update({p: cached.handle.patchers[p] for p in STAGE2_PARTS})
        else:
            if cached is not None:
                cached.handle = MotionI2VModel(name=weights, dtype=dtype)  # let the old stage 2 go first
            handle.stage2 = _build_stage2(ws, weights, dtype, dtypes, layers, what, read, handle.stage1)
            modules = stage2_modules(handle.stage2)
            _place(modules)
            handle.patchers["render_unet"] = make_patcher(handle.stage2.unet, vae=False)
            shared = handle.stage1 is not None and handle.stage2.vae is handle.stage1.image_vae
            handle.patchers["vae"] = handle.patchers["image_vae"] if shared else make_patcher(handle.stage2.vae, vae=True)
    elif read is not None:
        log.warning("Motion-I2V: '%s' has no stage-2 files, so the appearance model is not used", weights)
    for module in [*(stage1_modules(handle.stage1).values() if handle.stage1 else ()),
                   *(stage2_modules(handle.stage2).values() if handle.stage2 else ())]:
        _BUILT[module] = weights
    _CACHE[weights] = _CachedSet(key1, key2, handle)
    return handle



class LoadMotionI2V(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MotionI2VLoader",
            display_name="Load Motion-I2V",
            category=CATEGORY,
            description=(
                "Loads the Motion-I2V models from ComfyUI/models/motion_i2v/: stage 1 predicts the motion "
                "(optical flow) and stage 2 renders the video. Stage 2's look comes from its SD-1.5 UNet, "
                "which you can replace by any SD-1.5 model (connect a MODEL, LoRAs included) or checkpoint file."
            ),
            inputs=[
                io.Combo.Input(
                    "weights",
                    options=list(weight_sets()),
                    tooltip="A folder under models/motion_i2v holding the official stage1/ and stage2/ trees "
                            "('.' = models/motion_i2v itself) or converted .safetensors files.",
                ),
                io.Combo.Input(
                    "precision", options=list(PRECISIONS), default="auto",
                    tooltip="Weights of the UNets. auto: fp16 (or bf16) on a GPU that supports it, fp32 on the CPU. "
                            "fp8_e4m3fn: weights stored in 8 bits (half the memory of fp16), computed in fp16/bf16. "
                            "The VAEs use ComfyUI's VAE precision (bf16 or fp32; the flow VAE fp32).",
                ),
                io.Model.Input(
                    "appearance_model", optional=True,
                    tooltip="Optional SD-1.5 MODEL (e.g. from Load Checkpoint + LoRA loaders) whose UNet replaces "
                            "the stage-2 appearance weights.",
                ),
                io.Combo.Input(
                    "appearance_checkpoint", optional=True,
                    options=[NO_CHECKPOINT] + folder_paths.get_filename_list("checkpoints"), default=NO_CHECKPOINT,
                    tooltip="Optional SD-1.5 checkpoint file for stage 2's UNet and VAE (ignored when a MODEL is connected).",
                ),
            ],
            outputs=[ModelType.Output("model", tooltip="The Motion-I2V models, for Encode Flow, Predict Flow and Render Video.")],
        )

    @classmethod
    def validate_inputs(cls, weights) -> bool | str:
        # Naming `weights` here replaces ComfyUI's plain "not in list" check by one that says where files go.
        if weights not in weight_sets():
            folders = ", ".join(folder_paths.get_folder_paths(FOLDER))
            return f"No Motion-I2V weights named '{weights}' in {folders}.\n{WEIGHTS_HELP}"
        return True

    @classmethod
    def fingerprint_inputs(cls, weights, precision="auto", appearance_model=None,
                           appearance_checkpoint=NO_CHECKPOINT) -> str:
        # Re-run when a weight file (or the appearance checkpoint) is replaced under the same name;
        # ComfyUI otherwise reuses the cached output for unchanged inputs.
        ws = weight_sets().get(weights)
        parts = [repr(ws.fingerprint()) if ws is not None else "missing"]
        if appearance_checkpoint and appearance_checkpoint != NO_CHECKPOINT:
            path = folder_paths.get_full_path("checkpoints", appearance_checkpoint)
            try:
                st = os.stat(path) if path else None
                parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}" if st else "missing")
            except OSError:
                parts.append("missing")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    @classmethod
    def execute(cls, weights, precision="auto", appearance_model=None, appearance_checkpoint=NO_CHECKPOINT) -> io.NodeOutput:
        return io.NodeOutput(load_motion_i2v(weights, precision, appearance_model, appearance_checkpoint))
