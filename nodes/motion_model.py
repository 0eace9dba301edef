"""The Motion-I2V model handle passed between nodes, and how its parts reach the compute device.

Each module (flow UNet with its ControlNet, flow VAE, image VAE, render UNet, stage-2 VAE) has its own
ComfyUI ModelPatcher; the image VAE has one for both stages when stage 2 uses the same weights. A node
asks only for the parts it runs, with the activation memory its run needs (motion_i2v_core.memory),
so that `load_models_gpu` evicts the other stage, CLIP and other models first and loads a part
partially (weights cast on the fly) when the rest does not fit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import torch

import comfy.model_management as mm
import comfy.model_patcher

from motion_i2v_core import memory

log = logging.getLogger("motion_i2v")

STAGE1_PARTS = ("flow_unet", "flow_vae", "image_vae")
STAGE2_PARTS = ("render_unet", "vae")
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


def stage1_modules(stage1) -> dict:
    return {"flow_unet": stage1.unet, "flow_vae": stage1.flow_vae, "image_vae": stage1.image_vae}


def stage2_modules(stage2) -> dict:
    return {"render_unet": stage2.unet, "vae": stage2.vae}


def make_patcher(module: torch.nn.Module, vae: bool) -> comfy.model_patcher.ModelPatcher:
    load = mm.vae_device() if vae else mm.get_torch_device()
    offload = mm.vae_offload_device() if vae else mm.unet_offload_device()
    return comfy.model_patcher.ModelPatcher(module, load_device=load, offload_device=offload)


def compute_dtype_of(module: torch.nn.Module) -> torch.dtype:
    return getattr(module, "compute_dtype", None) or next(module.parameters()).dtype


@dataclass
class MotionI2VModel:
    """Both stages (each optional), their ModelPatchers by part, and the dtypes they run in."""

    name: str
    dtype: torch.dtype  # UNet weights
    stage1: Optional[object] = None  # Stage1Models
    stage2: Optional[object] = None  # Stage2Models
    patchers: dict = field(default_factory=dict)  # part name -> ModelPatcher
    source: str = ""
    missing: dict = field(default_factory=dict)  # stage -> what is missing for it (WeightSet.missing_message)

    def _require(self, stage: int):
        models = self.stage1 if stage == 1 else self.stage2
        if models is None:
            what = "flow prediction (stage 1)" if stage == 1 else "video rendering (stage 2)"
            if self.missing.get(stage):
                raise ValueError(f"The weights '{self.name}' cannot be used for {what}: {self.missing[stage]}")
            raise ValueError(f"The weights '{self.name}' have no {what} files.\n{WEIGHTS_HELP}")
        return models

    def load(self, parts, estimate: memory.MemoryEstimate) -> None:
        """Load these parts to the compute device, with room for `estimate.peak` bytes of activations."""
        patchers = []
        for part in parts:
            if self.patchers[part] not in patchers:
                patchers.append(self.patchers[part])
        log.debug("Motion-I2V: loading %s for a run needing %s", ", ".join(parts), estimate.describe())
        mm.load_models_gpu(patchers, memory_required=estimate.peak)

    def stage1_estimate(self, width: int, height: int, num_frames: int, guidance: float,
                        encode_control: bool) -> memory.MemoryEstimate:
        s1 = self._require(1)
        return memory.stage1_estimate(
            s1.unet.config, s1.flow_vae.config, s1.image_vae.config, num_frames=num_frames, height=height,
            width=width, guidance=guidance, unet_dtype=compute_dtype_of(s1.unet),
            vae_dtype=compute_dtype_of(s1.image_vae), flow_vae_dtype=compute_dtype_of(s1.flow_vae),
            encode_control=encode_control)

    def stage2_estimate(self, width: int, height: int, num_frames: int, guidance: float) -> memory.MemoryEstimate:
        s2 = self._require(2)
        return memory.stage2_estimate(
            s2.unet.config, s2.vae.config, num_frames=num_frames, height=height, width=width, guidance=guidance,
            unet_dtype=compute_dtype_of(s2.unet), vae_dtype=compute_dtype_of(s2.vae))

    def stage1_on_device(self, width: int, height: int, num_frames: int, guidance: float,
                         encode_control: bool = True):
        """Stage 1 (flow UNet + ControlNet, flow VAE, image VAE) on the compute device, for Predict Flow."""
        self._require(1)
        self.load(STAGE1_PARTS, self.stage1_estimate(width, height, num_frames, guidance, encode_control))
        return self.stage1

    def flow_vae_on_device(self, width: int, height: int, num_frames: int):
        """Only the flow VAE, for Encode Flow: the UNets stay where they are."""
        s1 = self._require(1)
        estimate = memory.MemoryEstimate({"control_encode": memory.control_encode_estimate(
            s1.flow_vae.config, num_frames, height, width, compute_dtype_of(s1.flow_vae))})
        self.load(("flow_vae",), estimate)
        return s1.flow_vae

    def stage2_on_device(self, width: int, height: int, num_frames: int, guidance: float):
        """Stage 2 (render UNet, VAE) on the compute device, for Render Video."""
        self._require(2)
        self.load(STAGE2_PARTS, self.stage2_estimate(width, height, num_frames, guidance))
        return self.stage2
