"""The two generation stages: predict the flow (stage 1), render the video (stage 2)."""

from .common import SamplingCancelled
from .stage1 import FlowPrediction, default_stride, predict_flow
from .stage2 import RenderResult, render_video

__all__ = ["FlowPrediction", "RenderResult", "SamplingCancelled", "default_stride", "predict_flow", "render_video"]
