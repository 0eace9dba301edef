"""Draw Motion Brush: the artist's motion hints (brush + drag tracks) as a MASK and MI2V_MOTION.

The hints come from the node's editor widget (web/draw_motion_brush.js), whose value is the
format-v2 JSON string (v1 still read) parsed by motion_i2v_core.motion.hints.parse_widget_json. API clients send
the same string. An optional MASK input is the starting movable region: the widget's paint strokes
add to it and its erase strokes remove from it, in drawing order. Optional KJNodes `coord_str`
tracks are appended after the drawn tracks. The compositing is motion_i2v_core.motion.hints.
build_motion_hints; the UI output is the reference preview and a summary (hints_summary: counts,
track ends, clamps), never every point.
"""

from __future__ import annotations

import os
import uuid

import cv2
import numpy as np
import torch
from comfy_api.latest import io

from motion_i2v_core.motion.coord_str import canvas_tracks, tracks_to_coord_str
from motion_i2v_core.motion.hints import build_motion_hints, hints_summary, parse_widget_json

from .notes import node_notes
from .types import CATEGORY, MotionType, mask_to_core

NODE_ID = "MotionI2VDrawMotionBrush"
# Widget type of the editor value; web/draw_motion_brush.js supplies the widget for this type name.
HINTS_WIDGET_TYPE = "MI2V_HINTS_JSON"
HintsJsonType = io.Custom(HINTS_WIDGET_TYPE)
EMPTY_HINTS_JSON = ""
# The editor only displays the reference image, so a downscaled JPEG is enough.
REFERENCE_PREVIEW_MAX_SIDE = 1024


class DrawMotionBrush(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE_ID,
            display_name="Draw Motion Brush (Motion-I2V)",
            category=CATEGORY,
            description=(
                "Paint where the image may move and draw where things should go. Paint/erase the movable "
                "region with the brush (nothing painted = everything may move); click to place track points "
                "(a single point is a static anchor). The editor shows the image at once when it comes from "
                "a Load Image node, otherwise after the first run."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The reference image; all drawn coordinates are in its pixels."),
                HintsJsonType.Input(
                    "hints_json",
                    tooltip=(
                        'The drawn hints as JSON (format v2; v1 still loads): {"version":2,"width":W,"height":H,'
                        '"brush":[{"mode":"paint"|"erase","radius":r,"points":[[x,y],...]}],'
                        '"tracks":[[[x,y],...]],"timing":[null|{"start":f,"end":f|null,"ease_in":b,"ease_out":b}]}'
                        ' (timing optional, one per track). "" means no hints.'
                    ),
                    extra_dict={"default": EMPTY_HINTS_JSON, "socketless": True},
                ),
                io.Mask.Input(
                    "mask",
                    optional=True,
                    tooltip="Optional starting movable region (1 = may move); brush strokes paint onto it and erase from it.",
                ),
                io.String.Input(
                    "coord_str",
                    optional=True,
                    force_input=True,
                    tooltip="Optional extra tracks in KJNodes' coord_str format ([{x,y},...] or a list of such lists), "
                            "in the pixels of the canvas they were drawn on (coord_width x coord_height).",
                ),
                io.Int.Input("coord_width", default=0, min=0, max=16384, optional=True,
                             tooltip="Width of the canvas coord_str was drawn on (KJNodes' spline editor width); "
                                     "0 = the image width. Points are scaled to the image; the node lists every rescale and clamp."),
                io.Int.Input("coord_height", default=0, min=0, max=16384, optional=True,
                             tooltip="Height of the coord_str canvas; 0 = the image height."),
            ],
            outputs=[
                io.Mask.Output("movable_mask", tooltip="Movable region at the image's size (1 = may move)."),
                MotionType.Output("motion", tooltip="Tracks and brush for Encode Flow."),
            ],
        )

    @classmethod
    def validate_inputs(cls, hints_json) -> bool | str:
        # Parse and check bounds only: the brush is rasterised once, in execute, at the image size.
        try:
            parse_widget_json(hints_json, rasterize=False)
        except ValueError as e:
            return (
                f"Draw Motion Brush: the hints_json value is not valid motion-hints JSON: {e}. "
                'Redraw the hints in the editor, or send "" for none.'
            )
        return True

    @classmethod
    def execute(cls, image, hints_json, mask=None, coord_str=None, coord_width=0, coord_height=0) -> io.NodeOutput:
        if not isinstance(image, torch.Tensor) or image.ndim != 4:
            raise ValueError(f"Draw Motion Brush: image must be a ComfyUI IMAGE (B, H, W, C), got {type(image).__name__}")
        height, width = int(image.shape[1]), int(image.shape[2])
        notes = []
        if coord_str is not None and str(coord_str).strip():
            # Canvas pixels -> image pixels first; build_motion_hints reads image-pixel coord_str.
            tracks, notes = canvas_tracks(coord_str, width, height, coord_width, coord_height)
            coord_str = tracks_to_coord_str(tracks, width, height)
        hints = build_motion_hints(hints_json, width, height, mask=mask_to_core(mask), coord_str=coord_str)
        hints.warnings = notes + list(hints.warnings)
        movable = hints.movable_mask if hints.movable_mask is not None else torch.ones(height, width)
        ui = {
            "mi2v_reference": [save_reference_preview(image[0])],
            "mi2v_hints": [hints_summary(hints)],
            "mi2v_notes": node_notes(hints.warnings),
        }
        return io.NodeOutput(movable[None].float(), hints, ui=ui)


def save_reference_preview(frame: torch.Tensor) -> dict:
    """Write the reference frame (H, W, C) as a JPEG in ComfyUI's temp folder for the editor.

    :return: the /view parameters plus the true image size (the preview may be downscaled)
    """
    import folder_paths

    height, width = int(frame.shape[0]), int(frame.shape[1])
    rgb = (frame[..., :3].float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    scale = REFERENCE_PREVIEW_MAX_SIDE / max(width, height)
    if scale < 1:
        rgb = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError("Draw Motion Brush: could not encode the reference preview")
    subfolder = "motion_i2v"
    folder = os.path.join(folder_paths.get_temp_directory(), subfolder)
    os.makedirs(folder, exist_ok=True)
    filename = f"reference_{uuid.uuid4().hex[:12]}.jpg"
    with open(os.path.join(folder, filename), "wb") as f:
        f.write(data.tobytes())
    return {"filename": filename, "subfolder": subfolder, "type": "temp", "width": width, "height": height}


__all__ = ["DrawMotionBrush", "build_motion_hints", "NODE_ID", "HINTS_WIDGET_TYPE", "EMPTY_HINTS_JSON"]
