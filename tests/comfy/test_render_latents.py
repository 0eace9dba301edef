"""Render Video's LATENT output in a real ComfyUI: ComfyUI's own latent nodes take it, and decoding it with
the stage-2 VAE gives back the frames Render Video returned (so it is the video, in ComfyUI's scaling)."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from motion_i2v_core.loading.official import load_stage2
from motion_i2v_core.models.vae_frames import decode_frames
from test_appearance_models import render, render_prompt

SD15_SCALE = 0.18215  # ComfyUI's SD15 latent format scales LATENT samples by this on the way into a model


def saved_latent(server, name: str) -> torch.Tensor:
    return load_file(str(server.output_dir / "mi2v_tensors" / f"{name}.latent.safetensors"))["samples"]


def test_render_video_latent_decodes_to_its_frames_and_feeds_comfyui_latent_nodes(tiny_server, parity_models):
    prompt = render_prompt("latent_out")
    prompt["20"] = {"class_type": "MI2VTestSaveLatent", "inputs": {"latent": ["7", 1], "name": "latent_out"}}
    # ComfyUI's own upscaler must accept it as any SD latent batch.
    prompt["21"] = {"class_type": "LatentUpscaleBy",
                    "inputs": {"samples": ["7", 1], "upscale_method": "nearest-exact", "scale_by": 2.0}}
    prompt["22"] = {"class_type": "MI2VTestSaveLatent", "inputs": {"latent": ["21", 0], "name": "latent_up"}}
    frames = render(tiny_server, prompt)

    samples = saved_latent(tiny_server, "latent_out")
    assert samples.shape == (4, 4, 8, 8)  # one batch item per frame, 4 channels, 64 px / 8
    assert saved_latent(tiny_server, "latent_up").shape == (4, 4, 16, 16)

    vae = load_stage2(parity_models / "stage2").vae.eval()
    with torch.no_grad():
        decoded = decode_frames(vae, samples, out_dtype=torch.float32)
    redecoded = (decoded / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    assert torch.allclose(redecoded, frames, atol=1e-4), (redecoded - frames).abs().max()
    # Not scaled twice or not at all: the wrong factor decodes to other frames.
    with torch.no_grad():
        wrong = (decode_frames(vae, samples * SD15_SCALE, out_dtype=torch.float32) / 2 + 0.5).clamp(0, 1)
    assert (wrong.permute(0, 2, 3, 1) - frames).abs().max() > 1e-2
