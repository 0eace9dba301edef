"""Scale Flow: more or less motion, and an easing curve over the frames."""

from __future__ import annotations

from comfy_api.latest import io

from motion_i2v_core.motion.flow_scale import MAX_AMPLITUDE, scale_flow

from .camera_motion import easing_input
from .types import CATEGORY, FlowField, FlowType


class ScaleFlow(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MotionI2VScaleFlow",
            display_name="Scale Flow (Motion-I2V)",
            category=CATEGORY,
            description=(
                "Multiplies a motion field (2 = twice as far, 0.5 = half, negative = the other way) and re-times "
                "it: with an easing other than linear the motion starts or ends slowly, the last frame unchanged."
            ),
            inputs=[
                FlowType.Input("flow", tooltip="Any motion field."),
                io.Float.Input("amplitude", default=1.0, min=-MAX_AMPLITUDE, max=MAX_AMPLITUDE, step=0.05,
                               tooltip="Motion multiplier."),
                easing_input(),
            ],
            outputs=[FlowType.Output("scaled_flow", tooltip="The scaled, re-timed motion field.")],
        )

    @classmethod
    def execute(cls, flow: FlowField, amplitude=1.0, easing="linear") -> io.NodeOutput:
        try:
            scaled = scale_flow(flow.flow, amplitude, easing)
        except ValueError as e:
            raise ValueError(f"Scale Flow: {e}") from None
        return io.NodeOutput(FlowField(flow=scaled, static_mask=flow.static_mask))
