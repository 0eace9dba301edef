"""The two generation stages: predict the flow (stage 1), render the video (stage 2)."""

from motion_i2v_core.pipelines.common import SamplingCancelled
from motion_i2v_core.pipelines.stage1 import FlowPrediction, default_stride, predict_flow
from motion_i2v_core.pipelines.stage2 import RenderResult, render_video

__all__ = ["FlowPrediction", "RenderResult", "SamplingCancelled", "default_stride", "predict_flow", "render_video"]
