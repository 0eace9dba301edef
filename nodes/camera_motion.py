"""Camera Motion: a pan, zoom, roll or dolly (and any mix) as a flow field, with parallax from a depth map."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from motion_i2v_core.motion.camera import CameraMove, camera_flow
from motion_i2v_core.motion.depth import check_aspect, depth_to_distance
from motion_i2v_core.motion.easing import EASINGS
from motion_i2v_core.motion.flow_hints import flow_to_hints

from .sizes import check_size, long_frames_input, size_inputs
from .types import CATEGORY, FlowField, FlowType, MotionType


def easing_input():
    return io.Combo.Input("easing", options=list(EASINGS), default="linear",
                          tooltip="How the move is spread over the frames: steady, starting slowly, ending slowly, or both.")


class CameraMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MotionI2VCameraMotion",
            display_name="Camera Motion (Motion-I2V)",
            category=CATEGORY,
            description=(
                "Makes the motion of a camera move: pan, zoom, roll and dolly, in any mix. The amounts are what the "
                "camera does by the last frame; the picture moves the other way. With a depth map (near = bright, "
                "from any depth node) every pixel is reprojected through a pinhole camera, so near things move more "
                "than far ones and a dolly differs from a zoom. Feed the flow to Render Video, or the motion (drags "
                "sampled from it) to Encode Flow so Predict Flow re-imagines the move."
            ),
            inputs=[
                *size_inputs(),
                long_frames_input(),
                io.Float.Input("pan_right", default=0.0, min=-2.0, max=2.0, step=0.01,
                               tooltip="Camera moves right by this fraction of the width (negative = left); "
                                       "the nearest content slides left that far."),
                io.Float.Input("pan_down", default=0.0, min=-2.0, max=2.0, step=0.01,
                               tooltip="Camera moves down by this fraction of the height (negative = up)."),
                io.Float.Input("zoom_in", default=0.0, min=-0.9, max=9.0, step=0.01,
                               tooltip="Lens zoom: 0.5 = magnify 1.5x by the last frame; -0.5 = zoom out to 1/1.5."),
                io.Float.Input("rotate_clockwise", default=0.0, min=-360.0, max=360.0, step=0.5,
                               tooltip="Camera roll in degrees (negative = anticlockwise); the picture turns the other way."),
                io.Float.Input("dolly_in", default=0.0, min=-4.0, max=0.9, step=0.01,
                               tooltip="Camera moves forward by this fraction of the distance to the nearest content "
                                       "(negative = back). Without a depth map it looks like a zoom."),
                easing_input(),
                io.MultiType.Input("depth", types=[io.Image, io.Mask], optional=True,
                                   tooltip="Optional depth map of the image (IMAGE or MASK, near = bright) for parallax."),
                io.Boolean.Input("invert_depth", default=False,
                                 tooltip="Turn on if the depth map is near = dark (a distance map)."),
                io.Float.Input("far_distance", default=4.0, min=1.05, max=100.0, step=0.05,
                               tooltip="How far the darkest depth is, in units of the brightest (nearest)."),
                io.Float.Input("fov", default=60.0, min=10.0, max=150.0, step=1.0,
                               tooltip="Horizontal field of view of the camera in degrees (affects dolly perspective)."),
                io.Int.Input("track_grid", default=4, min=1, max=16,
                             tooltip="Columns of drag points in the motion output (rows follow the aspect ratio)."),
                io.Image.Input("image", optional=True,
                               tooltip="Optional reference image, only to check the depth map has its aspect ratio."),
            ],
            outputs=[
                FlowType.Output("flow", tooltip="The camera move as a flow field, for Render Video or Preview Motion."),
                MotionType.Output("motion", tooltip="Drags sampled from the move, for Encode Flow and Predict Flow."),
            ],
        )

    @classmethod
    def execute(cls, width, height, num_frames, pan_right, pan_down, zoom_in, rotate_clockwise, dolly_in,
                easing="linear", depth=None, invert_depth=False, far_distance=4.0, fov=60.0, track_grid=4,
                image=None) -> io.NodeOutput:
        check_size(width, height)
        move = CameraMove(pan_right=pan_right, pan_down=pan_down, zoom_in=zoom_in,
                          rotate_clockwise=rotate_clockwise, dolly_in=dolly_in)
        distance = None
        if depth is not None:
            if not isinstance(depth, torch.Tensor) or depth.ndim not in (2, 3, 4):
                raise ValueError("Camera Motion: depth must be an IMAGE or a MASK from a depth node")
            if image is not None:
                dh, dw = depth.shape[-3:-1] if depth.ndim == 4 else depth.shape[-2:]
                check_aspect(int(dh), int(dw), int(image.shape[1]), int(image.shape[2]), "Camera Motion: the depth map",
                             "make the depth map from this image (or resize it to the image's aspect ratio)")
            try:
                distance = depth_to_distance(depth, height, width, far=far_distance, invert=invert_depth)
            except ValueError as e:
                raise ValueError(f"Camera Motion: {e}") from None
        try:
            flow = camera_flow(move, height, width, num_frames, distance=distance, fov_degrees=fov, easing=easing)
        except ValueError as e:
            raise ValueError(f"Camera Motion: {e}") from None
        hints = flow_to_hints(flow, grid=track_grid)
        return io.NodeOutput(FlowField(flow=flow, static_mask=torch.zeros(height, width)), hints)
