"""Flow From Video: the motion of a driving clip as a flow field (motion transfer) or as drags."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from motion_i2v_core.motion.depth import check_aspect
from motion_i2v_core.motion.flow_hints import flow_to_hints
from motion_i2v_core.motion.flow_resample import fit_plane
from motion_i2v_core.motion.video_flow import FLOW_METHODS, flow_from_video

from .progress import StepProgress
from .sizes import check_size, long_frames_input, size_inputs
from .types import CATEGORY, FlowField, FlowType, MotionType, mask_to_core


class FlowFromVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MotionI2VFlowFromVideo",
            display_name="Flow From Video (Motion-I2V)",
            category=CATEGORY,
            description=(
                "Takes the motion of a driving clip (an IMAGE batch, e.g. from Load Video) as optical flow from its "
                "first frame to every later one, fitted to the video size like the reference image and resampled to "
                "the frame count. Feed the flow to Render Video to copy the motion onto your image, or the motion "
                "(drags sampled from it) to Encode Flow so Predict Flow re-imagines it. Pixels whose flow fails the "
                "forward-backward check (occluded, leaving the picture) are in the unreliable mask."
            ),
            inputs=[
                io.Image.Input("video", tooltip="The driving clip, at least 2 frames; its first frame matches the reference image."),
                *size_inputs(),
                long_frames_input(),
                io.Combo.Input("method", options=list(FLOW_METHODS), default="dis",
                               tooltip="OpenCV optical flow: DIS (fast, sharp) or Farneback (smoother)."),
                io.Boolean.Input("fill_unreliable", default=True,
                                 tooltip="Replace unreliable flow by a smooth fill from the reliable surroundings."),
                io.Int.Input("track_grid", default=4, min=1, max=16,
                             tooltip="Columns of drag points in the motion output (rows follow the aspect ratio)."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional region that follows the clip (1 = follows, drawn on the reference image); the rest stays still."),
                io.Image.Input("image", optional=True,
                               tooltip="Optional reference image, only to check the clip has its aspect ratio."),
            ],
            outputs=[
                FlowType.Output("flow", tooltip="The clip's motion, for Render Video or Preview Motion."),
                MotionType.Output("motion", tooltip="Drags sampled from reliable parts of the motion, for Encode Flow."),
                io.Mask.Output("unreliable", tooltip="Per frame, 1 where the flow failed the consistency check."),
            ],
        )

    @classmethod
    def execute(cls, video, width, height, num_frames, method="dis", fill_unreliable=True, track_grid=4,
                mask=None, image=None) -> io.NodeOutput:
        check_size(width, height)
        if isinstance(video, torch.Tensor) and video.ndim == 4 and image is not None:
            check_aspect(int(video.shape[1]), int(video.shape[2]), int(image.shape[1]), int(image.shape[2]),
                         "Flow From Video: the clip", "crop or resize the clip (or the image) to the same aspect ratio")
        progress = StepProgress(max(1, int(video.shape[0]) - 1) if isinstance(video, torch.Tensor) and video.ndim == 4 else 1)
        try:
            result = flow_from_video(video, height, width, num_frames, method=method, fill_unreliable=fill_unreliable,
                                     progress=progress, cancel=progress.cancel)
        except ValueError as e:
            raise ValueError(f"Flow From Video: {e}") from None
        flow, static = result.flow, torch.zeros(height, width)
        region = mask_to_core(mask)
        if region is not None:
            region = (fit_plane(region, height, width) > 0.5).float()
            flow = flow * region
            static = 1 - region
        hints = flow_to_hints(flow, grid=track_grid, region=region, reliable=1 - result.unreliable)
        return io.NodeOutput(FlowField(flow=flow, static_mask=static), hints, result.unreliable)
