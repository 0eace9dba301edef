"""The memory the nodes declare to ComfyUI (motion_i2v_core.memory) against the activation peak that the
meta-tensor estimator (motion_i2v_core.estimate) traces on the real generation path, at SD-1.5 widths."""

from __future__ import annotations

import dataclasses

import torch

from motion_i2v_core import bench, estimate, memory

STAGE1 = ("control_encode", "image_encode", "stage1_unet_step", "flow_decode")
STAGE2 = ("image_encode", "stage2_unet_step", "image_decode")
SD15 = bench.SIZES["sd15"]


def declared_and_traced(size):
    # One frame per VAE decode, as the declaration assumes: the pipelines pick larger chunks only when
    # the free memory after loading allows (vae_frames.auto_chunk), so one frame is what must fit.
    trace = estimate.trace_generation(size, dtype=torch.float16, steps=1, count_flops=False, decode_batch=1)
    cfg = {name: m.config for name, m in estimate.build_models(size, torch.float16).items()}
    common = dict(num_frames=size.frames, height=size.height, width=size.width, guidance=7.0)
    fp16 = dict(unet_dtype=torch.float16, vae_dtype=torch.float16)
    s1 = memory.stage1_estimate(cfg["flow_unet"], cfg["flow_vae"], cfg["image_vae"], **fp16, **common)
    s2 = memory.stage2_estimate(cfg["render_unet"], cfg["image_vae"], **fp16, **common)
    traced = {phase: trace.phase_peak[phase] for phase in set(STAGE1 + STAGE2)}
    return s1, s2, traced


def check_bound(size):
    s1, s2, traced = declared_and_traced(size)
    gib = {p: round(b / 2**30, 3) for p, b in traced.items()}
    assert s1.peak >= max(traced[p] for p in STAGE1), (s1.describe(), gib)
    assert s2.peak >= max(traced[p] for p in STAGE2), (s2.describe(), gib)


def test_declared_memory_covers_the_traced_peak_at_the_default_size():
    """512x320, 16 frames, CFG: what the nodes run by default."""
    check_bound(SD15)


def test_declared_memory_covers_the_traced_peak_at_a_smaller_size():
    """256x256 x 8 frames: small activations, so the K/V weights the render UNet keeps (Triton path) matter."""
    check_bound(dataclasses.replace(SD15, height=256, width=256, frames=8))


def test_kept_kv_bytes_counts_every_temporal_attention_of_the_render_unet():
    from motion_i2v_core.models.motion_module import TemporalAttention
    from motion_i2v_core.models.unet3d import RenderUNet

    from motion_i2v_core.models.config import UNetConfig

    for cfg in (UNetConfig(), UNetConfig(block_out_channels=(32, 64, 64, 64), layers_per_block=1,
                                         attention_heads=8, cross_attention_dim=32, norm_num_groups=8)):
        unet = RenderUNet(cfg, device="meta")
        stacked = sum(2 * a.to_k.weight.numel() for a in unet.modules() if isinstance(a, TemporalAttention))
        assert memory.kept_kv_bytes(cfg, torch.float16) == 2 * stacked
