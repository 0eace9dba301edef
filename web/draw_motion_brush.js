// ComfyUI extension: mounts the motion-brush / trajectory editor on the Draw Motion Brush node.
//
// The node's `hints_json` input has the custom type MI2V_HINTS_JSON; getCustomWidgets() supplies
// a DOM widget for it whose value (getValue/setValue) is the format-v1 JSON string. So the value
// lives in widgets_values, goes into the API prompt as a plain string, and is restored by
// save/load, copy/paste and the graph's undo like any other widget value.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { DEFAULT_TARGET, MotionBrushEditor } from "./motion_brush_editor.js";

// Must match nodes/draw_motion_brush.py (NODE_ID, HINTS_WIDGET_TYPE).
const NODE_ID = "MotionI2VDrawMotionBrush";
const WIDGET_TYPE = "MI2V_HINTS_JSON";
const IMAGE_INPUT = "image";
const MOTION_TYPE = "MI2V_MOTION"; // the output is found by type: its slot name varies (frontend versions)
// Nodes whose size / frame widgets say what the drawing will drive (Play follows the first found).
const TARGET_NODES = ["MotionI2VDragsToFlow", "MotionI2VEncodeFlow"];
const EDITOR_MIN_HEIGHT = 300;
const NEW_NODE_SIZE = [480, 480];
// How often the editor checks which file the linked Load Image node shows. Polling a string is
// cheap and catches every way the file can change (picker, upload, paste, relink, Vue widgets).
const SOURCE_POLL_MS = 400;

function chainCallback(object, name, callback) {
  const original = object[name];
  object[name] = function (...args) {
    const result = original?.apply(this, args);
    callback.apply(this, args);
    return result;
  };
}

function viewUrl({ filename, subfolder = "", type = "input" }) {
  return api.apiURL(`/view?${new URLSearchParams({ filename, type, subfolder })}`);
}

/** A Load Image widget value ("dir/name.png" or "name.png [output]") -> /view parameters. */
function parseImageWidgetValue(value) {
  let name = value;
  let type = "input";
  const annotated = /^(.*) \[(input|output|temp)\]$/.exec(value);
  if (annotated) [, name, type] = annotated;
  const slash = name.lastIndexOf("/");
  return { filename: name.slice(slash + 1), subfolder: slash >= 0 ? name.slice(0, slash) : "", type };
}

/** The node feeding `inputName`, looking through Reroute nodes. Uses the node API, not the
 * slots' `link` fields (deprecated in newer frontends). */
function linkedSourceNode(node, inputName) {
  let current = node;
  let slot = node.findInputSlot?.(inputName) ?? -1;
  for (let hops = 0; slot >= 0 && current.graph && hops < 32; hops++) {
    const source = current.getInputNode?.(slot);
    if (!source) return null;
    if (source.type !== "Reroute") return source;
    current = source;
    slot = 0;
  }
  return null;
}

/** Nodes fed by the output of type `outputType`, looking through Reroute nodes (breadth first). */
function linkedTargetNodes(node, outputType) {
  const found = [];
  let frontier = [[node, node.outputs?.findIndex((o) => o.type === outputType) ?? -1]];
  for (let hops = 0; frontier.length && hops < 32; hops++) {
    const next = [];
    for (const [current, slot] of frontier) {
      if (slot < 0 || !current.graph) continue;
      for (const target of current.getOutputNodes?.(slot) ?? []) {
        if (target.type === "Reroute") next.push([target, 0]);
        else found.push(target);
      }
    }
    frontier = next;
  }
  return found;
}

/** Size, frames and drag-square size of the first Drags To Flow / Encode Flow the drawing feeds. */
function linkedTarget(node) {
  const target = linkedTargetNodes(node, MOTION_TYPE).find((n) => TARGET_NODES.includes(n.comfyClass ?? n.type));
  if (!target) return DEFAULT_TARGET;
  const value = (name, fallback) => {
    const v = Number(target.widgets?.find((w) => w.name === name)?.value);
    return Number.isFinite(v) ? v : fallback;
  };
  return {
    width: value("width", DEFAULT_TARGET.width),
    height: value("height", DEFAULT_TARGET.height),
    frames: value("num_frames", DEFAULT_TARGET.frames),
    flowUnit: value("flow_unit", 0),
  };
}

/** /view URL of the image file a linked Load Image-style node shows, or null. */
function linkedImageUrl(node) {
  const source = linkedSourceNode(node, IMAGE_INPUT);
  const widget = source?.widgets?.find((w) => w.name === "image" && typeof w.value === "string" && w.value);
  return widget ? viewUrl(parseImageWidgetValue(widget.value)) : null;
}

function recordGraphChange() {
  const tracker = app.extensionManager?.workflow?.activeWorkflow?.changeTracker;
  // captureCanvasState() replaced checkState() (deprecated, warns) in newer frontends.
  if (tracker?.captureCanvasState) tracker.captureCanvasState();
  else tracker?.checkState?.();
}

/** Loads reference images into the editor; a later request supersedes an earlier one. */
class ReferenceLoader {
  constructor(editor) {
    this.editor = editor;
    this.generation = 0;
  }

  /** `changed`: the user picked another picture (the editor then asks about an existing drawing). */
  load(url, width, height, changed = false) {
    const generation = ++this.generation;
    const img = new Image();
    img.onload = () => {
      if (generation === this.generation && !this.editor._destroyed) this.editor.setReference(img, width, height, { changed });
    };
    img.onerror = () => {
      if (generation === this.generation) console.warn(`[Motion-I2V] Draw Motion Brush: could not load reference image ${url}`);
    };
    img.src = url;
  }

  cancel() {
    this.generation++;
  }
}

function createEditorWidget(node, inputName, inputData) {
  const editor = new MotionBrushEditor({ value: inputData?.[1]?.default ?? "" });
  const widget = node.addDOMWidget(inputName, WIDGET_TYPE, editor.element, {
    getValue: () => editor.getValue(),
    setValue: (value) => editor.setValue(value),
    getMinHeight: () => EDITOR_MIN_HEIGHT,
    hideOnZoom: false,
  });
  editor.onChange = () => {
    node.setDirtyCanvas?.(true, false);
    recordGraphChange();
  };
  // Tool and brush radius are kept with the workflow (node properties), not in the hints value.
  node.properties ??= {};
  editor.onToolChange = ({ tool, brushRadius }) => {
    node.properties.mi2v_tool = tool;
    node.properties.mi2v_brush_radius = brushRadius;
  };
  const restoreTool = () => {
    const { mi2v_tool: tool, mi2v_brush_radius: radius } = node.properties ?? {};
    editor.restoreTool({ tool, brushRadius: radius });
  };
  widget.editor = editor;
  node.mi2vEditor = editor;

  const loader = new ReferenceLoader(editor);
  let lastLinkedUrl = null;
  const pollLinkedImage = () => {
    editor.setTarget(linkedTarget(node));
    editor.setImageConnected(Boolean(node.isInputConnected?.(node.findInputSlot?.(IMAGE_INPUT) ?? -1)));
    const url = linkedImageUrl(node);
    if (url === lastLinkedUrl) return;
    const previous = lastLinkedUrl;
    lastLinkedUrl = url;
    if (url) loader.load(url, undefined, undefined, previous !== null);
    else if (!node.isInputConnected?.(node.findInputSlot?.(IMAGE_INPUT) ?? -1)) {
      // Unplugged: no stale picture (a run's preview of another source is still offered on load).
      loader.cancel();
      editor.clearReference();
    }
  };
  const pollTimer = setInterval(pollLinkedImage, SOURCE_POLL_MS);
  // Check at once too (after the graph has wired the links), so the image shows without a wait.
  setTimeout(pollLinkedImage, 0);

  // After a run the node sends back the image it received (a temp-folder preview) and its true size.
  chainCallback(node, "onExecuted", function (output) {
    const ref = output?.mi2v_reference?.[0];
    if (!ref?.filename) return;
    this.properties.mi2v_reference = ref;
    loader.load(viewUrl(ref), ref.width, ref.height);
  });
  // A reloaded workflow whose image does not come from Load Image: try the last run's preview.
  chainCallback(node, "onConfigure", function () {
    restoreTool();
    setTimeout(() => {
      const ref = this.properties?.mi2v_reference;
      if (ref?.filename && !linkedImageUrl(this)) loader.load(viewUrl(ref), ref.width, ref.height);
    }, 0);
  });
  chainCallback(node, "onRemoved", () => {
    clearInterval(pollTimer);
    loader.cancel();
    editor.destroy();
  });
  return widget;
}

const EXTENSION_NAME = "motion_i2v.draw_motion_brush";

const extension = {
  name: EXTENSION_NAME,
  getCustomWidgets() {
    return {
      [WIDGET_TYPE](node, inputName, inputData) {
        return { widget: createEditorWidget(node, inputName, inputData) };
      },
    };
  },
  nodeCreated(node) {
    if (node.comfyClass !== NODE_ID) return;
    // Room for the editor on a fresh node; a loaded workflow then restores its saved size.
    node.setSize([Math.max(node.size[0], NEW_NODE_SIZE[0]), Math.max(node.size[1], NEW_NODE_SIZE[1])]);
  },
};

// A pack folder named differently from the pack's registry name gets its web folder served twice
// (ComfyUI registers WEB_DIRECTORY and pyproject's [tool.comfy] web); register only once.
if (!app.extensions?.some((e) => e.name === EXTENSION_NAME)) app.registerExtension(extension);
