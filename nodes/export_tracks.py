"""Export Tracks: our drawn tracks as a coord_str STRING for other packs (KJNodes, WanTrackToVideo)."""

from __future__ import annotations

from comfy_api.latest import io

from motion_i2v_core.motion.coord_str import tracks_to_coord_str

from .notes import node_notes
from .types import CATEGORY, MotionType


class ExportTracks(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MotionI2VExportTracks",
            display_name="Export Tracks as coord_str (Motion-I2V)",
            category=CATEGORY,
            description=(
                "Writes the tracks of a motion (Draw Motion Brush, Camera Motion, Flow From Video) as a coord_str: "
                "JSON lists of {x, y} points in pixels of the given size, the format KJNodes' spline editor writes "
                "and ComfyUI's WanTrackToVideo reads, so the drawing drives other packs."
            ),
            inputs=[
                MotionType.Input("motion", tooltip="Tracks to export."),
                io.Int.Input("width", default=0, min=0, max=16384,
                             tooltip="Pixel width the coordinates are for (e.g. the video you generate); 0 = the motion's image width."),
                io.Int.Input("height", default=0, min=0, max=16384, tooltip="Pixel height; 0 = the motion's image height."),
                io.Int.Input("points_per_track", default=0, min=0, max=1024,
                             tooltip="Resample every track to this many points (one per frame for WanTrackToVideo, "
                                     "with the same curve as our drags); 0 = the drawn points."),
            ],
            outputs=[
                io.String.Output("coord_str", tooltip="The tracks as coord_str JSON."),
                io.Int.Output("out_width", tooltip="The width the coordinates are in."),
                io.Int.Output("out_height", tooltip="The height the coordinates are in."),
            ],
        )

    @classmethod
    def execute(cls, motion, width=0, height=0, points_per_track=0) -> io.NodeOutput:
        if not motion.width or not motion.height:
            if not motion.tracks:
                return io.NodeOutput("[]", width, height, ui={"mi2v_notes": ["no tracks to export"]})
            raise ValueError("Export Tracks: the motion has tracks but no image size; connect Draw Motion Brush's motion")
        ow, oh = width or motion.width, height or motion.height
        text = tracks_to_coord_str(motion.tracks, motion.width, motion.height, ow, oh, points_per_track)
        notes = [f"{len(motion.tracks)} track(s) exported in {ow}x{oh} pixels"]
        if (ow, oh) != (motion.width, motion.height):
            notes.append(f"scaled from the {motion.width}x{motion.height} image (x * {ow / motion.width:.4g}, "
                         f"y * {oh / motion.height:.4g})")
        return io.NodeOutput(text, ow, oh, ui={"mi2v_notes": node_notes(notes)})
