"""Render Long Shot: a motion longer than one render, as chained Render Video segments in one batch."""

from __future__ import annotations

from comfy_api.latest import io

from motion_i2v_core.motion.image_prep import fit_image
from motion_i2v_core.pipelines.long_shot import plan_segments, render_long_shot

from .predict_flow import compat_input, sampling_inputs
from .progress import VIDEO_LATENTS, StepProgress
from .sizes import MAX_FRAMES
from .types import CATEGORY, FlowField, FlowType, ModelType, conditioning_to_text, frames_to_image, image_to_core


class RenderLongShot(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MotionI2VRenderLongShot",
            display_name="Render Long Shot (Motion-I2V)",
            category=CATEGORY,
            description=(
                f"Renders a motion longer than {MAX_FRAMES} frames (e.g. Camera Motion or Flow From Video with more "
                "frames) as chained segments: each segment starts from the frame the previous one rendered and "
                "follows the motion from there, optionally cross-fading overlapping frames. One batch out, one "
                "progress bar over every segment, with a preview of the middle frame of the segment being sampled "
                "(when ComfyUI's preview method is not none); Cancel stops between and inside segments."
            ),
            inputs=[
                ModelType.Input("model", tooltip="From Load Motion-I2V (its stage-2 weights)."),
                io.Image.Input("image", tooltip="The first frame."),
                io.Conditioning.Input("positive", tooltip="What the video shows (CLIP Text Encode)."),
                io.Conditioning.Input("negative", tooltip="What to avoid (CLIP Text Encode, often empty)."),
                FlowType.Input("flow", tooltip="A motion of any length; sets the size and frame count of the shot."),
                io.Int.Input("segment_frames", default=MAX_FRAMES, min=2, max=MAX_FRAMES,
                             tooltip=f"Frames per rendered segment (at most {MAX_FRAMES})."),
                io.Int.Input("overlap", default=0, min=0, max=MAX_FRAMES - 2,
                             tooltip="Frames shared by consecutive segments, cross-faded (0 = the last frame of a "
                                     "segment starts the next)."),
                *sampling_inputs(),
                compat_input(),
            ],
            outputs=[io.Image.Output("frames", tooltip="Every frame of the shot, the first one being the input image.")],
        )

    @classmethod
    def execute(cls, model, image, positive, negative, flow: FlowField, segment_frames, overlap, steps, cfg, seed,
                sampler, official_compat=False) -> io.NodeOutput:
        try:
            plan = plan_segments(flow.num_frames, segment_frames, overlap)
        except ValueError as e:
            raise ValueError(f"Render Long Shot: {e}") from None
        reference, _ = fit_image(image_to_core(image), flow.height, flow.width)
        cond = conditioning_to_text(positive, "positive")
        uncond = conditioning_to_text(negative, "negative")
        stage2 = model.stage2_on_device(flow.width, flow.height, segment_frames, cfg)  # one segment at a time
        progress = StepProgress(len(plan) * steps, preview=VIDEO_LATENTS)
        result = render_long_shot(
            stage2, reference, cond, uncond, flow.flow, flow.static_mask,
            segment_frames=segment_frames, overlap=overlap, steps=steps, seed=seed,
            guidance=cfg, sampler=sampler, official_compat=official_compat,
            progress=progress, cancel=progress.cancel,
        )
        return io.NodeOutput(frames_to_image(result.frames))
