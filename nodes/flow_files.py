"""Save Flow / Load Flow: motion fields as files (motion_i2v_core.motion.flow_io format), only inside
ComfyUI's output folder (saving) and its input or output folders (loading)."""

from __future__ import annotations

import os

import torch
from comfy_api.latest import io

from motion_i2v_core.motion.flow_io import load_flow, save_flow
from motion_i2v_core.motion.flow_resample import fit_flow, fit_plane, resample_frames

from .types import CATEGORY, FlowField, FlowType

FLOW_EXTENSION = ".flow.safetensors"
OUTPUT_TAG = " [output]"


def _inside(folder: str, path: str) -> bool:
    folder, path = os.path.realpath(folder), os.path.realpath(path)
    return os.path.commonpath([folder, path]) == folder


def check_name(name: str, what: str) -> str:
    """A relative name without '..' parts, absolute paths or drive letters (normalised, '/' separated)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what}: the name is empty; give a name such as motion_i2v/flow")
    norm = name.strip().replace("\\", "/")
    if norm.startswith("/") or ":" in norm or any(part in ("..", "") for part in norm.split("/")):
        raise ValueError(
            f"{what}: {name!r} is not allowed; use a relative name inside ComfyUI's folder, without '..', "
            "empty parts, drive letters or a leading '/'"
        )
    return norm


def flow_files() -> list[str]:
    """Flow files in the input folder, then those in the output folder (tagged like ComfyUI does)."""
    import folder_paths

    names = []
    for folder, tag in ((folder_paths.get_input_directory(), ""), (folder_paths.get_output_directory(), OUTPUT_TAG)):
        found = []
        for root, _, files in os.walk(folder, followlinks=False):
            for f in files:
                if f.endswith(FLOW_EXTENSION):
                    found.append(os.path.relpath(os.path.join(root, f), folder).replace(os.sep, "/") + tag)
        names += sorted(found)
    return names


def resolve_flow_file(name: str) -> str:
    """The path of a listed flow file; raises ValueError for names outside the input/output folders."""
    import folder_paths

    folder = folder_paths.get_input_directory()
    if name.endswith(OUTPUT_TAG):
        folder, name = folder_paths.get_output_directory(), name[: -len(OUTPUT_TAG)]
    rel = check_name(name, "Load Flow")
    if not rel.endswith(FLOW_EXTENSION):
        raise ValueError(f"Load Flow: {name!r} is not a flow file (they end in {FLOW_EXTENSION})")
    path = os.path.join(folder, *rel.split("/"))
    if not _inside(folder, path):
        raise ValueError(f"Load Flow: {name!r} points outside ComfyUI's folder {folder}")
    return path


class SaveFlow(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MotionI2VSaveFlow",
            display_name="Save Flow (Motion-I2V)",
            category=CATEGORY,
            description=(
                f"Saves a motion field in ComfyUI's output folder as <prefix>_00001{FLOW_EXTENSION} (pixels, "
                "with its size and frame count), to reuse it later with Load Flow."
            ),
            inputs=[
                FlowType.Input("flow", tooltip="The motion field to save."),
                io.String.Input("filename_prefix", default="motion_i2v/flow",
                                tooltip="Name inside the output folder; sub-folders with '/'."),
            ],
            outputs=[io.String.Output("filename", tooltip="The saved file's name as Load Flow lists it.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, flow: FlowField, filename_prefix="motion_i2v/flow") -> io.NodeOutput:
        import folder_paths

        prefix = check_name(filename_prefix, "Save Flow")
        output = folder_paths.get_output_directory()
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, output)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{filename}_{counter:05}_{FLOW_EXTENSION}")
        if not _inside(output, path):
            raise ValueError(f"Save Flow: {filename_prefix!r} points outside the output folder")
        save_flow(path, flow.flow, flow.static_mask, metadata={"source": "ComfyUI Motion-I2V"})
        listed = os.path.relpath(path, output).replace(os.sep, "/") + OUTPUT_TAG
        return io.NodeOutput(listed, ui={"mi2v_flow_files": [{"filename": os.path.basename(path),
                                                               "subfolder": subfolder, "type": "output"}]})


class LoadFlow(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MotionI2VLoadFlow",
            display_name="Load Flow (Motion-I2V)",
            category=CATEGORY,
            description=(
                f"Loads a motion field saved by Save Flow ({FLOW_EXTENSION} files in ComfyUI's input folder, or "
                "the output folder, tagged [output]). Optionally resamples it to another size (fitted like the "
                "image: resize to cover, centre crop) and frame count."
            ),
            inputs=[
                io.Combo.Input("flow_file", options=flow_files(), tooltip="A saved flow file."),
                io.Int.Input("width", default=0, min=0, max=2048, step=64,
                             tooltip="Resample to this width; 0 = as saved (set width and height together)."),
                io.Int.Input("height", default=0, min=0, max=2048, step=64, tooltip="Resample to this height; 0 = as saved."),
                io.Int.Input("num_frames", default=0, min=0, max=256, tooltip="Resample to this many frames; 0 = as saved."),
            ],
            outputs=[FlowType.Output("flow", tooltip="The loaded motion field.")],
        )

    @classmethod
    def validate_inputs(cls, flow_file, **_) -> bool | str:
        try:
            path = resolve_flow_file(flow_file)
        except ValueError as e:
            return str(e)
        if not os.path.isfile(path):
            return f"Load Flow: {flow_file!r} not found; save one with Save Flow or put it in ComfyUI's input folder"
        return True

    @classmethod
    def fingerprint_inputs(cls, flow_file, **_):
        try:
            return os.path.getmtime(resolve_flow_file(flow_file))
        except (OSError, ValueError):
            return float("nan")

    @classmethod
    def execute(cls, flow_file, width=0, height=0, num_frames=0) -> io.NodeOutput:
        path = resolve_flow_file(flow_file)
        try:
            flow, static, _ = load_flow(path)
        except (FileNotFoundError, ValueError) as e:
            raise ValueError(f"Load Flow: {e}") from None
        if (width == 0) != (height == 0):
            raise ValueError("Load Flow: set both width and height to resample, or both to 0 to keep the saved size")
        static = torch.zeros(flow.shape[-2:]) if static is None else static
        if width:
            flow, static = fit_flow(flow, height, width), (fit_plane(static, height, width) > 0.5).float()
        if num_frames:
            flow = resample_frames(flow, num_frames)
        return io.NodeOutput(FlowField(flow=flow.float(), static_mask=static.float()))
