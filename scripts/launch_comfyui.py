"""Start ComfyUI's main.py, working around a CPU-only torch paired with PyPI's CUDA-built torchvision.

    python scripts/launch_comfyui.py COMFYUI_DIR [main.py arguments...]

PyPI only has CUDA builds of torchvision. Next to a CPU torch its compiled ops fail to load, and
`import torchvision` then dies while registering fake kernels for `torchvision::nms`
("operator torchvision::nms does not exist"). ComfyUI imports torchvision at start-up, although
nothing we use needs its compiled ops. So, just before torchvision is first imported, we declare the
schemas of the ops it registers fake kernels for; torchvision then imports and only those ops stay
unusable. On a matching install torchvision's own library loads first and nothing is declared.

`install_torchvision_shim()` is importable so in-process tests can do the same.
"""
import importlib.abc
import os
import runpy
import sys

_TORCHVISION_OP_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


class _DeclareTorchvisionOps(importlib.abc.MetaPathFinder):
    """Runs once, on the first import of torchvision, then steps aside for the real finders."""

    def __init__(self):
        self.library = None  # the torch.library.Library must stay referenced or the ops vanish

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)
        import torch

        # A torchvision built for this torch registers its ops when its library loads; declaring
        # them first would then abort the process (duplicate registration). So try that library
        # first and declare the schemas only when it cannot load.
        if not hasattr(torch.ops.torchvision, "nms") and not _load_torchvision_ops(torch):
            self.library = torch.library.Library("torchvision", "DEF")
            for schema in _TORCHVISION_OP_SCHEMAS:
                self.library.define(schema)
            _DeclareTorchvisionOps.keep_alive = self.library
        return None


def _load_torchvision_ops(torch) -> bool:
    """Load torchvision's compiled ops the way torchvision itself does; False if they cannot load."""
    import glob
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    for location in spec.submodule_search_locations:
        for lib in glob.glob(os.path.join(location, "_C*.so")) + glob.glob(os.path.join(location, "_C*.pyd")):
            try:
                torch.ops.load_library(lib)
                return hasattr(torch.ops.torchvision, "nms")
            except (OSError, RuntimeError):
                return False
    return False


def install_torchvision_shim():
    """Idempotent; lazy, so torch is not imported before ComfyUI sets itself up."""
    if "torchvision" in sys.modules:
        return
    if not any(isinstance(f, _DeclareTorchvisionOps) for f in sys.meta_path):
        sys.meta_path.insert(0, _DeclareTorchvisionOps())


def main(argv):
    if len(argv) < 2 or not os.path.isfile(os.path.join(argv[1], "main.py")):
        sys.exit("usage: launch_comfyui.py COMFYUI_DIR [main.py args...]  (COMFYUI_DIR must contain main.py)")
    comfy_dir = os.path.abspath(argv[1])
    install_torchvision_shim()
    main_py = os.path.join(comfy_dir, "main.py")
    sys.argv = [main_py] + argv[2:]
    sys.path.insert(0, comfy_dir)
    os.chdir(comfy_dir)  # main.py resolves some paths relative to the working directory
    runpy.run_path(main_py, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv)
