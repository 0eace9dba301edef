"""Preview Flow: a flow field colour-coded (hue = direction, saturation = speed) with a colour-wheel legend."""

from __future__ import annotations

from comfy_api.latest import io

from motion_i2v_core.motion.flow_legend import flow_preview_with_legend

from .types import CATEGORY, FlowField, FlowType, frames_to_image


class PreviewFlow(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MotionI2VPreviewFlow",
            display_name="Preview Flow (Motion-I2V)",
            category=CATEGORY,
            description=(
                "Colour-codes a flow field: the hue says where each pixel goes (the wheel in the corner), the "
                "saturation how far; white is still. The legend's label is the motion of a full colour, in pixels."
            ),
            inputs=[FlowType.Input("flow", tooltip="Any motion field.")],
            outputs=[io.Image.Output("images", tooltip="One colour-coded frame per flow frame.")],
        )

    @classmethod
    def execute(cls, flow: FlowField) -> io.NodeOutput:
        return io.NodeOutput(frames_to_image(flow_preview_with_legend(flow.flow)))
