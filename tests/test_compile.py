"""torch.compile readiness: each UNet forward is one graph with no breaks, timestep tensors never recompile,
and a forward on device tensors copies nothing from the host and never synchronises.

Tiny 2-level configs on CPU; tracing is the slow part, so each test traces once.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from motion_i2v_core import ops
from motion_i2v_core.models.config import UNetConfig
from motion_i2v_core.models.embeddings import temporal_position_table
from motion_i2v_core.models.unet3d import FlowUNet, RenderUNet
from motion_i2v_core.ops.motion_attention import motion_augmented_attention

CFG = dict(block_out_channels=(32, 32), layers_per_block=1, cross_attention_dim=16, norm_num_groups=8,
           attention_heads=8)


def frozen(model):
    return model.eval().requires_grad_(False)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def flow_call():
    torch.manual_seed(0)
    model = frozen(FlowUNet(UNetConfig(in_channels=8, stride_embedding=True, **CFG)))
    args = (torch.randn(2, 8, 3, 8, 8), torch.tensor(500), torch.tensor([[8.0, 16.0, 24.0]]), torch.randn(2, 6, 16))
    return model, args, {"control": torch.randn(2, 5, 3, 8, 8)}


def test_flow_unet_with_controlnet_is_one_graph():
    model, args, kwargs = flow_call()
    with torch.no_grad():
        explained = torch._dynamo.explain(model)(*args, **kwargs)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1


def test_render_unet_is_one_graph_whatever_runs_the_motion_attention():
    """The motion attention is one opaque node (models/compiled_ops.py). A backend that dynamo cannot trace
    (as a Triton launch) is selected, so the graph would break if its body were traced; the other ops fall
    back to torch, so this is also the torch backend's graph."""
    calls = []

    def untraceable(x, flow, **kwargs):
        calls.append(x.shape)
        torch._dynamo.graph_break()
        return ops.implementation("motion_augmented_attention")(x, flow, **kwargs)

    ops.register("motion_augmented_attention", "untraceable_test", untraceable, auto=False)
    try:
        torch.manual_seed(0)
        model = frozen(RenderUNet(UNetConfig(**CFG)))
        sample, text, flow = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 6, 16), torch.randn(1, 3, 2, 64, 64) * 4
        with ops.use_backend("untraceable_test"), torch.no_grad():
            explained = torch._dynamo.explain(model)(sample, torch.tensor(300), text, flow=flow)
    finally:
        ops.unregister("motion_augmented_attention", "untraceable_test")
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1
    assert calls, "the selected backend did not run"


def test_timestep_tensors_do_not_recompile_and_match_eager():
    torch.manual_seed(0)
    model = frozen(FlowUNet(UNetConfig(in_channels=8, stride_embedding=True, **CFG), with_controlnet=False))
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    compiled = torch.compile(model, backend=counting_backend, fullgraph=True)
    sample, stride, text = torch.randn(2, 8, 3, 8, 8), torch.tensor([[8.0, 16.0, 24.0]]), torch.randn(2, 6, 16)
    with torch.no_grad():
        for t in (900, 500, 1):
            timestep = torch.tensor(t)
            assert torch.equal(compiled(sample, timestep, stride, text), model(sample, timestep, stride, text))
    assert len(graphs) == 1


def test_opaque_motion_attention_op_matches_the_reference():
    torch.manual_seed(0)
    batch, frames, h, w, c, heads = 2, 3, 4, 5, 16, 4
    x = torch.randn(batch * frames, h * w, c)
    flow = torch.randn(1, frames, 2, h, w) * 2
    pe = temporal_position_table(c, 8)
    wq, wk, wv = (torch.randn(c, c) / 4 for _ in range(3))
    args = (x, flow, pe, wq, wk, wv, frames, h, w, heads, False)
    torch.library.opcheck(torch.ops.motion_i2v.motion_augmented_attention.default, args)
    out = torch.ops.motion_i2v.motion_augmented_attention(*args)
    ref = motion_augmented_attention(x, flow, num_frames=frames, height=h, width=w, pe=pe, heads=heads,
                                     w_q=wq, w_k=wk, w_v=wv)
    assert torch.equal(out, ref)


class HostTraffic(TorchDispatchMode):
    """Records device reads (``.item()``-like syncs) and ops that mix host tensors into device work (a
    host-to-device copy on a GPU). Meta tensors stand in for the device."""

    def __init__(self):
        super().__init__()
        self.events = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
        if func is torch.ops.aten._local_scalar_dense.default:
            self.events.append(f"sync: {func}")
        elif {"cpu", "meta"} <= {t.device.type for t in tensors}:
            self.events.append(f"host tensor in {func}")
        return out


def test_unet_forwards_copy_nothing_from_the_host_and_never_sync():
    meta = torch.device("meta")
    flow_unet = FlowUNet(UNetConfig(in_channels=8, stride_embedding=True, **CFG), device=meta).eval()
    render = RenderUNet(UNetConfig(**CFG), device=meta).eval()
    text = torch.empty(2, 6, 16, device=meta)
    with torch.no_grad(), HostTraffic() as traffic:
        flow_unet(torch.empty(2, 8, 3, 8, 8, device=meta), torch.empty((), device=meta), torch.empty(1, 3, device=meta),
                  text, control=torch.empty(2, 5, 3, 8, 8, device=meta))
        render(torch.empty(2, 4, 3, 8, 8, device=meta), torch.empty(2, device=meta), text,
               flow=torch.empty(1, 3, 2, 64, 64, device=meta))
        assert traffic.events == []
        # the check sees host tensors: a stride built on the host is copied (by the UNet and its ControlNet)
        flow_unet(torch.empty(2, 8, 3, 8, 8, device=meta), torch.empty((), device=meta),
                  torch.tensor([[8.0, 16.0, 24.0]]), text, control=torch.empty(2, 5, 3, 8, 8, device=meta))
    assert traffic.events == ["host tensor in aten._to_copy.default"] * 2


def test_position_tables_left_on_the_offload_device_are_copied_not_mixed_in():
    """ComfyUI's partial load moves only modules with parameters, so the PE buffers can stay on the offload
    device while activations are on the GPU. Both temporal attentions (stage 1 plain, stage 2 motion-
    augmented) must copy the table over (``_to_copy``) rather than hand a host tensor to a device op
    (which a GPU rejects; meta tensors, standing in for it here, would not)."""
    meta = torch.device("meta")
    models = [FlowUNet(UNetConfig(in_channels=8, stride_embedding=True, **CFG), device=meta).eval(),
              RenderUNet(UNetConfig(**CFG), device=meta).eval()]
    for model in models:
        for name, table in list(model.named_buffers()):
            module_name, _, buffer = name.rpartition(".")
            model.get_submodule(module_name).register_buffer(buffer, torch.zeros(table.shape), persistent=True)
    text = torch.empty(2, 6, 16, device=meta)
    with torch.no_grad(), HostTraffic() as traffic:
        models[0](torch.empty(2, 8, 3, 8, 8, device=meta), torch.empty((), device=meta), torch.empty(1, 3, device=meta),
                  text, control=torch.empty(2, 5, 3, 8, 8, device=meta))
        models[1](torch.empty(2, 4, 3, 8, 8, device=meta), torch.empty((), device=meta), text,
                  flow=torch.empty(1, 3, 2, 64, 64, device=meta))
    pe_tables = sum(1 for model in models for _ in model.buffers())
    copies = [e for e in traffic.events if e == "host tensor in aten._to_copy.default"]
    assert traffic.events == copies and len(copies) >= pe_tables
