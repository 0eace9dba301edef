"""Test-only ComfyUI pack: stand-ins for nodes that need real weights we do not have in tests.

ComfyUI's CLIP Text Encode needs a real SD1.5 CLIP checkpoint; `MI2VTestConditioning` emits a
seeded random CONDITIONING of the shape CLIPTextEncode produces, so workflows can run end to end.
"""

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


class TestingPack(ComfyExtension):
    async def get_node_list(self):
        return [TestConditioning]


async def comfy_entrypoint():
    return TestingPack()
