"""Write example_workflows/*.json (UI format, for ComfyUI's template browser) and their .jpg thumbnails.

    python scripts/make_example_workflows.py [--check]

--check only verifies that the files on disk equal what this script would write (used by the tests).
The thumbnails are drawn without any model: the example image, warped along the drags (the same
rough flow as the Drags To Flow node) with the tracks drawn on top. Needs the ComfyUI installed by
scripts/setup_env.sh (for comfy_api, imported by the node modules).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "example_workflows"
EXAMPLE_IMAGE = "example.png"  # ships in ComfyUI's input/ folder (768x768)
WEIGHTS = "Motion-I2V"         # models/motion_i2v/Motion-I2V/{stage1,stage2} (README)
CHECKPOINT = "realisticVisionV60B1_v51VAE.safetensors"  # any SD-1.5 checkpoint; the README explains

HINTS = {
    "version": 1, "width": 768, "height": 768,
    "brush": [
        {"mode": "paint", "radius": 70, "points": [[170.0, 375.0], [330.0, 390.0]]},
        {"mode": "paint", "radius": 70, "points": [[450.0, 385.0], [620.0, 360.0]]},
    ],
    "tracks": [
        [[200.0, 372.0], [185.0, 330.0], [178.0, 285.0]],
        [[600.0, 362.0], [620.0, 320.0], [632.0, 278.0]],
        [[384.0, 250.0]],
    ],
}
HINTS_JSON = json.dumps(HINTS, separators=(",", ":"))
POSITIVE = "a girl in a pink dress raising her arms on a green hill, blue sky, clouds"
NEGATIVE = "blurry, deformed, low quality"


class Workflow:
    """Minimal UI-format graph builder (the fields ComfyUI's frontend saves and loads)."""

    def __init__(self):
        self.nodes, self.links = [], []

    def node(self, kind, pos, size, widgets=None, inputs=(), outputs=(), title=None):
        node = {
            "id": len(self.nodes) + 1, "type": kind, "pos": list(pos), "size": list(size), "flags": {},
            "order": len(self.nodes), "mode": 0,
            "inputs": [{"name": n, "type": t, "link": None} for n, t in inputs],
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i} for i, (n, t) in enumerate(outputs)],
            "properties": {"Node name for S&R": kind},
            "widgets_values": list(widgets or []),
        }
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    def connect(self, src, out_slot, dst, input_name):
        link_id = len(self.links) + 1
        target_slot = next(i for i, s in enumerate(dst["inputs"]) if s["name"] == input_name)
        kind = src["outputs"][out_slot]["type"]
        dst["inputs"][target_slot]["link"] = link_id
        src["outputs"][out_slot]["links"].append(link_id)
        self.links.append([link_id, src["id"], out_slot, dst["id"], target_slot, kind])

    def to_json(self, note=None):
        if note:
            self.node("Note", (20, 620), (400, 160), [note])
        return {
            "last_node_id": len(self.nodes), "last_link_id": len(self.links),
            "nodes": self.nodes, "links": self.links, "groups": [], "config": {},
            "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4,
        }


# Widget values follow each node's widget order; seeds carry the frontend's "control after generate" value.
def _loader(wf, pos=(20, 20)):
    return wf.node("MotionI2VLoader", pos, (320, 130), [WEIGHTS, "auto", "(none)"],
                   inputs=[("appearance_model", "MODEL")], outputs=[("model", "MI2V_MODEL")])


def _text(wf, ckpt):
    pos = wf.node("CLIPTextEncode", (380, 230), (320, 110), [POSITIVE], inputs=[("clip", "CLIP")],
                  outputs=[("CONDITIONING", "CONDITIONING")], title="Positive")
    neg = wf.node("CLIPTextEncode", (380, 380), (320, 110), [NEGATIVE], inputs=[("clip", "CLIP")],
                  outputs=[("CONDITIONING", "CONDITIONING")], title="Negative")
    wf.connect(ckpt, 1, pos, "clip")
    wf.connect(ckpt, 1, neg, "clip")
    return pos, neg


def _checkpoint(wf):
    return wf.node("CheckpointLoaderSimple", (20, 230), (320, 100), [CHECKPOINT],
                   outputs=[("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")])


def _image(wf, pos=(20, 380)):
    return wf.node("LoadImage", pos, (320, 340), [EXAMPLE_IMAGE, "image"],
                   outputs=[("IMAGE", "IMAGE"), ("MASK", "MASK")])


def _predict_and_render(wf, loader, image, pos, neg, control=None):
    predict_inputs = [("model", "MI2V_MODEL"), ("image", "IMAGE"), ("positive", "CONDITIONING"),
                      ("negative", "CONDITIONING"), ("control", "MI2V_CONTROL")]
    predict = wf.node("MotionI2VPredictFlow", (760, 20), (340, 380),
                      [512, 320, 16, 25, 7.0, 0, "fixed", "ddim", 1.0, False],
                      inputs=predict_inputs, outputs=[("flow", "MI2V_FLOW"), ("flow_preview", "IMAGE")])
    for name, src in (("model", loader), ("image", image), ("positive", pos), ("negative", neg)):
        wf.connect(src, 0, predict, name)
    if control is not None:
        wf.connect(control, 0, predict, "control")
    flow_view = wf.node("PreviewImage", (1140, 420), (300, 260), [], inputs=[("images", "IMAGE")],
                        title="Flow (colour-coded)")
    wf.connect(predict, 1, flow_view, "images")
    render = wf.node("MotionI2VRenderVideo", (1140, 20), (340, 300), [25, 7.0, 0, "fixed", "ddim", False],
                     inputs=[("model", "MI2V_MODEL"), ("image", "IMAGE"), ("positive", "CONDITIONING"),
                             ("negative", "CONDITIONING"), ("flow", "MI2V_FLOW")],
                     outputs=[("frames", "IMAGE")])
    for name, src in (("model", loader), ("image", image), ("positive", pos), ("negative", neg), ("flow", predict)):
        wf.connect(src, 0, render, name)
    save = wf.node("SaveAnimatedWEBP", (1520, 20), (360, 420), ["motion_i2v", 8.0, False, 90, "default"],
                   inputs=[("images", "IMAGE")])
    wf.connect(render, 0, save, "images")
    return predict, render


def _model_inputs():
    """A workflow with the loader (appearance from the checkpoint's MODEL), the prompts and the image."""
    wf = Workflow()
    loader = _loader(wf)
    ckpt = _checkpoint(wf)
    wf.connect(ckpt, 0, loader, "appearance_model")
    pos, neg = _text(wf, ckpt)
    image = _image(wf, (20, 560))
    return wf, loader, pos, neg, image


def drag_brush_workflow():
    wf, loader, pos, neg, image = _model_inputs()
    brush = wf.node("MotionI2VDrawMotionBrush", (380, 560), (420, 520), [HINTS_JSON],
                    inputs=[("image", "IMAGE"), ("mask", "MASK")],
                    outputs=[("movable_mask", "MASK"), ("motion", "MI2V_MOTION")])
    wf.connect(image, 0, brush, "image")
    encode = wf.node("MotionI2VEncodeFlow", (760, 560), (340, 220), [512, 320, 16, 0, 0],
                     inputs=[("model", "MI2V_MODEL"), ("motion", "MI2V_MOTION")], outputs=[("control", "MI2V_CONTROL")])
    wf.connect(loader, 0, encode, "model")
    wf.connect(brush, 1, encode, "motion")
    _predict_and_render(wf, loader, image, pos, neg, control=encode)
    return wf.to_json(
        "Drag + motion brush: paint the parts that may move, click points to draw where they go "
        "(a single point pins a spot), then queue. Flow first (colour preview), then the video. "
        "Stage 2's look comes from the checkpoint's MODEL: any SD-1.5 model and LoRAs work."
    )


def text_only_workflow():
    wf, loader, pos, neg, image = _model_inputs()
    _predict_and_render(wf, loader, image, pos, neg)
    return wf.to_json("Text only: the motion comes from the prompt alone; no drags, no brush.")


def preview_workflow():
    wf = Workflow()
    image = _image(wf, (20, 20))
    brush = wf.node("MotionI2VDrawMotionBrush", (380, 20), (420, 520), [HINTS_JSON],
                    inputs=[("image", "IMAGE"), ("mask", "MASK")],
                    outputs=[("movable_mask", "MASK"), ("motion", "MI2V_MOTION")])
    wf.connect(image, 0, brush, "image")
    flow = wf.node("MotionI2VDragsToFlow", (840, 20), (320, 180), [512, 320, 16, 0],
                   inputs=[("motion", "MI2V_MOTION")], outputs=[("flow", "MI2V_FLOW")])
    wf.connect(brush, 1, flow, "motion")
    preview = wf.node("MotionI2VPreviewMotion", (840, 240), (320, 100), [],
                      inputs=[("image", "IMAGE"), ("flow", "MI2V_FLOW")], outputs=[("frames", "IMAGE")])
    wf.connect(image, 0, preview, "image")
    wf.connect(flow, 0, preview, "flow")
    save = wf.node("SaveAnimatedWEBP", (1200, 20), (360, 420), ["motion_preview", 8.0, False, 90, "default"],
                   inputs=[("images", "IMAGE")])
    wf.connect(preview, 0, save, "images")
    return wf.to_json(
        "Motion preview, no weights needed: draw drags and brush, queue, and watch the image pushed along "
        "a rough flow made from the drags. Use it to try drags before running the models."
    )


# ---------------------------------------------------------------------------------------------
# Motion beyond drags (camera moves, flow tools): kept apart from the drag workflows above.
# ---------------------------------------------------------------------------------------------

CAMERA_MOVE = {"pan_right": 0.1, "pan_down": 0.0, "zoom_in": 0.3, "rotate_clockwise": 0.0, "dolly_in": 0.0,
               "easing": "ease_in_out"}


def _camera(wf, pos, move=CAMERA_MOVE):
    widgets = [512, 320, 16, move["pan_right"], move["pan_down"], move["zoom_in"], move["rotate_clockwise"],
               move["dolly_in"], move["easing"], False, 4.0, 60.0, 4]
    return wf.node("MotionI2VCameraMotion", pos, (340, 420), widgets,
                   inputs=[("depth", "IMAGE,MASK"), ("image", "IMAGE")],
                   outputs=[("flow", "MI2V_FLOW"), ("motion", "MI2V_MOTION")])


def _preview_flow_and_motion(wf, image, flow, pos, prefix):
    """Preview Flow (colours + legend) and Preview Motion (the image warped) saved as a WEBP."""
    colours = wf.node("MotionI2VPreviewFlow", (pos[0], pos[1] + 260), (300, 60), [],
                      inputs=[("flow", "MI2V_FLOW")], outputs=[("images", "IMAGE")])
    wf.connect(flow, 0, colours, "flow")
    view = wf.node("PreviewImage", (pos[0], pos[1] + 360), (300, 260), [], inputs=[("images", "IMAGE")],
                   title="Flow (colour wheel legend)")
    wf.connect(colours, 0, view, "images")
    preview = wf.node("MotionI2VPreviewMotion", pos, (300, 100), [],
                      inputs=[("image", "IMAGE"), ("flow", "MI2V_FLOW")], outputs=[("frames", "IMAGE")])
    wf.connect(image, 0, preview, "image")
    wf.connect(flow, 0, preview, "flow")
    save = wf.node("SaveAnimatedWEBP", (pos[0] + 340, pos[1]), (360, 420), [prefix, 8.0, False, 90, "default"],
                   inputs=[("images", "IMAGE")])
    wf.connect(preview, 0, save, "images")


def camera_preview_workflow():
    wf = Workflow()
    image = _image(wf, (20, 20))
    camera = _camera(wf, (380, 20))
    wf.connect(image, 0, camera, "image")
    _preview_flow_and_motion(wf, image, camera, (760, 20), "camera_preview")
    return wf.to_json(
        "Camera move preview, no weights needed: pan, zoom, roll and dolly by the last frame (the picture moves the "
        "other way), eased. Connect a depth map (e.g. Depth Anything, near = bright) to 'depth' for parallax: near "
        "things then move more than far ones and a dolly differs from a zoom."
    )


def camera_render_workflow():
    wf, loader, pos, neg, image = _model_inputs()
    camera = _camera(wf, (760, 20))
    wf.connect(image, 0, camera, "image")
    render = wf.node("MotionI2VRenderVideo", (1140, 20), (340, 300), [25, 7.0, 0, "fixed", "ddim", False],
                     inputs=[("model", "MI2V_MODEL"), ("image", "IMAGE"), ("positive", "CONDITIONING"),
                             ("negative", "CONDITIONING"), ("flow", "MI2V_FLOW")],
                     outputs=[("frames", "IMAGE")])
    for name, src in (("model", loader), ("image", image), ("positive", pos), ("negative", neg), ("flow", camera)):
        wf.connect(src, 0, render, name)
    save = wf.node("SaveAnimatedWEBP", (1520, 20), (360, 420), ["motion_i2v_camera", 8.0, False, 90, "default"],
                   inputs=[("images", "IMAGE")])
    wf.connect(render, 0, save, "images")
    return wf.to_json(
        "Camera move rendered: Camera Motion's flow drives Render Video directly (no flow prediction). Add a depth "
        "map for parallax. To let stage 1 re-imagine the move instead, connect its 'motion' output to Encode Flow."
    )


def flow_tools_workflow():
    wf = Workflow()
    image = _image(wf, (20, 20))
    brush = wf.node("MotionI2VDrawMotionBrush", (380, 20), (420, 520), [HINTS_JSON],
                    inputs=[("image", "IMAGE"), ("mask", "MASK")],
                    outputs=[("movable_mask", "MASK"), ("motion", "MI2V_MOTION")])
    wf.connect(image, 0, brush, "image")
    drags = wf.node("MotionI2VDragsToFlow", (840, 20), (320, 180), [512, 320, 16, 0],
                    inputs=[("motion", "MI2V_MOTION")], outputs=[("flow", "MI2V_FLOW")])
    wf.connect(brush, 1, drags, "motion")
    camera = _camera(wf, (840, 240), dict(CAMERA_MOVE, zoom_in=0.0, pan_right=0.08, easing="linear"))
    wf.connect(image, 0, camera, "image")
    combine = wf.node("MotionI2VCombineFlows", (1220, 20), (320, 120), ["add"],
                      inputs=[("base", "MI2V_FLOW"), ("overlay", "MI2V_FLOW"), ("mask", "MASK")],
                      outputs=[("flow", "MI2V_FLOW")])
    wf.connect(camera, 0, combine, "base")
    wf.connect(drags, 0, combine, "overlay")
    wf.connect(brush, 0, combine, "mask")
    scale = wf.node("MotionI2VScaleFlow", (1220, 180), (320, 110), [1.5, "ease_out"],
                    inputs=[("flow", "MI2V_FLOW")], outputs=[("scaled_flow", "MI2V_FLOW")])
    wf.connect(combine, 0, scale, "flow")
    save_flow = wf.node("MotionI2VSaveFlow", (1220, 330), (320, 80), ["motion_i2v/flow"],
                        inputs=[("flow", "MI2V_FLOW")], outputs=[("filename", "STRING")])
    wf.connect(scale, 0, save_flow, "flow")
    _preview_flow_and_motion(wf, image, scale, (1580, 20), "flow_tools_preview")
    return wf.to_json(
        "Flow tools, no weights needed: the drags' motion added on top of a slow camera pan inside the brushed "
        "region (Combine Flows), made 1.5x stronger and eased out (Scale Flow), saved to output/motion_i2v/ (Save "
        "Flow; Load Flow reads it back) and previewed with the colour-wheel legend."
    )


DRIVING_CLIP = "motion_i2v_driving_clip.mp4"  # pick your own clip in Load Video


def video_to_video_workflow():
    wf, loader, pos, neg, image = _model_inputs()
    clip = wf.node("LoadVideo", (380, 560), (320, 340), [DRIVING_CLIP, "video"], outputs=[("VIDEO", "VIDEO")])
    parts = wf.node("GetVideoComponents", (380, 940), (320, 100), [], inputs=[("video", "VIDEO")],
                    outputs=[("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT")])
    wf.connect(clip, 0, parts, "video")
    motion = wf.node("MotionI2VFlowFromVideo", (760, 20), (340, 300), [512, 320, 16, "dis", True, 4],
                     inputs=[("video", "IMAGE"), ("mask", "MASK"), ("image", "IMAGE")],
                     outputs=[("flow", "MI2V_FLOW"), ("motion", "MI2V_MOTION"), ("unreliable", "MASK")])
    wf.connect(parts, 0, motion, "video")
    wf.connect(image, 0, motion, "image")
    render = wf.node("MotionI2VRenderVideo", (1140, 20), (340, 300), [25, 7.0, 0, "fixed", "ddim", False],
                     inputs=[("model", "MI2V_MODEL"), ("image", "IMAGE"), ("positive", "CONDITIONING"),
                             ("negative", "CONDITIONING"), ("flow", "MI2V_FLOW")],
                     outputs=[("frames", "IMAGE")])
    for name, src in (("model", loader), ("image", image), ("positive", pos), ("negative", neg), ("flow", motion)):
        wf.connect(src, 0, render, name)
    save = wf.node("SaveAnimatedWEBP", (1520, 20), (360, 420), ["motion_i2v_v2v", 8.0, False, 90, "default"],
                   inputs=[("images", "IMAGE")])
    wf.connect(render, 0, save, "images")
    _preview_flow_and_motion(wf, image, motion, (1140, 480), "v2v_preview")
    return wf.to_json(
        "Video to video (motion transfer): Flow From Video measures the driving clip's motion (pick your clip in "
        "Load Video; its first frame should match your image's layout) and Render Video applies it to your image. "
        "A mask limits what follows the clip. Or send the 'motion' output to Encode Flow for Predict Flow."
    )


def long_shot_workflow():
    wf, loader, pos, neg, image = _model_inputs()
    camera = _camera(wf, (760, 20), dict(CAMERA_MOVE, zoom_in=0.8, pan_right=0.15, easing="linear"))
    camera["widgets_values"][2] = 46  # three 16-frame segments
    wf.connect(image, 0, camera, "image")
    render = wf.node("MotionI2VRenderLongShot", (1140, 20), (340, 340), [16, 0, 25, 7.0, 0, "fixed", "ddim", False],
                     inputs=[("model", "MI2V_MODEL"), ("image", "IMAGE"), ("positive", "CONDITIONING"),
                             ("negative", "CONDITIONING"), ("flow", "MI2V_FLOW")],
                     outputs=[("frames", "IMAGE")])
    for name, src in (("model", loader), ("image", image), ("positive", pos), ("negative", neg), ("flow", camera)):
        wf.connect(src, 0, render, name)
    save = wf.node("SaveAnimatedWEBP", (1520, 20), (360, 420), ["motion_i2v_long_shot", 8.0, False, 90, "default"],
                   inputs=[("images", "IMAGE")])
    wf.connect(render, 0, save, "images")
    return wf.to_json(
        "Long shot: a 46-frame camera move rendered as three chained 16-frame segments (each starts from the frame "
        "the last one ended on; 'overlap' cross-fades shared frames). One progress bar over all segments."
    )


MOTION_WORKFLOWS = {
    "motion_i2v_camera_move_no_weights": camera_preview_workflow,
    "motion_i2v_camera_move": camera_render_workflow,
    "motion_i2v_flow_tools_no_weights": flow_tools_workflow,
    "motion_i2v_video_to_video": video_to_video_workflow,
    "motion_i2v_long_shot": long_shot_workflow,
}


def motion_thumbnails(image, size: int) -> dict:
    """Thumbnails of the camera and flow-tool workflows: the image along the example camera move
    (frame 12 of 16), and the flow colours with their legend beside it."""
    import torch

    from motion_i2v_core.motion.camera import CameraMove, camera_flow
    from motion_i2v_core.motion.flow_legend import flow_preview_with_legend
    from motion_i2v_core.motion.flow_preview import warp_preview

    move = CameraMove(**{k: v for k, v in CAMERA_MOVE.items() if k != "easing"})
    flow = camera_flow(move, size, size, 16, easing=CAMERA_MOVE["easing"])
    warped = warp_preview(image.permute(2, 0, 1), flow)[12]
    colours = flow_preview_with_legend(flow)[12]
    half = size // 2
    beside = torch.zeros(size, size, 3)
    beside[size // 4: size // 4 + half, :half] = colours[::2, ::2]
    beside[size // 4: size // 4 + half, half:] = warped[::2, ::2]
    return {"motion_i2v_camera_move_no_weights": beside, "motion_i2v_camera_move": warped,
            "motion_i2v_flow_tools_no_weights": colours, "motion_i2v_video_to_video": beside, "motion_i2v_long_shot": warped}


WORKFLOWS = {
    "motion_i2v_drag_and_brush": drag_brush_workflow,
    "motion_i2v_text_only": text_only_workflow,
    "motion_i2v_motion_preview_no_weights": preview_workflow,
    **MOTION_WORKFLOWS,
}


def render_thumbnails(comfy_dir: Path) -> dict:
    """One picture per workflow, drawn without any model from the example image and the drags:
    drags + brush: the image warped along the drags' rough flow (frame 12 of 16), tracks on top;
    text only: the reference image itself (its motion comes from the prompt);
    motion preview: the colour-coded flow of frame 12 beside the warped frame."""
    import cv2
    import numpy as np
    import torch

    sys.path.insert(0, str(comfy_dir))
    sys.path.insert(0, str(REPO.parent))  # the pack as a package, the way ComfyUI imports it
    from motion_i2v_core.motion.flow_preview import drags_to_flow, warp_preview
    from motion_i2v_core.motion.flow_viz import draw_tracks, flow_to_color
    from motion_i2v_core.motion.hints import parse_widget_json

    rgb = cv2.cvtColor(cv2.imread(str(comfy_dir / "input" / EXAMPLE_IMAGE)), cv2.COLOR_BGR2RGB)
    size = 256
    image = torch.from_numpy(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)).float() / 255
    hints = parse_widget_json(HINTS_JSON).resized(size, size)
    flow, _ = drags_to_flow(hints, size, size, 16)
    warped = warp_preview(image.permute(2, 0, 1), flow)[12]
    colour = flow_to_color(flow[12:13])[0]
    half = lambda t: torch.from_numpy(cv2.resize(t.numpy(), (size // 2, size // 2), interpolation=cv2.INTER_AREA))
    side_by_side = torch.zeros(size, size, 3)
    side_by_side[size // 4: size // 4 + size // 2, : size // 2] = half(colour)
    side_by_side[size // 4: size // 4 + size // 2, size // 2:] = half(warped)
    pictures = {
        "motion_i2v_drag_and_brush": draw_tracks(warped, hints.tracks),
        "motion_i2v_text_only": image,
        "motion_i2v_motion_preview_no_weights": side_by_side,
        **motion_thumbnails(image, size),
    }
    return {name: (t.clamp(0, 1).numpy() * 255).round().astype(np.uint8) for name, t in pictures.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare the JSON files with what would be written")
    args = parser.parse_args(argv)
    stale = []
    for name, build in WORKFLOWS.items():
        text = json.dumps(build(), indent=2) + "\n"
        path = OUT / f"{name}.json"
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
            continue
        OUT.mkdir(exist_ok=True)
        path.write_text(text)
    if args.check:
        if stale:
            print("out of date (run scripts/make_example_workflows.py):", *stale, sep="\n  ")
            return 1
        return 0
    from tests.harness.comfy_server import default_comfyui_dir  # noqa: E402  (same ComfyUI as the scripts)

    import cv2

    for name, picture in render_thumbnails(default_comfyui_dir()).items():
        cv2.imwrite(str(OUT / f"{name}.jpg"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print("wrote", ", ".join(WORKFLOWS), "to", OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
