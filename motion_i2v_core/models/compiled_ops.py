"""The stage-2 motion attention as one opaque op under ``torch.compile``.

Dynamo traces each UNet forward into one graph. The motion-augmented attention is the exception: its
backends scatter in ways dynamo does not trace (``index_add_`` through views with ``out=`` buffers in the
torch reference, kernel launches in the Triton one), and the op registry picks the backend per call. So
while compiling, the models call it through the custom op ``motion_i2v::motion_augmented_attention``: one
node in the graph whose body, run eagerly, is the registry's dispatcher, so every backend (and the
first-call fallback) works compiled too. Outside ``torch.compile`` the dispatcher is called directly: no
custom-op overhead, and the per-module constants (stacked K/V weight, per-level splat cache) are passed,
which a custom op's tensor-only signature cannot carry.
"""

from __future__ import annotations

import torch

from motion_i2v_core.ops import get_op


@torch.library.custom_op("motion_i2v::motion_augmented_attention", mutates_args=())
def _opaque_motion_attention(
    x: torch.Tensor, flow: torch.Tensor, pe: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor,
    num_frames: int, height: int, width: int, heads: int, official_compat: bool,
) -> torch.Tensor:
    out = get_op("motion_augmented_attention")(
        x, flow, num_frames=num_frames, height=height, width=width, pe=pe, heads=heads, w_q=w_q, w_k=w_k, w_v=w_v,
        official_compat=official_compat,
    )
    return out.contiguous()  # the fake below promises a fresh contiguous tensor


@_opaque_motion_attention.register_fake
def _(x, flow, pe, w_q, w_k, w_v, num_frames, height, width, heads, official_compat):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


_TENSOR_ONLY_ARGS = ("pe", "w_q", "w_k", "w_v", "num_frames", "height", "width", "heads", "official_compat")


def motion_attention(x: torch.Tensor, flow: torch.Tensor, **kwargs) -> torch.Tensor:
    """The registry's ``motion_augmented_attention`` (same arguments), opaque while compiling, where the
    optional ``kv_weight`` / ``flow_cache`` are left out."""
    if torch.compiler.is_compiling():
        return _opaque_motion_attention(x, flow, *(kwargs[name] for name in _TENSOR_ONLY_ARGS))
    return get_op("motion_augmented_attention")(x, flow, **kwargs)
