"""Notes a node shows on itself after it runs (web/motion_notes.js draws the ui["mi2v_notes"] list)."""

MAX_NOTES = 20  # the list travels over the websocket; keep it short


def node_notes(messages) -> list[str]:
    """At most MAX_NOTES messages, the rest counted in a last line."""
    messages = [str(m) for m in messages]
    if len(messages) > MAX_NOTES:
        return messages[:MAX_NOTES - 1] + [f"... and {len(messages) - MAX_NOTES + 1} more"]
    return messages
