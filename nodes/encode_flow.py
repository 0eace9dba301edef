"""Encode Flow: motion hints (drags + brush) -> the stage-1 ControlNet condition (flow-VAE latent + mask)."""

from __future__ import annotations

import logging

import torch
from comfy_api.latest import io

from motion_i2v_core.motion import control as control_ops
from motion_i2v_core.motion.hints import MotionHints

from .types import CATEGORY, ControlType, ModelType, MotionControl, MotionType
from .sizes import check_size, frames_input, size_inputs

log = logging.getLogger("motion_i2v")


def encode_motion(model, hints: MotionHints | None, width: int, height: int, num_frames: int,
                  flow_unit: int = 0, seed: int = 0) -> MotionControl:
    """Rasterise the hints at the generation size and encode them with the flow VAE."""
    check_size(width, height)
    flow_vae = model.flow_vae_on_device(width, height, num_frames)  # the UNets stay where they are
    sparse_flow, sparse_mask, brush_static, warnings = control_ops.sparse_flow_from_hints(
        hints, height, width, num_frames=num_frames - 1, flow_unit=flow_unit or None, return_warnings=True
    )
    for w in warnings:
        log.warning("Motion-I2V hints: %s", w)
    generator = torch.Generator().manual_seed(int(seed))
    control = control_ops.encode_control(flow_vae, sparse_flow, sparse_mask, generator=generator)
    return MotionControl(
        control=control.float().cpu(),
        static_mask=brush_static.reshape(height, width).float().cpu(),
        width=width, height=height, num_frames=num_frames,
        hints=hints, flow_unit=flow_unit, seed=seed,
    )


class EncodeFlow(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MotionI2VEncodeFlow",
            display_name="Encode Flow (Motion-I2V)",
            category=CATEGORY,
            description=(
                "Turns the drawn motion hints into the control signal of the flow predictor: each drag becomes "
                "a small square moving along its track, the brush decides which parts may move, and the result is "
                "encoded with the flow VAE. Connect it to Predict Flow's control input."
            ),
            inputs=[
                ModelType.Input("model", tooltip="From Load Motion-I2V (uses its flow VAE)."),
                MotionType.Input("motion", tooltip="Tracks and brush from Draw Motion Brush."),
                *size_inputs(),
                frames_input(),
                io.Int.Input("flow_unit", default=0, min=0, max=512,
                             tooltip="Half-size in pixels of the square each drag moves; 0 = automatic "
                                     "(64 at 512x320, scaled with the image)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF,
                             tooltip="Seed of the flow-VAE posterior sample (the official app samples it)."),
            ],
            outputs=[ControlType.Output("control", tooltip="For Predict Flow. Re-encoded there if its size differs.")],
        )

    @classmethod
    def execute(cls, model, motion, width, height, num_frames, flow_unit=0, seed=0) -> io.NodeOutput:
        return io.NodeOutput(encode_motion(model, motion, width, height, num_frames, flow_unit, seed))
