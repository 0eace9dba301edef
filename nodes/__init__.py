"""The Motion-I2V ComfyUI extension: every node of the pack, registered through the V3 entry point."""

from __future__ import annotations

import importlib
import logging

from comfy_api.latest import ComfyExtension, io

log = logging.getLogger("motion_i2v")

# (module, class) of every node, in menu order. Modules are imported one by one so that one broken
# node module is reported by name instead of hiding the whole pack.
_NODE_SPECS = (
    ("model_loading", "LoadMotionI2V"),
    ("draw_motion_brush", "DrawMotionBrush"),
    ("encode_flow", "EncodeFlow"),
    ("predict_flow", "PredictFlow"),
    ("render_video", "RenderVideo"),
    ("render_long_shot", "RenderLongShot"),
    ("drags_to_flow", "DragsToFlow"),
    ("preview_motion", "PreviewMotion"),
    ("preview_flow", "PreviewFlow"),
    ("camera_motion", "CameraMotion"),
    ("scale_flow", "ScaleFlow"),
    ("combine_flows", "CombineFlows"),
    ("flow_files", "SaveFlow"),
    ("flow_files", "LoadFlow"),
    ("flow_from_video", "FlowFromVideo"),
    ("export_tracks", "ExportTracks"),
)


def node_classes() -> list[type[io.ComfyNode]]:
    classes = []
    for module_name, class_name in _NODE_SPECS:
        try:
            module = importlib.import_module(f"{__name__}.{module_name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{module_name}":
                log.warning("Motion-I2V: node module nodes/%s.py is missing; %s is not available", module_name, class_name)
                continue
            raise
        classes.append(getattr(module, class_name))
    return classes


class MotionI2VExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return node_classes()


async def comfy_entrypoint() -> MotionI2VExtension:
    return MotionI2VExtension()
