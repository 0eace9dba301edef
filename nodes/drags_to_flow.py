"""Drags To Flow: a rough dense motion field straight from the drags, with no model (for previews)."""

from __future__ import annotations

from comfy_api.latest import io

from motion_i2v_core.motion.flow_preview import drags_to_flow

from .sizes import check_size, frames_input, size_inputs
from .types import CATEGORY, FlowField, FlowType, MotionType


class DragsToFlow(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MotionI2VDragsToFlow",
            display_name="Drags To Flow (Motion-I2V)",
            category=CATEGORY,
            description=(
                "Makes a rough motion field directly from the drawn drags, without any model: the content at each track's "
                "start follows the track as far as drawn and pulls its surroundings along; with a brush, the painted "
                "region moves and the rest stays still. Feed it to Preview Motion to check drags in a second."
            ),
            inputs=[
                MotionType.Input("motion", tooltip="Tracks and brush from Draw Motion Brush."),
                *size_inputs(),
                frames_input(),
                io.Int.Input("flow_unit", default=0, min=0, max=512,
                             tooltip="Half-size in pixels of the square each drag moves; 0 = automatic."),
            ],
            outputs=[FlowType.Output("flow", tooltip="A coarse flow for Preview Motion (or Render Video).")],
        )

    @classmethod
    def execute(cls, motion, width, height, num_frames, flow_unit=0) -> io.NodeOutput:
        check_size(width, height)
        flow, static = drags_to_flow(motion, height, width, num_frames, flow_unit=flow_unit or None)
        return io.NodeOutput(FlowField(flow=flow, static_mask=static))
