"""Load Motion-I2V: find the weights under models/motion_i2v/, build the modules, hand them to ComfyUI.

The weight sets under each `motion_i2v` model folder (remappable in extra_model_paths.yaml), official
tree or converted files, are found and built by motion_i2v_core.loading.weight_sets; each set is one
entry of the `weights` list. This node adds the ComfyUI parts: the folder registration, the appearance
weights from a connected MODEL or a checkpoint file, caching, and ModelPatchers, so that ComfyUI's model
management moves the modules to the GPU when a node needs them and offloads them when memory runs short.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import torch

import comfy.model_management as mm
import comfy.model_patcher
import folder_paths
from comfy_api.latest import io

from motion_i2v_core.loading import CheckpointError, load_ldm_checkpoint
from motion_i2v_core.loading.ldm import convert_ldm_unet_state_dict
from motion_i2v_core.loading.weight_sets import WeightSet, find_weight_sets, load_weight_set

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
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
WEIGHTS_HELP = (
    "Put the official files (huggingface.co/wangfuyun/Motion-I2V) in ComfyUI/models/motion_i2v/ as\n"
    "  stage1/StableDiffusion-FlowGen/unet/{config.json, diffusion_pytorch_model.bin}\n"
    "  stage1/StableDiffusion-FlowGen/controlnet/controlnet.bin\n"
    "  stage1/StableDiffusion-FlowGen/vae/config.json and vae_flow/diffusion_pytorch_model.bin\n"
    "  stage2/StableDiffusion/{unet,vae}/{config.json, diffusion_pytorch_model.bin}\n"
    "  stage2/Motion_Module/motion_block.bin\n"
    "(or all of it inside one subfolder, e.g. models/motion_i2v/Motion-I2V/stage1/...), "
    "or converted files <name>/flow_unet.safetensors ... from `python -m motion_i2v_core convert`."
)


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
# the model handle passed between nodes


@dataclass
class MotionI2VModel:
    """Both stages (each optional) plus the ModelPatchers that ComfyUI loads and offloads."""

    name: str
    dtype: torch.dtype
    stage1: Optional[object] = None  # Stage1Models
    stage2: Optional[object] = None  # Stage2Models
    patchers1: list = field(default_factory=list)
    patchers2: list = field(default_factory=list)
    source: str = ""

    def _require(self, stage: int):
        models = self.stage1 if stage == 1 else self.stage2
        if models is None:
            what = "flow prediction (stage 1)" if stage == 1 else "video rendering (stage 2)"
            raise ValueError(f"The weights '{self.name}' have no {what} files.\n{WEIGHTS_HELP}")
        return models

    def stage1_on_device(self):
        """Stage-1 modules (flow UNet + ControlNet, flow VAE, image VAE), loaded to the compute device."""
        models = self._require(1)
        mm.load_models_gpu(self.patchers1, force_full_load=True)
        return models

    def stage2_on_device(self):
        models = self._require(2)
        mm.load_models_gpu(self.patchers2, force_full_load=True)
        return models


def _patcher(module: torch.nn.Module):
    # force_full_load is used with these: plain torch modules cannot run partially offloaded.
    return comfy.model_patcher.ModelPatcher(module, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


def resolve_dtype(precision: str) -> torch.dtype:
    """The weight dtype for a precision choice; auto = fp32 on the CPU, fp16/bf16 where the GPU supports it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = mm.get_torch_device()
    if precision != "auto":
        if device.type == "cpu" and precision in ("fp16", "bf16"):
            # It runs, but the CPU has no fast half-precision kernels: about 3x slower than fp32.
            log.warning("Motion-I2V: %s on the CPU is several times slower than fp32; choose precision "
                        "'auto' or 'fp32' unless you are checking half-precision results", precision)
        return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    if device.type == "cpu":
        return torch.float32
    if mm.should_use_fp16(device):
        return torch.float16
    if mm.should_use_bf16(device):
        return torch.bfloat16
    return torch.float32


# Loads are cached: re-running a workflow (or changing only the seed) must not rebuild 2 GB of modules.
# Only the latest set is kept, so switching sets does not pile up models in memory.
_CACHE: dict[str, tuple[tuple, MotionI2VModel]] = {}


def appearance_from_comfy_model(model) -> tuple[dict, str]:
    """The SD-1.5 UNet of a ComfyUI MODEL, LoRAs and other weight patches applied, in our names."""
    mm.load_models_gpu([model], force_full_load=True)  # applies the weight patches (LoRAs) in place
    diffusion_model = model.model.diffusion_model
    sd = {k: v.detach().to("cpu", copy=True) for k, v in diffusion_model.state_dict().items()}
    converted = convert_ldm_unet_state_dict(sd, prefix="", file="the connected MODEL")
    return converted, _model_identity(model)


def _model_identity(model) -> str:
    patches = getattr(model, "patches", {}) or {}
    return f"comfy-model:{id(model.model)}:{getattr(model, 'patches_uuid', '')}:{len(patches)}"


def load_motion_i2v(weights: str, precision: str, appearance_model=None, appearance_checkpoint: str = NO_CHECKPOINT):
    sets = weight_sets()
    ws = sets.get(weights)
    if ws is None:
        folders = ", ".join(folder_paths.get_folder_paths(FOLDER))
        available = ", ".join(sets) or "none"
        raise ValueError(f"No Motion-I2V weights named '{weights}' in {folders} (found: {available}).\n{WEIGHTS_HELP}")
    dtype = resolve_dtype(precision)

    unet_sd = vae_sd = None
    appearance_key = appearance = ""
    try:
        if appearance_model is not None:
            appearance = "The MODEL connected to appearance_model"
            unet_sd, appearance_key = appearance_from_comfy_model(appearance_model)
        elif appearance_checkpoint and appearance_checkpoint != NO_CHECKPOINT:
            appearance = f"The appearance_checkpoint '{appearance_checkpoint}'"
            path = folder_paths.get_full_path_or_raise("checkpoints", appearance_checkpoint)
            unet_sd, vae_sd = load_ldm_checkpoint(path)
            if unet_sd is None:
                raise CheckpointError(f"{path} holds a VAE but no UNet (model.diffusion_model.*)")
            st = os.stat(path)
            appearance_key = f"{path}:{st.st_size}:{st.st_mtime_ns}"
    except (CheckpointError, FileNotFoundError) as e:
        raise CheckpointError(f"{appearance} cannot be used: {e}\n{APPEARANCE_HELP}") from None

    key = (str(ws.root), ws.layout, ws.fingerprint(), str(dtype), appearance_key)
    cached = _CACHE.get(weights)
    if cached is not None and cached[0] == key:
        return cached[1]
    # One set at a time: switching sets frees the old modules (and their patchers) before building.
    _CACHE.clear()

    handle = MotionI2VModel(name=weights, dtype=dtype, source=f"{ws.layout} weights at {ws.root}")
    if ws.has_stage1:
        handle.stage1 = load_weight_set(ws, 1, dtype)
        handle.patchers1 = [_patcher(m) for m in (handle.stage1.unet, handle.stage1.flow_vae, handle.stage1.image_vae)]
    if ws.has_stage2:
        try:
            handle.stage2 = load_weight_set(ws, 2, dtype, unet_state_dict=unet_sd, vae_state_dict=vae_sd)
        except CheckpointError as e:
            if not appearance:
                raise
            # Says "with", not "because of": the failing file may also be one of the set's own.
            raise CheckpointError(f"Stage 2 of '{weights}' cannot be built with {appearance[0].lower()}{appearance[1:]}: "
                                  f"{e}\n{APPEARANCE_HELP}") from None
        handle.patchers2 = [_patcher(m) for m in (handle.stage2.unet, handle.stage2.vae)]
    elif unet_sd is not None:
        log.warning("Motion-I2V: '%s' has no stage-2 files, so the appearance model is not used", weights)
    _CACHE[weights] = (key, handle)
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
                    tooltip="auto: fp16 (or bf16) on a GPU that supports it, fp32 on the CPU.",
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
