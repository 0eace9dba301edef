"""Predict Flow: stage 1 of Motion-I2V, the dense motion field of the video from one image."""

from __future__ import annotations

import logging

from comfy_api.latest import io

from motion_i2v_core.motion.flow_legend import flow_preview_with_legend
from motion_i2v_core.motion.image_prep import fit_image
from motion_i2v_core.pipelines.stage1 import predict_flow
from motion_i2v_core.schedulers import sampler_names

from .encode_flow import encode_motion
from .progress import FLOW_LATENTS, StepProgress
from .sizes import check_size, frames_input, size_inputs
from .types import (CATEGORY, ControlType, FlowField, FlowType, ModelType, MotionControl,
                    conditioning_to_text, frames_to_image, image_to_core)

log = logging.getLogger("motion_i2v")


def sampling_inputs(default_steps: int = 25):
    return [
        io.Int.Input("steps", default=default_steps, min=1, max=200, tooltip="Denoising steps (the official demo uses 25)."),
        io.Float.Input("cfg", default=7.0, min=1.0, max=30.0, step=0.1, round=0.01,
                       tooltip="Classifier-free guidance: how strongly the text steers the result. 1 = off (faster)."),
        io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                     tooltip="Seed of the initial noise."),
        io.Combo.Input("sampler", options=sampler_names(), default="ddim",
                       tooltip="ddim = the official sampler. dpmpp_2m = DPM-Solver++(2M), similar quality in fewer "
                               "steps; second order, except its last step (to zero noise) and any step much longer "
                               "than the one before, which are first order."),
    ]


def compat_input():
    return io.Boolean.Input(
        "official_compat", default=False, optional=True,
        tooltip="Reproduce the official code's random draws and quirks exactly (for comparisons). Off = corrected behaviour.",
    )


def matching_control(control: MotionControl | None, model, width: int, height: int, num_frames: int):
    """The control at this generation's size and frame count (re-encoded from its hints if needed)."""
    if control is None:
        return None
    if (control.width, control.height, control.num_frames) == (width, height, num_frames):
        return control
    log.info("Motion-I2V: control was encoded at %dx%d, %d frames; re-encoding at %dx%d, %d frames",
             control.width, control.height, control.num_frames, width, height, num_frames)
    return encode_motion(model, control.hints, width, height, num_frames, control.flow_unit, control.seed)


class PredictFlow(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MotionI2VPredictFlow",
            display_name="Predict Flow (Motion-I2V)",
            category=CATEGORY,
            description=(
                "Stage 1: predicts how every pixel of the image moves in each frame (optical flow), from the image, "
                "the text and optional drags/brush. Check the result with Preview Motion, then render it with Render Video. "
                "While sampling (preview method not none) it shows a rough, undecoded look at the middle frame's flow "
                "latent (its first two channels as red/green), not the final flow colours."
            ),
            inputs=[
                ModelType.Input("model", tooltip="From Load Motion-I2V."),
                io.Image.Input("image", tooltip="The first frame of the video."),
                io.Conditioning.Input("positive", tooltip="What the video shows (CLIP Text Encode with an SD-1.5 CLIP)."),
                io.Conditioning.Input("negative", tooltip="What to avoid (CLIP Text Encode, often empty)."),
                ControlType.Input("control", optional=True,
                                  tooltip="Drags and motion brush from Encode Flow. Without it the motion follows the text alone."),
                *size_inputs(),
                frames_input(),
                *sampling_inputs(),
                io.Float.Input("motion_speed", default=1.0, min=0.1, max=4.0, step=0.05,
                               tooltip="Temporal spacing of the frames: 2 = twice the motion per frame."),
                compat_input(),
            ],
            outputs=[
                FlowType.Output("flow", tooltip="The motion field, for Render Video or Preview Motion."),
                io.Image.Output("flow_preview", tooltip="The flow of each frame colour-coded (hue = direction, saturation = speed), with a colour-wheel legend."),
            ],
        )

    @classmethod
    def execute(cls, model, image, positive, negative, width, height, num_frames, steps, cfg, seed, sampler,
                motion_speed=1.0, control=None, official_compat=False) -> io.NodeOutput:
        check_size(width, height)
        reference, _ = fit_image(image_to_core(image), height, width)
        cond = conditioning_to_text(positive, "positive")
        uncond = conditioning_to_text(negative, "negative")
        control = matching_control(control, model, width, height, num_frames)
        stage1 = model.stage1_on_device(width, height, num_frames, cfg, encode_control=control is None)
        progress = StepProgress(steps, preview=FLOW_LATENTS)
        prediction = predict_flow(
            stage1, reference, cond, uncond,
            control=None if control is None else control.control,
            static_mask=None if control is None else control.static_mask,
            num_frames=num_frames, motion_speed=motion_speed, steps=steps, guidance=cfg, seed=seed,
            sampler=sampler, official_compat=official_compat, progress=progress, cancel=progress.cancel,
        )
        flow = FlowField(flow=prediction.flow.float().cpu(), static_mask=prediction.static_mask.float().cpu())
        return io.NodeOutput(flow, frames_to_image(flow_preview_with_legend(flow.flow)))
