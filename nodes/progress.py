"""ComfyUI progress bar and Cancel for the core's per-step callbacks."""

from __future__ import annotations

import comfy.model_management
import comfy.utils


class StepProgress:
    """`progress(step, total, latent)` and `cancel()` callables for the core samplers.

    One progress event per sampling step; Cancel (POST /interrupt) raises ComfyUI's
    InterruptProcessingException from inside the loop, so the run stops within one step.
    """

    def __init__(self, total: int):
        self.bar = comfy.utils.ProgressBar(total)
        self.total = total

    def __call__(self, step: int, total: int | None = None, latent=None) -> None:
        self.bar.update_absolute(min(int(step), self.total), self.total)

    @staticmethod
    def cancel() -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
