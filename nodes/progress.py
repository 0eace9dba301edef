"""ComfyUI progress bar, live previews and Cancel for the core's per-step callbacks."""

from __future__ import annotations

import comfy.model_management
import comfy.utils
import torch

# What a step's denoised estimate is, for the preview: SD1.5 video latents (stage 2), flow latents
# (stage 1), or nothing to show.
VIDEO_LATENTS = "video"
FLOW_LATENTS = "flow"


def previews_enabled() -> bool:
    """ComfyUI's --preview-method: with "none" (its default) no preview work is done at all."""
    from comfy.cli_args import LatentPreviewMethod, args

    return args.preview_method != LatentPreviewMethod.NoPreviews


def middle_frame(latent: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W): the middle frame of a (B, C, F, H, W) latent (the first frame is the reference)."""
    return latent[:1, :, latent.shape[2] // 2]


class VideoPreview:
    """The middle frame of stage 2's x0 through ComfyUI's own SD1.5 previewer: latent2rgb (a 4x3
    matrix), or TAESD when that method is chosen and its decoder is in models/vae_approx."""

    def __init__(self, previewer):
        self.previewer = previewer

    @classmethod
    def create(cls):
        import latent_preview
        from comfy.latent_formats import SD15

        previewer = latent_preview.get_previewer(comfy.model_management.get_torch_device(), SD15())
        return None if previewer is None else cls(previewer)

    def __call__(self, latent: torch.Tensor):
        return self.previewer.decode_latent_to_preview_image("JPEG", middle_frame(latent).float())


class FlowPreview:
    """The middle frame of stage 1's flow latent, its first two channels as red and green: no decode,
    a rough look at where the motion is forming (not the decoded flow's colours)."""

    def __call__(self, latent: torch.Tensor):
        import latent_preview

        frame = middle_frame(latent)[0, :2].float()
        frame = frame / frame.abs().amax().clamp(min=1e-6)  # -1..1
        rgb = torch.stack([frame[0], frame[1], torch.zeros_like(frame[0])], dim=-1)
        return ("JPEG", latent_preview.preview_to_image(rgb.cpu()), latent_preview.MAX_PREVIEW_RESOLUTION)


def make_preview(kind: str | None):
    if kind is None or not previews_enabled():
        return None
    if kind == VIDEO_LATENTS:
        return VideoPreview.create()
    if kind == FLOW_LATENTS:
        return FlowPreview()
    raise ValueError(f"unknown preview kind {kind!r}")


class StepProgress:
    """`progress(step, total, latent)` and `cancel()` callables for the core samplers.

    One progress event per sampling step, with a preview image of the step's denoised estimate
    when `preview` names the latent kind and ComfyUI's preview method is not "none". Cancel (POST
    /interrupt) raises ComfyUI's InterruptProcessingException from inside the loop, so the run
    stops within one step.
    """

    def __init__(self, total: int, preview: str | None = None):
        self.bar = comfy.utils.ProgressBar(total)
        self.total = total
        self.preview = make_preview(preview)

    def __call__(self, step: int, total: int | None = None, latent=None) -> None:
        image = None
        if self.preview is not None and isinstance(latent, torch.Tensor) and latent.ndim == 5:
            with torch.no_grad():
                image = self.preview(latent)
        self.bar.update_absolute(min(int(step), self.total), self.total, image)

    @staticmethod
    def cancel() -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
