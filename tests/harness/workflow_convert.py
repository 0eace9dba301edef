"""Turn a UI-format workflow (what the frontend saves; example_workflows/*.json) into an API prompt.

    prompt = workflow_to_prompt(json.load(f), client.object_info())

What the frontend's graphToPrompt does, for the parts our workflows use:
- each node becomes {"class_type", "inputs", "_meta": {"title"}} under its id (as a string);
- linked inputs become [source node id, output slot]; Reroute nodes are followed to their source;
- widget values are matched to the node's widget inputs in /object_info order (required, then
  optional), skipping the extra values the frontend stores after some widgets: the
  "control_after_generate" mode after seeds ("fixed", "randomize", ...) and the upload button
  value after image/video upload combos;
- muted nodes (mode 2) and frontend-only nodes (Note, MarkdownNote, Reroute, PrimitiveNode) are
  left out; a PrimitiveNode's value reaches its targets through their own widgets_values.
Bypassed nodes (mode 4) are not supported (ValueError).
"""

from __future__ import annotations

from typing import Any

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
CONTROL_MODES = {"fixed", "increment", "decrement", "randomize"}
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload", "upload")
MODE_MUTED, MODE_BYPASS = 2, 4


def _is_widget(spec: list, extra_widget_types: set[str]) -> bool:
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if options.get("forceInput"):
        return False
    if isinstance(kind, list):  # old-style combo: the list of choices
        return True
    return kind in WIDGET_TYPES or kind in extra_widget_types


def widget_inputs(node_info: dict, extra_widget_types: set[str] = frozenset()) -> list[tuple[str, list]]:
    """(name, spec) of each widget input of a node class, in the frontend's widget order."""
    inputs = node_info.get("input", {})
    order = node_info.get("input_order") or {k: list(v) for k, v in inputs.items()}
    out = []
    for section in ("required", "optional"):
        for name in order.get(section, []):
            spec = inputs.get(section, {}).get(name)
            if spec is not None and _is_widget(spec, extra_widget_types):
                out.append((name, spec))
    return out


def _has_control_widget(name: str, spec: list) -> bool:
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    # The frontend adds the mode widget when the spec asks for it, and for INTs named seed/noise_seed.
    return bool(options.get("control_after_generate")) or (spec[0] == "INT" and name in ("seed", "noise_seed"))


def _has_upload_widget(spec: list) -> bool:
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return any(options.get(k) for k in UPLOAD_OPTIONS)


def widget_values(node: dict, node_info: dict, extra_widget_types: set[str] = frozenset()) -> dict[str, Any]:
    """Map a UI node's widgets_values onto its widget input names."""
    values = node.get("widgets_values")
    if values is None:
        return {}
    widgets = widget_inputs(node_info, extra_widget_types)
    if isinstance(values, dict):  # some packs save {name: value}
        return {name: values[name] for name, _ in widgets if name in values}
    result, i = {}, 0
    for name, spec in widgets:
        if i >= len(values):
            break
        result[name] = values[i]
        i += 1
        if i < len(values) and _has_control_widget(name, spec) and values[i] in CONTROL_MODES:
            i += 1
        elif i < len(values) and _has_upload_widget(spec) and isinstance(values[i], str) and values[i] in ("image", "video", "audio", "upload"):
            i += 1
    return result


def workflow_to_prompt(
    workflow: dict, object_info: dict, extra_widget_types: set[str] = frozenset()
) -> dict[str, dict]:
    """Convert a UI workflow to an API prompt. `object_info` is GET /object_info.

    `extra_widget_types`: custom input types that the pack's frontend turns into widgets.
    """
    nodes = {int(n["id"]): n for n in workflow["nodes"]}
    links = {}
    for link in workflow.get("links", []):
        if isinstance(link, dict):  # newer serialisation
            links[link["id"]] = (link["origin_id"], link["origin_slot"])
        else:  # [id, origin_id, origin_slot, target_id, target_slot, type]
            links[link[0]] = (link[1], link[2])

    def source_of(link_id: int) -> tuple[int, int]:
        origin, slot = links[link_id]
        seen = set()
        while nodes[origin]["type"] == "Reroute":  # follow reroutes back to the real output
            if origin in seen:
                raise ValueError(f"Reroute loop at node {origin}")
            seen.add(origin)
            upstream = nodes[origin].get("inputs", [{}])[0].get("link")
            if upstream is None:
                raise ValueError(f"Reroute node {origin} has no input")
            origin, slot = links[upstream]
        return origin, slot

    prompt = {}
    for node_id, node in sorted(nodes.items()):
        kind = node["type"]
        if kind in FRONTEND_ONLY or node.get("mode", 0) == MODE_MUTED:
            continue
        if node.get("mode", 0) == MODE_BYPASS:
            raise ValueError(f"node {node_id} ({kind}) is bypassed; bypass is not supported by this converter")
        if kind not in object_info:
            raise ValueError(f"node {node_id}: type {kind!r} is not known to the server (missing pack?)")
        info = object_info[kind]
        inputs = widget_values(node, info, extra_widget_types)
        for slot in node.get("inputs", []):
            if slot.get("link") is None:
                continue
            origin, out_slot = source_of(slot["link"])
            if nodes[origin]["type"] == "PrimitiveNode":
                continue  # its value is already in this node's widgets_values
            if nodes[origin].get("mode", 0) == MODE_MUTED:
                continue
            inputs[slot["name"]] = [str(origin), out_slot]
        prompt[str(node_id)] = {
            "class_type": kind,
            "inputs": inputs,
            "_meta": {"title": node.get("title") or info.get("display_name", kind)},
        }
    return prompt
