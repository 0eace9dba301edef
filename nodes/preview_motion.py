"""Preview Motion: animate the reference image along a flow field by warping it (no model, instant)."""

from __future__ import annotations

from comfy_api.latest import io

from .types import CATEGORY, FlowField, FlowType, frames_to_image, image_to_core


class PreviewMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MotionI2VPreviewMotion",
            display_name="Preview Motion (Motion-I2V)",
            category=CATEGORY,
            description=(
                "Shows what a motion field does to the image without running any model: each frame is the "
                "reference image pushed along the flow (forward warping, holes filled). Use it to check "
                "predicted motion before the slow Render Video step."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The reference image (first frame). Resized to the flow's size if needed."),
                FlowType.Input("flow", tooltip="A motion field: from Predict Flow (the model) or Drags To Flow (no model)."),
            ],
            outputs=[io.Image.Output("frames", tooltip="One warped frame per flow frame, frame 0 is the image itself.")],
        )

    @classmethod
    def execute(cls, image, flow: FlowField) -> io.NodeOutput:
        from motion_i2v_core.motion import flow_preview
        from motion_i2v_core.motion.image_prep import fit_image

        reference = image_to_core(image)
        if tuple(reference.shape[1:]) != (flow.height, flow.width):
            reference, _ = fit_image(reference, flow.height, flow.width)
        frames = flow_preview.warp_preview(reference, flow.flow)
        return io.NodeOutput(frames_to_image(frames))
