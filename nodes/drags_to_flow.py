"""Drags To Flow: a rough dense motion field straight from the drags, with no model (for previews)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from comfy_api.latest import io

from motion_i2v_core import control as control_ops

from .sizes import check_size, frames_input, size_inputs
from .types import CATEGORY, FlowField, FlowType, MotionType


def _smooth(x: torch.Tensor, radius: int, passes: int = 3) -> torch.Tensor:
    """Repeated box filter (close to a Gaussian of sigma ~ radius) over the last two dims."""
    k = 2 * radius + 1
    for _ in range(passes):
        x = F.avg_pool2d(x, k, stride=1, padding=radius, count_include_pad=False)
    return x


@torch.no_grad()
def drags_to_flow(hints, width: int, height: int, num_frames: int, flow_unit: int = 0) -> FlowField:
    """Spread the drag squares' displacements over the movable region (normalised smoothing).

    The sparse flow of the official control (drag squares, zero on static brush regions) is blurred
    with its mask as weights, at 1/8 resolution, then upsampled and zeroed where the brush keeps still.
    Not what the model predicts, but enough to see where things will go.
    """
    check_size(width, height)
    sparse01, mask, static = control_ops.sparse_flow_from_hints(
        hints, height, width, num_frames=num_frames - 1, flow_unit=flow_unit or None
    )
    scale = torch.tensor([width, height], dtype=torch.float32).view(1, 2, 1, 1)
    flow = (sparse01[0].transpose(0, 1) * 2 - 1) * scale           # (F-1, 2, H, W) pixels
    weight = mask[0].transpose(0, 1).expand(-1, 1, -1, -1)          # (F-1, 1, H, W)
    small = (height // 8, width // 8)
    flow_s = F.interpolate(flow * weight, size=small, mode="area")
    weight_s = F.interpolate(weight, size=small, mode="area")
    radius = max(1, max(small) // 6)
    dense = _smooth(flow_s, radius) / _smooth(weight_s, radius).clamp_min(1e-6)
    dense = F.interpolate(dense, size=(height, width), mode="bilinear", align_corners=False)
    static2d = static.reshape(height, width)
    dense = dense * (1 - static2d)
    flow = torch.cat([torch.zeros_like(dense[:1]), dense])
    return FlowField(flow=flow.float(), static_mask=static2d.float())


class DragsToFlow(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MotionI2VDragsToFlow",
            display_name="Drags To Flow (Motion-I2V)",
            category=CATEGORY,
            description=(
                "Makes a rough motion field directly from the drawn drags, without any model: each drag pulls its "
                "surroundings along, brushed-out regions stay still. Feed it to Preview Motion to check drags in a second."
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
        return io.NodeOutput(drags_to_flow(motion, width, height, num_frames, flow_unit))
