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
"""

import os

import torch
from comfy_api.latest import ComfyExtension, io


class TestConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MI2VTestConditioning",
            display_name="Test Conditioning (random)",
            category="testing",
            inputs=[
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1),
                io.Int.Input("tokens", default=77, min=1, max=308),
                io.Int.Input("dim", default=768, min=1, max=4096),
            ],
            outputs=[io.Conditioning.Output()],
        )

    @classmethod
    def execute(cls, seed, tokens, dim):
        g = torch.Generator().manual_seed(seed)
        cond = torch.randn(1, tokens, dim, generator=g)
        return io.NodeOutput([[cond, {"pooled_output": torch.zeros(1, dim)}]])


class TestTinySD15Model(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MI2VTestTinySD15Model",
            display_name="Test Tiny SD-1.5 MODEL",
            category="testing",
            inputs=[io.String.Input("ckpt_name", tooltip="An LDM single-file checkpoint in models/checkpoints.")],
            outputs=[io.Model.Output()],
        )

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
        return io.Schema(
            node_id="MI2VTestSaveTensor",
            display_name="Test Save Tensor",
            category="testing",
            inputs=[io.Image.Input("images"), io.String.Input("name")],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, name):
        import folder_paths
        from safetensors.torch import save_file

        folder = os.path.join(folder_paths.get_output_directory(), "mi2v_tensors")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{name}.safetensors")
        save_file({"images": images.detach().float().cpu().contiguous()}, path)
        return io.NodeOutput(ui={"mi2v_tensors": [{"filename": os.path.basename(path), "subfolder": "mi2v_tensors"}]})


class TestingPack(ComfyExtension):
    async def get_node_list(self):
        return [TestConditioning, TestTinySD15Model, TestSaveTensor]


async def comfy_entrypoint():
    return TestingPack()
