"""Motion-I2V node pack for ComfyUI (V3 node API).

ComfyUI loads this file as the pack's module: it finds `comfy_entrypoint` (the V3 extension) and
WEB_DIRECTORY (the motion-brush widget). The nodes live in `nodes/`, the model code in the
ComfyUI-free `motion_i2v_core/`.
"""

WEB_DIRECTORY = "./web"

# pytest imports this file while collecting tests/ (the repo root is a package). Outside ComfyUI
# there is no comfy_api, and the pure core tests must still run, so the nodes load only inside ComfyUI.
try:
    import comfy_api.latest  # noqa: F401
except ImportError:
    pass
else:
    import os
    import sys

    # The nodes import the core as the top-level package `motion_i2v_core`, the same name the tests
    # and the CLI use, so one copy of it is loaded. Appended, not prepended: this folder also holds
    # a `nodes` package, which must never shadow ComfyUI's own nodes.py.
    _here = os.path.dirname(os.path.abspath(__file__))
    if _here not in sys.path:
        sys.path.append(_here)

    from .nodes import comfy_entrypoint

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
