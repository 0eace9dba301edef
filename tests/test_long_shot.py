"""Long shots: segment planning, segment flows that continue the motion, stitching, progress, Cancel."""

import pytest
import torch
from safetensors.torch import load_file

from harness.reference import PARITY
from motion_i2v_core.motion.camera import CameraMove, camera_flow
from motion_i2v_core.pipelines import SamplingCancelled
from motion_i2v_core.pipelines.long_shot import crossfade, plan_segments, render_long_shot, segment_flow
from motion_i2v_core.pipelines.stage2 import RenderResult


def test_plan_covers_every_frame_with_shared_references():
    assert plan_segments(16) == [(0, 16)]
    assert plan_segments(31) == [(0, 16), (15, 16)]
    assert plan_segments(40, 16, overlap=3) == [(0, 16), (12, 16), (24, 16)]
    assert plan_segments(33) == [(0, 16), (15, 16), (30, 3)]
    with pytest.raises(ValueError, match="overlap"):
        plan_segments(40, 4, overlap=3)
    with pytest.raises(ValueError, match="segment_frames"):
        plan_segments(40, 17)


def test_segment_flow_continues_the_camera_move_seen_from_its_start():
    # A steady pan: seen from any frame the motion is the same, 3 px per frame.
    flow = camera_flow(CameraMove(pan_right=-30 * 3 / 64), 48, 64, 31)
    seg = segment_flow(flow, 15, 16)
    assert seg.shape == (16, 2, 48, 64) and torch.equal(seg[0], torch.zeros(2, 48, 64))
    assert torch.allclose(seg[5, 0], torch.full((48, 64), 15.0), atol=1e-3)
    # A zoom seen from frame s: from there the magnification is the ratio of the two zoom factors.
    zoom = camera_flow(CameraMove(zoom_in=1.0), 48, 64, 21)  # 2x over 20 frames
    seg = segment_flow(zoom, 10, 11)
    direct = camera_flow(CameraMove(zoom_in=2 ** 0.5 - 1), 48, 64, 11)  # sqrt(2) for the second half
    inner = (slice(None), slice(None), slice(12, 36), slice(16, 48))
    # Pushing the flow to frame s resamples it (bilinear splat): measured max error 0.16 px.
    assert float((seg - direct)[inner].abs().max()) < 0.25


def test_crossfade_moves_from_the_earlier_to_the_later_rendering():
    a, b = torch.zeros(3, 2, 2, 3), torch.ones(3, 2, 2, 3)
    blended = crossfade(a, b)
    assert torch.allclose(blended[:, 0, 0, 0], torch.tensor([0.25, 0.5, 0.75]))


class FakeRender:
    """Stands in for render_video: frame j of a segment is its reference plus j / 100, so stitching
    and the reference hand-over are visible in the numbers."""

    def __init__(self):
        self.calls, self.steps, self.finished = [], 0, 0

    def __call__(self, models, reference, cond, uncond, flow, static, *, steps, seed, progress, cancel, **kw):
        self.calls.append((reference.clone(), flow.shape[0], seed))
        for step in range(steps):
            if cancel is not None and cancel():
                raise SamplingCancelled("cancelled")
            self.steps += 1
            progress(step + 1, steps, None)
        self.finished += 1
        frames = reference.permute(1, 2, 0)[None] + torch.arange(flow.shape[0]).view(-1, 1, 1, 1) / 100
        return RenderResult(frames=frames)


def test_segments_chain_into_one_batch_with_one_progress_over_all_steps():
    image = torch.zeros(3, 8, 8)
    flow = torch.zeros(31, 2, 8, 8)
    fake, seen = FakeRender(), []
    result = render_long_shot(None, image, None, None, flow, steps=3, seed=5, render=fake,
                              progress=lambda i, n, x: seen.append((i, n)))
    assert result.frames.shape == (31, 8, 8, 3) and result.segments == [(0, 16), (15, 16)]
    # The second segment starts from the first one's last frame, and the values continue: 0.15 + j/100.
    assert torch.allclose(fake.calls[1][0], torch.full((3, 8, 8), 0.15))
    assert torch.allclose(result.frames[:, 0, 0, 0], torch.arange(31) / 100)
    assert [c[2] for c in fake.calls] == [5, 6]
    assert seen == [(i, 6) for i in range(1, 7)]


def test_overlap_crossfades_the_shared_frames():
    fake = FakeRender()
    result = render_long_shot(None, torch.zeros(3, 4, 4), None, None, torch.zeros(20, 2, 4, 4), steps=1,
                              segment_frames=12, overlap=2, render=fake)
    assert result.segments == [(0, 12), (9, 11)]
    # Frames 10 and 11 exist in both segments: 0.10 / 0.11 from the first; 0.09 + 0.01 / 0.02 from the second.
    assert torch.allclose(result.frames[10:12, 0, 0, 0], torch.tensor([0.10, 0.11]))
    assert torch.allclose(result.frames[:, 0, 0, 0], torch.arange(20) / 100, atol=1e-6)


def test_cancel_is_honoured_between_and_inside_segments():
    fake = FakeRender()
    with pytest.raises(SamplingCancelled):
        render_long_shot(None, torch.zeros(3, 4, 4), None, None, torch.zeros(31, 2, 4, 4), steps=2,
                         render=fake, cancel=lambda: fake.finished >= 1)
    assert len(fake.calls) == 1 and fake.steps == 2  # the first segment ran, the second never started
    inside = FakeRender()
    with pytest.raises(SamplingCancelled):
        render_long_shot(None, torch.zeros(3, 4, 4), None, None, torch.zeros(31, 2, 4, 4), steps=5,
                         render=inside, cancel=lambda: inside.steps >= 2)
    assert inside.steps == 2 and inside.finished == 0


def test_two_tiny_model_segments_chain_into_one_continuous_batch():
    from motion_i2v_core.loading import load_stage2

    stage2 = load_stage2(PARITY / "models/stage2")
    inputs = load_file(str(PARITY / "stage1_inputs.safetensors"))
    image = inputs["image01"]
    _, h, w = image.shape
    flow = camera_flow(CameraMove(pan_right=0.2), h, w, 7)
    seen = []
    result = render_long_shot(stage2, image, inputs["text_cond"], inputs["text_uncond"], flow, steps=2,
                              segment_frames=4, progress=lambda i, n, x: seen.append((i, n)))
    assert result.segments == [(0, 4), (3, 4)]
    assert result.frames.shape == (7, h, w, 3)
    assert float(result.frames.min()) >= 0 and float(result.frames.max()) <= 1
    assert seen == [(i, 4) for i in range(1, 5)]
