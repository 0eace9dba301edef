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


# Layout. A node's title bar is drawn above its pos (LiteGraph.NODE_TITLE_HEIGHT); nodes in a column
# are stacked with GAP between one node's bottom and the next one's title. The saved view (extra.ds)
# fits every node into a full-HD window, clear of what the frontend draws over the canvas there
# (VIEW_MARGIN: side bar at the left; banner, tabs and breadcrumb at the top; the minimap's column
# at the right), so a workflow opens with everything visible (tests/browser/test_workflows_browser.py).
TITLE_HEIGHT = 30
GAP = 40
VIEW = (1920, 1080)
VIEW_MARGIN = {"left": 80, "top": 150, "right": 290, "bottom": 40}
# Nodes 2.0 (Vue nodes) draws bigger nodes and, opening a workflow saved by the classic canvas,
# spreads the positions by this factor around the graph's origin; the view leaves room for it.
VUE_SPREAD = 1.2
NOTE_SIZE = (340, 190)


class Workflow:
    """Minimal UI-format graph builder (the fields ComfyUI's frontend saves and loads).

    Nodes may be created without a position (pos=None) and placed with :meth:`arrange`; a note
    given to :meth:`to_json` that was not placed goes below everything else, at the left.
    """

    def __init__(self):
        self.nodes, self.links = [], []

    def node(self, kind, pos, size, widgets=None, inputs=(), outputs=(), title=None):
        node = {
            "id": len(self.nodes) + 1, "type": kind, "pos": list(pos or (0, 0)), "size": list(size), "flags": {},
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

    def note(self, text, size=NOTE_SIZE):
        return self.node("Note", None, size, [text])

    def arrange(self, columns, origin=(0, 0)):
        """Place nodes in columns, left to right, each column top-down; no two nodes overlap.

        :param columns: list of columns, each a list of nodes (None leaves a row-sized gap out)
        :return: the (x, y) right of the last column, for arranging more columns beside
        """
        x, top = origin
        for column in columns:
            y = top + TITLE_HEIGHT
            width = 0
            for node in column:
                if node is None:
                    continue
                node["pos"] = [x, y]
                y += node["size"][1] + GAP + TITLE_HEIGHT
                width = max(width, node["size"][0])
            x += width + GAP
        return x, top

    def bounds(self):
        """(x0, y0, x1, y1) of all nodes, title bars included."""
        return (min(n["pos"][0] for n in self.nodes), min(n["pos"][1] - TITLE_HEIGHT for n in self.nodes),
                max(n["pos"][0] + n["size"][0] for n in self.nodes), max(n["pos"][1] + n["size"][1] for n in self.nodes))

    def view(self):
        """extra.ds showing every node inside VIEW (scale <= 1), the graph's top-left at the margins,
        in both canvas modes (the graph should start at the origin: Nodes 2.0 spreads around it)."""
        x0, y0, x1, y1 = self.bounds()
        m = VIEW_MARGIN
        room_w, room_h = VIEW[0] - m["left"] - m["right"], VIEW[1] - m["top"] - m["bottom"]
        spread = VUE_SPREAD * max(x1, x1 - x0) / (x1 - x0), VUE_SPREAD * max(y1, y1 - y0) / (y1 - y0)
        scale = min(1.0, room_w / (spread[0] * (x1 - x0)), room_h / (spread[1] * (y1 - y0)))
        scale = int(scale * 100) / 100  # a round number; rounding down keeps everything inside
        return {"scale": scale, "offset": [round(m["left"] / scale - x0, 1), round(m["top"] / scale - y0, 1)]}

    def to_json(self, note=None):
        if note:
            x0, _, _, y1 = self.bounds()
            self.node("Note", (x0, y1 + GAP + TITLE_HEIGHT), NOTE_SIZE, [note])
        return {
            "last_node_id": len(self.nodes), "last_link_id": len(self.links),
            "nodes": self.nodes, "links": self.links, "groups": [], "config": {},
            "extra": {"ds": self.view()}, "version": 0.4,
        }


# Widget values follow each node's widget order; seeds carry the frontend's "control after generate" value.
# Sizes are at least what the frontend draws (measured in the browser test, both canvas modes),
# so saved positions never make nodes overlap. Positions come from Workflow.arrange.
def _loader(wf):
    return wf.node("MotionI2VLoader", None, (320, 130), [WEIGHTS, "auto", "(none)"],
                   inputs=[("appearance_model", "MODEL")], outputs=[("model", "MI2V_MODEL")])


def _text(wf, ckpt):
    pos = wf.node("CLIPTextEncode", None, (320, 130), [POSITIVE], inputs=[("clip", "CLIP")],
                  outputs=[("CONDITIONING", "CONDITIONING")], title="Positive")
    neg = wf.node("CLIPTextEncode", None, (320, 130), [NEGATIVE], inputs=[("clip", "CLIP")],
                  outputs=[("CONDITIONING", "CONDITIONING")], title="Negative")
    wf.connect(ckpt, 1, pos, "clip")
    wf.connect(ckpt, 1, neg, "clip")
    return pos, neg


def _checkpoint(wf):
    return wf.node("CheckpointLoaderSimple", None, (320, 100), [CHECKPOINT],
                   outputs=[("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")])


def _image(wf, pos=None):
    return wf.node("LoadImage", pos, (320, 400), [EXAMPLE_IMAGE, "image"],
                   outputs=[("IMAGE", "IMAGE"), ("MASK", "MASK")])


def _brush(wf, image):
    brush = wf.node("MotionI2VDrawMotionBrush", None, (480, 560), [HINTS_JSON],
                    inputs=[("image", "IMAGE"), ("mask", "MASK")],
                    outputs=[("movable_mask", "MASK"), ("motion", "MI2V_MOTION")])
    wf.connect(image, 0, brush, "image")
    return brush


def _predict_and_render(wf, loader, image, pos, neg, control=None):
    """Predict Flow -> Render Video -> Save Animated WEBP, and the colour-coded flow preview.

    :return: ``(predict, flow_view, render, save)``
    """
    predict_inputs = [("model", "MI2V_MODEL"), ("image", "IMAGE"), ("positive", "CONDITIONING"),
                      ("negative", "CONDITIONING"), ("control", "MI2V_CONTROL")]
    predict = wf.node("MotionI2VPredictFlow", None, (340, 400),
                      [512, 320, 16, 25, 7.0, 0, "fixed", "ddim", 1.0, False],
                      inputs=predict_inputs, outputs=[("flow", "MI2V_FLOW"), ("flow_preview", "IMAGE")])
    for name, src in (("model", loader), ("image", image), ("positive", pos), ("negative", neg)):
        wf.connect(src, 0, predict, name)
    if control is not None:
        wf.connect(control, 0, predict, "control")
    flow_view = wf.node("PreviewImage", None, (340, 280), [], inputs=[("images", "IMAGE")],
                        title="Flow (colour-coded)")
    wf.connect(predict, 1, flow_view, "images")
    render = wf.node("MotionI2VRenderVideo", None, (340, 320), [25, 7.0, 0, "fixed", "ddim", False],
                     inputs=[("model", "MI2V_MODEL"), ("image", "IMAGE"), ("positive", "CONDITIONING"),
                             ("negative", "CONDITIONING"), ("flow", "MI2V_FLOW")],
                     outputs=[("frames", "IMAGE")])
    for name, src in (("model", loader), ("image", image), ("positive", pos), ("negative", neg), ("flow", predict)):
        wf.connect(src, 0, render, name)
    save = wf.node("SaveAnimatedWEBP", None, (360, 460), ["motion_i2v", 8.0, False, 90, "default"],
                   inputs=[("images", "IMAGE")])
    wf.connect(render, 0, save, "images")
    return predict, flow_view, render, save


def _model_inputs():
    """A workflow with the loader (appearance from the checkpoint's MODEL), the prompts and the image.

    :return: ``(wf, loader, pos, neg, image, column)``, column = the checkpoint, prompts and loader
        stacked (the first column of the model workflows)
    """
    wf = Workflow()
    ckpt = _checkpoint(wf)
    loader = _loader(wf)
    wf.connect(ckpt, 0, loader, "appearance_model")
    pos, neg = _text(wf, ckpt)
    image = _image(wf)
    return wf, loader, pos, neg, image, [ckpt, pos, neg, loader]


def drag_brush_workflow():
    wf, loader, pos, neg, image, inputs = _model_inputs()
    note = wf.note(
        "Drag + motion brush: paint the parts that may move, click points to draw where they go "
        "(a single point pins a spot); Play in the editor shows roughly how the image will move. "
        "Queue: flow first (colour preview), then the video. Stage 2's look comes from the "
        "checkpoint's MODEL: any SD-1.5 model and LoRAs work."
    )
    brush = _brush(wf, image)
    encode = wf.node("MotionI2VEncodeFlow", None, (340, 250), [512, 320, 16, 0, 0],
                     inputs=[("model", "MI2V_MODEL"), ("motion", "MI2V_MOTION")], outputs=[("control", "MI2V_CONTROL")])
    wf.connect(loader, 0, encode, "model")
    wf.connect(brush, 1, encode, "motion")
    predict, flow_view, render, save = _predict_and_render(wf, loader, image, pos, neg, control=encode)
    wf.arrange([inputs, [image, note], [brush], [encode, predict, flow_view], [render, save]])
    return wf.to_json()


def text_only_workflow():
    wf, loader, pos, neg, image, inputs = _model_inputs()
    note = wf.note("Text only: the motion comes from the prompt alone; no drags, no brush. "
                   "Queue: flow first (colour preview), then the video.")
    predict, flow_view, render, save = _predict_and_render(wf, loader, image, pos, neg)
    wf.arrange([inputs, [image, note], [predict, flow_view], [render, save]])
    return wf.to_json()


def preview_workflow():
    wf = Workflow()
    image = _image(wf)
    note = wf.note(
        "Motion preview, no weights needed: draw drags and brush (Play in the editor shows the motion "
        "at once), queue, and watch the image pushed along the rough flow made from the drags. "
        "Use it to try drags before running the models."
    )
    brush = _brush(wf, image)
    flow = wf.node("MotionI2VDragsToFlow", None, (320, 200), [512, 320, 16, 0],
                   inputs=[("motion", "MI2V_MOTION")], outputs=[("flow", "MI2V_FLOW")])
    wf.connect(brush, 1, flow, "motion")
    preview = wf.node("MotionI2VPreviewMotion", None, (320, 110), [],
                      inputs=[("image", "IMAGE"), ("flow", "MI2V_FLOW")], outputs=[("frames", "IMAGE")])
    wf.connect(image, 0, preview, "image")
    wf.connect(flow, 0, preview, "flow")
    save = wf.node("SaveAnimatedWEBP", None, (360, 460), ["motion_preview", 8.0, False, 90, "default"],
                   inputs=[("images", "IMAGE")])
    wf.connect(preview, 0, save, "images")
    wf.arrange([[image, note], [brush], [flow, preview], [save]])
    return wf.to_json()


# ---------------------------------------------------------------------------------------------
# Motion beyond drags (camera moves, flow tools): kept apart from the drag workflows above.
# ---------------------------------------------------------------------------------------------

CAMERA_MOVE = {"pan_right": 0.1, "pan_down": 0.0, "zoom_in": 0.3, "rotate_clockwise": 0.0, "dolly_in": 0.0,
               "easing": "ease_in_out"}


def _camera(wf, pos=None, move=CAMERA_MOVE):
    widgets = [512, 320, 16, move["pan_right"], move["pan_down"], move["zoom_in"], move["rotate_clockwise"],
               move["dolly_in"], move["easing"], False, 4.0, 60.0, 4]
    return wf.node("MotionI2VCameraMotion", pos, (340, 440), widgets,
                   inputs=[("depth", "IMAGE,MASK"), ("image", "IMAGE")],
                   outputs=[("flow", "MI2V_FLOW"), ("motion", "MI2V_MOTION")])


def _preview_flow_and_motion(wf, image, flow, prefix):
    """Preview Flow (colours + legend) and Preview Motion (the image warped) saved as a WEBP.

    :return: ``(preview, colours, view, save)`` to arrange
    """
    colours = wf.node("MotionI2VPreviewFlow", None, (300, 60), [],
                      inputs=[("flow", "MI2V_FLOW")], outputs=[("images", "IMAGE")])
    wf.connect(flow, 0, colours, "flow")
    view = wf.node("PreviewImage", None, (300, 280), [], inputs=[("images", "IMAGE")],
                   title="Flow (colour wheel legend)")
    wf.connect(colours, 0, view, "images")
    preview = wf.node("MotionI2VPreviewMotion", None, (300, 110), [],
                      inputs=[("image", "IMAGE"), ("flow", "MI2V_FLOW")], outputs=[("frames", "IMAGE")])
    wf.connect(image, 0, preview, "image")
    wf.connect(flow, 0, preview, "flow")
    save = wf.node("SaveAnimatedWEBP", None, (360, 460), [prefix, 8.0, False, 90, "default"],
                   inputs=[("images", "IMAGE")])
    wf.connect(preview, 0, save, "images")
    return preview, colours, view, save


def _render(wf, loader, image, pos, neg, flow, prefix):
    """Render Video from a ready flow -> Save Animated WEBP. :return: ``(render, save)``"""
    render = wf.node("MotionI2VRenderVideo", None, (340, 320), [25, 7.0, 0, "fixed", "ddim", False],
                     inputs=[("model", "MI2V_MODEL"), ("image", "IMAGE"), ("positive", "CONDITIONING"),
                             ("negative", "CONDITIONING"), ("flow", "MI2V_FLOW")],
                     outputs=[("frames", "IMAGE")])
    for name, src in (("model", loader), ("image", image), ("positive", pos), ("negative", neg), ("flow", flow)):
        wf.connect(src, 0, render, name)
    save = wf.node("SaveAnimatedWEBP", None, (360, 460), [prefix, 8.0, False, 90, "default"],
                   inputs=[("images", "IMAGE")])
    wf.connect(render, 0, save, "images")
    return render, save


def camera_preview_workflow():
    wf = Workflow()
    image = _image(wf)
    note = wf.note(
        "Camera move preview, no weights needed: pan, zoom, roll and dolly by the last frame (the picture moves the "
        "other way), eased. Connect a depth map (e.g. Depth Anything, near = bright) to 'depth' for parallax: near "
        "things then move more than far ones and a dolly differs from a zoom."
    )
    camera = _camera(wf)
    wf.connect(image, 0, camera, "image")
    preview, colours, view, save = _preview_flow_and_motion(wf, image, camera, "camera_preview")
    wf.arrange([[image, note], [camera], [preview, colours, view], [save]])
    return wf.to_json()


def camera_render_workflow():
    wf, loader, pos, neg, image, inputs = _model_inputs()
    note = wf.note(
        "Camera move rendered: Camera Motion's flow drives Render Video directly (no flow prediction). Add a depth "
        "map for parallax. To let stage 1 re-imagine the move instead, connect its 'motion' output to Encode Flow."
    )
    camera = _camera(wf)
    wf.connect(image, 0, camera, "image")
    render, save = _render(wf, loader, image, pos, neg, camera, "motion_i2v_camera")
    wf.arrange([inputs, [image, note], [camera], [render], [save]])
    return wf.to_json()


def flow_tools_workflow():
    wf = Workflow()
    image = _image(wf)
    note = wf.note(
        "Flow tools, no weights needed: the drags' motion added on top of a slow camera pan inside the brushed "
        "region (Combine Flows), made 1.5x stronger and eased out (Scale Flow), saved to output/motion_i2v/ (Save "
        "Flow; Load Flow reads it back) and previewed with the colour-wheel legend."
    )
    brush = _brush(wf, image)
    drags = wf.node("MotionI2VDragsToFlow", None, (320, 200), [512, 320, 16, 0],
                    inputs=[("motion", "MI2V_MOTION")], outputs=[("flow", "MI2V_FLOW")])
    wf.connect(brush, 1, drags, "motion")
    camera = _camera(wf, None, dict(CAMERA_MOVE, zoom_in=0.0, pan_right=0.08, easing="linear"))
    wf.connect(image, 0, camera, "image")
    combine = wf.node("MotionI2VCombineFlows", None, (320, 130), ["add"],
                      inputs=[("base", "MI2V_FLOW"), ("overlay", "MI2V_FLOW"), ("mask", "MASK")],
                      outputs=[("flow", "MI2V_FLOW")])
    wf.connect(camera, 0, combine, "base")
    wf.connect(drags, 0, combine, "overlay")
    wf.connect(brush, 0, combine, "mask")
    scale = wf.node("MotionI2VScaleFlow", None, (320, 110), [1.5, "ease_out"],
                    inputs=[("flow", "MI2V_FLOW")], outputs=[("scaled_flow", "MI2V_FLOW")])
    wf.connect(combine, 0, scale, "flow")
    save_flow = wf.node("MotionI2VSaveFlow", None, (320, 90), ["motion_i2v/flow"],
                        inputs=[("flow", "MI2V_FLOW")], outputs=[("filename", "STRING")])
    wf.connect(scale, 0, save_flow, "flow")
    preview, colours, view, save = _preview_flow_and_motion(wf, image, scale, "flow_tools_preview")
    wf.arrange([[image, note], [brush], [drags, camera], [combine, scale, save_flow], [preview, colours, view], [save]])
    return wf.to_json()


DRIVING_CLIP = "motion_i2v_driving_clip.mp4"  # pick your own clip in Load Video


def video_to_video_workflow():
    wf, loader, pos, neg, image, inputs = _model_inputs()
    note = wf.note(
        "Video to video (motion transfer): Flow From Video measures the driving clip's motion (pick your clip in "
        "Load Video; its first frame should match your image's layout) and Render Video applies it to your image. "
        "A mask limits what follows the clip. Or send the 'motion' output to Encode Flow for Predict Flow."
    )
    clip = wf.node("LoadVideo", None, (320, 340), [DRIVING_CLIP, "video"], outputs=[("VIDEO", "VIDEO")])
    parts = wf.node("GetVideoComponents", None, (320, 100), [], inputs=[("video", "VIDEO")],
                    outputs=[("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT")])
    wf.connect(clip, 0, parts, "video")
    motion = wf.node("MotionI2VFlowFromVideo", None, (340, 300), [512, 320, 16, "dis", True, 4],
                     inputs=[("video", "IMAGE"), ("mask", "MASK"), ("image", "IMAGE")],
                     outputs=[("flow", "MI2V_FLOW"), ("motion", "MI2V_MOTION"), ("unreliable", "MASK")])
    wf.connect(parts, 0, motion, "video")
    wf.connect(image, 0, motion, "image")
    render, save = _render(wf, loader, image, pos, neg, motion, "motion_i2v_v2v")
    preview, colours, view, save_preview = _preview_flow_and_motion(wf, image, motion, "v2v_preview")
    wf.arrange([inputs, [image, note], [clip, parts], [motion, preview, colours], [render, view], [save, save_preview]])
    return wf.to_json()


def long_shot_workflow():
    wf, loader, pos, neg, image, inputs = _model_inputs()
    note = wf.note(
        "Long shot: a 46-frame camera move rendered as three chained 16-frame segments (each starts from the frame "
        "the last one ended on; 'overlap' cross-fades shared frames). One progress bar over all segments."
    )
    camera = _camera(wf, None, dict(CAMERA_MOVE, zoom_in=0.8, pan_right=0.15, easing="linear"))
    camera["widgets_values"][2] = 46  # three 16-frame segments
    wf.connect(image, 0, camera, "image")
    render = wf.node("MotionI2VRenderLongShot", None, (340, 360), [16, 0, 25, 7.0, 0, "fixed", "ddim", False],
                     inputs=[("model", "MI2V_MODEL"), ("image", "IMAGE"), ("positive", "CONDITIONING"),
                             ("negative", "CONDITIONING"), ("flow", "MI2V_FLOW")],
                     outputs=[("frames", "IMAGE")])
    for name, src in (("model", loader), ("image", image), ("positive", pos), ("negative", neg), ("flow", camera)):
        wf.connect(src, 0, render, name)
    save = wf.node("SaveAnimatedWEBP", None, (360, 460), ["motion_i2v_long_shot", 8.0, False, 90, "default"],
                   inputs=[("images", "IMAGE")])
    wf.connect(render, 0, save, "images")
    wf.arrange([inputs, [image, note], [camera], [render], [save]])
    return wf.to_json()


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
# File names, without .json / .jpg. ComfyUI's template browser shows a custom-node template's file
# name as both its title and its description (frontend 1.32 to 1.58), so the name says what the
# workflow does; the number orders the cards. The id above is kept in the JSON as
# extra.mi2v_example, for tests and scripts that look a workflow up.
TEMPLATE_NAMES = {
    "motion_i2v_motion_preview_no_weights": "Motion-I2V 1 - Try drags and brush instantly (no weights needed)",
    "motion_i2v_drag_and_brush": "Motion-I2V 2 - Drags and motion brush to video",
    "motion_i2v_text_only": "Motion-I2V 3 - Motion from the prompt alone",
    "motion_i2v_camera_move_no_weights": "Motion-I2V 4 - Camera move preview (no weights needed)",
    "motion_i2v_camera_move": "Motion-I2V 5 - Camera move to video",
    "motion_i2v_flow_tools_no_weights": "Motion-I2V 6 - Combine, scale and save flows (no weights needed)",
    "motion_i2v_video_to_video": "Motion-I2V 7 - Video to video, motion from a driving clip",
    "motion_i2v_long_shot": "Motion-I2V 8 - Long shot in three segments",
}


def build(example_id: str) -> dict:
    workflow = WORKFLOWS[example_id]()
    workflow["extra"]["mi2v_example"] = example_id
    return workflow


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
    pictures = {  # by example id
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
    for example_id in WORKFLOWS:
        text = json.dumps(build(example_id), indent=2) + "\n"
        path = OUT / f"{TEMPLATE_NAMES[example_id]}.json"
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
            continue
        OUT.mkdir(exist_ok=True)
        path.write_text(text)
    expected = {f"{TEMPLATE_NAMES[i]}{ext}" for i in WORKFLOWS for ext in (".json", ".jpg")}
    leftovers = sorted(str(p) for p in OUT.glob("*") if p.suffix in (".json", ".jpg") and p.name not in expected)
    if args.check:
        if stale or leftovers:
            print("out of date (run scripts/make_example_workflows.py):", *stale, *leftovers, sep="\n  ")
            return 1
        return 0
    for path in leftovers:  # an example renamed or removed
        Path(path).unlink()
    from tests.harness.comfy_server import default_comfyui_dir  # noqa: E402  (same ComfyUI as the scripts)

    import cv2

    for example_id, picture in render_thumbnails(default_comfyui_dir()).items():
        cv2.imwrite(str(OUT / f"{TEMPLATE_NAMES[example_id]}.jpg"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print("wrote", ", ".join(WORKFLOWS), "to", OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
