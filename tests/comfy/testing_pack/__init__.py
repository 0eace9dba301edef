"""Test-only ComfyUI pack: stand-ins for nodes that need real weights we do not have in tests.

- `MI2VTestConditioning`: ComfyUI's CLIP Text Encode needs a real SD1.5 CLIP checkpoint; this emits a
  seeded random CONDITIONING of the shape CLIPTextEncode produces, so workflows can run end to end.
- `MI2VTestTinySD15Model`: a real ComfyUI SD-1.5 MODEL (ModelPatcher around model_base.BaseModel with
  ComfyUI's own UNetModel) built from a tiny LDM checkpoint. Load Checkpoint cannot build it:
  ComfyUI's model detection reads the tiny sizes from the weights correctly, but then picks the model
  family by exact constants (SD15 = context_dim 768, model_channels 320), finds none for
  context_dim 32 / model_channels 32, and the file is rejected ("Could not detect model type"). So this
  node does the same steps with the family named: detect_unet_config -> supported_models.SD15 ->
  get_model -> load_model_weights -> ModelPatcher.
- `MI2VTestSaveTensor`: writes an IMAGE batch losslessly to output/mi2v_tensors/<name>.safetensors,
  so tests can compare renders number for number (PNG would round to 8 bits).
- `MI2VTestInterruptAfterSteps`: passes an IMAGE through and arms an interrupt that fires from inside
  the progress callback of the given sampling step (as POST /interrupt does, but at a known step),
  so interrupt tests do not race the sampler.
- `MI2VTestInspect`: after the node it is linked to, writes output/mi2v_tensors/<name>.json with the
  `load_models_gpu` calls since the last inspection (which parts, memory_required, force_full_load),
  the loader's build counters and the weight sets alive in memory, and <name>.weights.safetensors with the
  requested weights of the Motion-I2V model handle.
"""

import gc
import json
import os
import sys

import torch
from comfy_api.latest import ComfyExtension, io

import comfy.model_management
import comfy.utils

MOTION_MODEL = io.Custom("MI2V_MODEL")


def schema(node_id: str, name: str, inputs: list, outputs: list, output_node: bool = False) -> io.Schema:
    return io.Schema(node_id=node_id, display_name=name, category="testing", inputs=inputs, outputs=outputs,
                     is_output_node=output_node)
_LOADS = []  # one entry per load_models_gpu call: ids of the patchers, memory_required, force_full_load
_INTERRUPT_AT = {"step": None}


def _recording(load_models_gpu):
    def load(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
             force_full_load=False):
        _LOADS.append({"ids": [id(m) for m in models],
                       "classes": [type(getattr(m, "model", m)).__name__ for m in models],
                       "memory_required": memory_required, "force_full_load": force_full_load})
        return load_models_gpu(models, memory_required=memory_required, force_patch_weights=force_patch_weights,
                               minimum_memory_required=minimum_memory_required, force_full_load=force_full_load)
    return load


def _interrupting(update_absolute):
    def update(self, value, total=None, preview=None):
        update_absolute(self, value, total, preview)
        step = _INTERRUPT_AT["step"]
        if step is not None and value >= step:
            _INTERRUPT_AT["step"] = None
            import nodes  # ComfyUI's nodes.py: what the /interrupt route calls
            nodes.interrupt_processing(True)
    return update


comfy.model_management.load_models_gpu = _recording(comfy.model_management.load_models_gpu)
comfy.utils.ProgressBar.update_absolute = _interrupting(comfy.utils.ProgressBar.update_absolute)


class TestConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema("MI2VTestConditioning", "Test Conditioning (random)", [
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1),
                io.Int.Input("tokens", default=77, min=1, max=308),
                io.Int.Input("dim", default=768, min=1, max=4096),
            ], [io.Conditioning.Output()])

    @classmethod
    def execute(cls, seed, tokens, dim):
        g = torch.Generator().manual_seed(seed)
        cond = torch.randn(1, tokens, dim, generator=g)
        return io.NodeOutput([[cond, {"pooled_output": torch.zeros(1, dim)}]])


class TestTinySD15Model(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        ckpt = io.String.Input("ckpt_name", tooltip="An LDM single-file checkpoint in models/checkpoints.")
        return schema("MI2VTestTinySD15Model", "Test Tiny SD-1.5 MODEL", [ckpt], [io.Model.Output()])

    @classmethod
    def execute(cls, ckpt_name):
        import comfy.model_detection
        import comfy.model_management as mm
        import comfy.model_patcher
        import comfy.supported_models
        import comfy.utils
        import folder_paths

        prefix = "model.diffusion_model."
        sd = comfy.utils.load_torch_file(folder_paths.get_full_path_or_raise("checkpoints", ckpt_name), safe_load=True)
        unet_config = comfy.model_detection.detect_unet_config(sd, prefix)
        model_config = comfy.supported_models.SD15(unet_config)  # adds SD15's num_heads=8 / num_head_channels=-1
        model_config.set_inference_dtype(torch.float32, None)
        model = model_config.get_model(sd, prefix)
        model.load_model_weights(sd, prefix)
        patcher = comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                                   offload_device=mm.unet_offload_device())
        return io.NodeOutput(patcher)


class TestSaveTensor(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema("MI2VTestSaveTensor", "Test Save Tensor", [io.Image.Input("images"), io.String.Input("name")],
                      [], output_node=True)

    @classmethod
    def execute(cls, images, name):
        import folder_paths
        from safetensors.torch import save_file

        folder = os.path.join(folder_paths.get_output_directory(), "mi2v_tensors")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{name}.safetensors")
        save_file({"images": images.detach().float().cpu().contiguous()}, path)
        return io.NodeOutput(ui={"mi2v_tensors": [{"filename": os.path.basename(path), "subfolder": "mi2v_tensors"}]})


class TestSaveLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema("MI2VTestSaveLatent", "Test Save Latent", [io.Latent.Input("latent"), io.String.Input("name")],
                      [], output_node=True)

    @classmethod
    def execute(cls, latent, name):
        import folder_paths
        from safetensors.torch import save_file

        folder = os.path.join(folder_paths.get_output_directory(), "mi2v_tensors")
        os.makedirs(folder, exist_ok=True)
        save_file({"samples": latent["samples"].detach().float().cpu().contiguous()},
                  os.path.join(folder, f"{name}.latent.safetensors"))
        return io.NodeOutput()


class TestInterruptAfterSteps(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema("MI2VTestInterruptAfterSteps", "Test Interrupt After Steps",
                      [io.Image.Input("image"), io.Int.Input("steps", default=1, min=1, max=1000)], [io.Image.Output()])

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return float("nan")  # arm on every run

    @classmethod
    def execute(cls, image, steps):
        _INTERRUPT_AT["step"] = steps
        return io.NodeOutput(image)


class TestInspect(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        inputs = [MOTION_MODEL.Input("model"), io.AnyType.Input("after"), io.String.Input("name"),
                  io.String.Input("weights", default="", tooltip="stage2.unet:<key>,stage1.flow_vae:<key>,...")]
        return schema("MI2VTestInspect", "Test Inspect Motion-I2V", inputs, [], output_node=True)

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return float("nan")

    @classmethod
    def execute(cls, model, after, name, weights=""):
        import folder_paths
        from safetensors.torch import save_file

        loader = sys.modules[type(model).__module__.rsplit(".", 1)[0] + ".model_loading"]
        parts = {id(p): part for part, p in model.patchers.items()}
        loads = [{"parts": [parts.get(i, cls_name) for i, cls_name in zip(e["ids"], e["classes"])],
                  "memory_required": e["memory_required"], "force_full_load": e["force_full_load"]}
                 for e in _LOADS]
        _LOADS.clear()
        gc.collect()
        report = {"loads": loads, "stats": dict(loader.STATS), "alive": loader.alive_weight_sets(),
                  "shared_vae": model.patchers.get("vae") is model.patchers.get("image_vae"),
                  "dtypes": {part: str(next(p.model.parameters()).dtype) for part, p in model.patchers.items()}}
        folder = os.path.join(folder_paths.get_output_directory(), "mi2v_tensors")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{name}.json"), "w") as f:
            json.dump(report, f)
        tensors = {}
        for item in filter(None, (w.strip() for w in weights.split(","))):
            where, key = item.split(":", 1)
            stage, part = where.split(".")
            tensors[item] = getattr(getattr(model, stage), part).state_dict()[key].detach().float().cpu().contiguous()
        if tensors:
            save_file(tensors, os.path.join(folder, f"{name}.weights.safetensors"))
        return io.NodeOutput()


class TestingPack(ComfyExtension):
    async def get_node_list(self):
        return [TestConditioning, TestTinySD15Model, TestSaveTensor, TestSaveLatent, TestInterruptAfterSteps, TestInspect]


async def comfy_entrypoint():
    return TestingPack()
