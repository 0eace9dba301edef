"""Render Video: stage 2 of Motion-I2V, the frames of the video following a predicted flow."""

from __future__ import annotations

from comfy_api.latest import io

from motion_i2v_core.motion.image_prep import fit_image
from motion_i2v_core.pipelines.stage2 import render_video

from .predict_flow import compat_input, sampling_inputs
from .progress import VIDEO_LATENTS, StepProgress
from .sizes import MAX_FRAMES
from .types import (CATEGORY, FlowField, FlowType, ModelType, conditioning_to_text, frames_to_image, image_to_core,
                    latents_to_comfy)


class RenderVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MotionI2VRenderVideo",
            display_name="Render Video (Motion-I2V)",
            category=CATEGORY,
            description=(
                "Stage 2: renders the video frames so that they follow the flow, keeping the look of the first "
                "frame. The output is a batch of images (connect Save Animated WEBP, Save Video or Video Combine) and "
                "the same video as an SD-1.5 LATENT for ComfyUI's own samplers, upscalers and VAE Decode. "
                "While sampling, the node shows the middle frame as it forms (ComfyUI's preview method: "
                "latent2rgb, or TAESD when installed; none with --preview-method none)."
            ),
            inputs=[
                ModelType.Input("model", tooltip="From Load Motion-I2V (its stage-2 weights)."),
                io.Image.Input("image", tooltip="The first frame, the same image Predict Flow used."),
                io.Conditioning.Input("positive", tooltip="What the video shows (CLIP Text Encode)."),
                io.Conditioning.Input("negative", tooltip="What to avoid (CLIP Text Encode, often empty)."),
                FlowType.Input("flow", tooltip="From Predict Flow; sets the size and frame count of the video."),
                *sampling_inputs(),
                compat_input(),
            ],
            outputs=[
                io.Image.Output("frames", tooltip="The video frames, the first one being the input image."),
                io.Latent.Output("latent", tooltip=(
                    "The same video as an SD-1.5 LATENT, one batch item per frame: refine it with KSampler, "
                    "upscale it or decode it with any SD-1.5 VAE using ComfyUI's own nodes.")),
            ],
        )

    @classmethod
    def execute(cls, model, image, positive, negative, flow: FlowField, steps, cfg, seed, sampler,
                official_compat=False) -> io.NodeOutput:
        if flow.num_frames > MAX_FRAMES:
            raise ValueError(f"Render Video: the flow has {flow.num_frames} frames and one render holds at most "
                             f"{MAX_FRAMES}; use Render Long Shot for longer motions (or fewer num_frames)")
        reference, _ = fit_image(image_to_core(image), flow.height, flow.width)
        cond = conditioning_to_text(positive, "positive")
        uncond = conditioning_to_text(negative, "negative")
        stage2 = model.stage2_on_device(flow.width, flow.height, flow.num_frames, cfg)
        progress = StepProgress(steps, preview=VIDEO_LATENTS)
        result = render_video(
            stage2, reference, cond, uncond, flow.flow, flow.static_mask,
            steps=steps, guidance=cfg, seed=seed, sampler=sampler, official_compat=official_compat,
            progress=progress, cancel=progress.cancel,
        )
        return io.NodeOutput(frames_to_image(result.frames), latents_to_comfy(result.latents))
