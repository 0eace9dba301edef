"""Combine Flows: one motion field inside a mask and another outside, or one added on top of the other."""

from __future__ import annotations

from comfy_api.latest import io

from motion_i2v_core.motion.flow_combine import COMBINE_MODES, combine_flows
from motion_i2v_core.motion.flow_resample import fit_plane

from .types import CATEGORY, FlowField, FlowType, mask_to_core


class CombineFlows(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MotionI2VCombineFlows",
            display_name="Combine Flows (Motion-I2V)",
            category=CATEGORY,
            description=(
                "Puts two motions together, e.g. an object's motion from Predict Flow over a Camera Motion: "
                "'replace' uses the overlay inside the mask and the base outside; 'add' moves everything with the "
                "base and adds the overlay inside the mask. Without a mask the overlay's moving (brushed) region is used."
            ),
            inputs=[
                FlowType.Input("base", tooltip="The background motion, e.g. from Camera Motion."),
                FlowType.Input("overlay", tooltip="The motion inside the mask, e.g. from Predict Flow."),
                io.Combo.Input("mode", options=list(COMBINE_MODES), default="replace",
                               tooltip="replace: overlay inside the mask; add: base everywhere plus the overlay inside."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Where the overlay applies (1 = overlay); fitted to the flow like the image."),
            ],
            outputs=[FlowType.Output("flow", tooltip="The combined motion field.")],
        )

    @classmethod
    def execute(cls, base: FlowField, overlay: FlowField, mode="replace", mask=None) -> io.NodeOutput:
        mask = mask_to_core(mask)
        if mask is not None:
            mask = fit_plane(mask, base.height, base.width)
        try:
            flow, static = combine_flows(base.flow, overlay.flow, mask, mode, base.static_mask, overlay.static_mask)
        except ValueError as e:
            raise ValueError(f"Combine Flows: {e}") from None
        return io.NodeOutput(FlowField(flow=flow, static_mask=static))
