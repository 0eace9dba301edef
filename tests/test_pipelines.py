"""Both generation stages end to end on the tiny random-weight models of the parity bundle."""

import copy
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from motion_i2v_core.pipelines import SamplingCancelled, default_stride, predict_flow, render_video
from harness.reference import PARITY

BUNDLE = PARITY

STEPS = 2


@pytest.fixture(scope="module")
def stage1():
    from motion_i2v_core.loading import load_stage1

    return load_stage1(
        BUNDLE / "models/stage1/StableDiffusion-FlowGen", image_vae_dir=BUNDLE / "models/stage2/StableDiffusion/vae"
    )


@pytest.fixture(scope="module")
def stage2():
    from motion_i2v_core.loading import load_stage2

    return load_stage2(BUNDLE / "models/stage2")


@pytest.fixture(scope="module")
def inputs():
    return load_file(str(BUNDLE / "stage1_inputs.safetensors"))


def _flow(stage1, inputs, **kw):
    args = dict(num_frames=16, steps=STEPS, guidance=7.0, seed=1)
    args.update(kw)
    return predict_flow(stage1, inputs["image01"], inputs["text_cond"], inputs["text_uncond"], **args)


def test_stride_and_frame_limits():
    assert default_stride(15) == [8.0 * k for k in range(1, 16)]
    assert default_stride(3, motion_speed=0.5) == [4.0, 8.0, 12.0]
    with pytest.raises(ValueError, match="motion speed"):
        default_stride(3, motion_speed=0)


def test_predict_flow_shapes_static_region_and_seed(stage1, inputs):
    static = torch.zeros(64, 64)
    static[:, 40:] = 1
    a = _flow(stage1, inputs, static_mask=static)
    assert a.flow.shape == (16, 2, 64, 64)
    assert torch.all(a.flow[0] == 0)
    assert torch.all(a.flow[:, :, :, 40:] == 0), "static brush region must get zero flow"
    assert a.flow[1:, :, :, :40].abs().max() > 0
    assert a.flow[:, 0].abs().max() <= 64 and a.flow[:, 1].abs().max() <= 64
    b = _flow(stage1, inputs, static_mask=static)
    assert torch.equal(a.flow, b.flow), "same seed must give the same flow"
    c = _flow(stage1, inputs, static_mask=static, seed=2)
    assert not torch.equal(a.flow, c.flow)


def test_predict_flow_fewer_frames_and_explicit_noise(stage1, inputs):
    noise = torch.randn(1, 4, 7, 8, 8, generator=torch.Generator().manual_seed(3))
    a = _flow(stage1, inputs, num_frames=8, noise=noise, seed=5)
    b = _flow(stage1, inputs, num_frames=8, noise=noise, seed=6)
    assert a.flow.shape == (8, 2, 64, 64)
    assert torch.equal(a.flow, b.flow), "explicit noise replaces the seed"


def test_predict_flow_rejects_bad_requests(stage1, inputs):
    with pytest.raises(ValueError, match="at most 16"):
        _flow(stage1, inputs, num_frames=17)
    with pytest.raises(ValueError, match="control has shape"):
        _flow(stage1, inputs, control=torch.zeros(1, 5, 15, 4, 4))
    with pytest.raises(ValueError, match="stride has"):
        _flow(stage1, inputs, stride=[8.0, 16.0])


def test_progress_once_per_step_and_cancel_within_a_step(stage1, inputs):
    calls = []
    _flow(stage1, inputs, steps=3, progress=lambda i, n, x: calls.append((i, n)))
    assert calls == [(1, 3), (2, 3), (3, 3)]

    unet_calls = []
    handle = stage1.unet.register_forward_hook(lambda *a: unet_calls.append(1))
    try:
        with pytest.raises(SamplingCancelled):
            _flow(stage1, inputs, steps=3, cancel=lambda: len(unet_calls) >= 1)
    finally:
        handle.remove()
    assert len(unet_calls) == 1, "cancel must stop before the next step's UNet call"


def test_stage1_official_compat_changes_only_the_random_draws(stage1, inputs):
    noise = torch.randn(1, 4, 15, 8, 8, generator=torch.Generator().manual_seed(4))
    zero = torch.zeros(1, 4, 8, 8)
    default = _flow(stage1, inputs, noise=noise)
    compat_zero = _flow(stage1, inputs, noise=noise, official_compat=True, image_noise=zero)
    # With zero posterior noise the compat sample equals the posterior mean used by default.
    torch.testing.assert_close(compat_zero.flow, default.flow, rtol=0, atol=1e-5)
    compat = _flow(stage1, inputs, noise=noise, official_compat=True, image_noise=torch.ones(1, 4, 8, 8))
    assert (compat.flow - default.flow).abs().max() > 1e-3


def _render(stage2, inputs, flow, **kw):
    args = dict(steps=STEPS, guidance=7.0, seed=1)
    args.update(kw)
    return render_video(stage2, inputs["image01"], inputs["text_cond"], inputs["text_uncond"], flow, **args)


def _shift_flow(frames=16, size=64):
    flow = torch.zeros(frames, 2, size, size)
    flow[:, 0] = torch.arange(frames).view(-1, 1, 1) * 2.0  # moves right 2 px per frame
    return flow


def test_render_video_shapes_range_and_seed(stage2, inputs):
    flow = _shift_flow()
    a = _render(stage2, inputs, flow)
    assert a.frames.shape == (16, 64, 64, 3)
    assert a.frames.min() >= 0 and a.frames.max() <= 1
    b = _render(stage2, inputs, flow)
    assert torch.equal(a.frames, b.frames)
    c = _render(stage2, inputs, flow, seed=9)
    assert not torch.equal(a.frames, c.frames)
    # Frame 0 is the reference latent decoded, whatever the seed.
    torch.testing.assert_close(a.frames[0], c.frames[0], rtol=0, atol=1e-5)


def test_render_video_brush_pins_static_latents(stage2, inputs):
    flow = _shift_flow()
    static = torch.zeros(64, 64)
    static[:32] = 1
    result = _render(stage2, inputs, flow, static_mask=static, steps=3, keep_step_latents=True)
    ref = result.latents[:, :, :1]
    # After a non-final step the static rows hold the re-noised reference, identical across frames
    # 1..F-1 only up to the shared noise; the last step leaves them to the model, close to the reference.
    final_static = result.latents[:, :, 1:, :4]
    assert (final_static - ref[..., :4, :]).abs().mean() < (result.latents[:, :, 1:, 4:] - ref[..., 4:, :]).abs().mean()


def test_render_video_rejects_bad_requests(stage2, inputs):
    with pytest.raises(ValueError, match="at most 16"):
        _render(stage2, inputs, torch.zeros(17, 2, 64, 64))
    with pytest.raises(ValueError, match="flow has shape"):
        _render(stage2, inputs, torch.zeros(16, 2, 32, 64))
    with pytest.raises(ValueError, match="NaN"):
        _render(stage2, inputs, torch.full((16, 2, 64, 64), float("nan")))
    with pytest.raises(ValueError, match="negative"):
        render_video(stage2, inputs["image01"], inputs["text_cond"], None, torch.zeros(16, 2, 64, 64), steps=1)


def test_stage2_official_compat_differs_exactly_where_spec_says(stage2, inputs):
    flow = _shift_flow()
    zero = torch.zeros(1, 4, 8, 8)
    cond = inputs["text_cond"]
    # Identical CFG halves: Q1's branch swap swaps identical features, so compat == default.
    same_default = render_video(stage2, inputs["image01"], cond, cond, flow, steps=STEPS, seed=1)
    same_compat = render_video(
        stage2, inputs["image01"], cond, cond, flow, steps=STEPS, seed=1, official_compat=True, image_noise=zero
    )
    torch.testing.assert_close(same_compat.frames, same_default.frames, rtol=0, atol=1e-5)
    # Different halves: the swap mixes uncond and cond features in even frames, so results differ.
    diff_default = _render(stage2, inputs, flow)
    diff_compat = _render(stage2, inputs, flow, official_compat=True, image_noise=zero)
    assert (diff_compat.frames - diff_default.frames).abs().max() > 1e-3
    # Without guidance (one branch) there is nothing to mix.
    one_default = _render(stage2, inputs, flow, guidance=1.0)
    one_compat = _render(stage2, inputs, flow, guidance=1.0, official_compat=True, image_noise=zero)
    torch.testing.assert_close(one_compat.frames, one_default.frames, rtol=0, atol=1e-5)


def test_text_embeddings_may_come_without_the_batch_dim(stage1, inputs):
    noise = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    batched = _flow(stage1, inputs, num_frames=4, steps=1, noise=noise)
    flat = predict_flow(stage1, inputs["image01"], inputs["text_cond"][0], inputs["text_uncond"][0],
                        num_frames=4, steps=1, guidance=7.0, noise=noise)
    assert torch.equal(flat.flow, batched.flow)


class _LoopDone(Exception):
    pass


def _on_meta(models, *names):
    return SimpleNamespace(**{n: copy.deepcopy(getattr(models, n)).to("meta") for n in names})


def _traffic_run(generate):
    """Run ``generate(cancel, progress)`` on meta models, recording host traffic from the first
    step's cancel poll to the last step's progress call (where the run is stopped: the decode
    after it would need values)."""
    from harness.host_traffic import HostTraffic

    with HostTraffic() as traffic:
        def progress(step, total, denoised):
            assert denoised is not None and denoised.device.type == "meta"
            if step == total:
                traffic.stop()
                raise _LoopDone()

        with pytest.raises(_LoopDone):
            generate(traffic.start, progress)
    return traffic.events


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m"])
def test_sampling_loops_of_both_stages_make_no_host_copies_and_no_syncs(stage1, stage2, inputs, sampler):
    meta1 = _on_meta(stage1, "unet", "flow_vae", "image_vae")
    events = _traffic_run(lambda cancel, progress: predict_flow(
        meta1, inputs["image01"], inputs["text_cond"], inputs["text_uncond"], num_frames=4, steps=3,
        sampler=sampler, cancel=cancel, progress=progress))
    assert events == [], f"stage 1: {events}"

    meta2 = _on_meta(stage2, "unet", "vae")
    static = torch.zeros(64, 64)
    static[:16] = 1  # the brush blend runs between steps too
    events = _traffic_run(lambda cancel, progress: render_video(
        meta2, inputs["image01"], inputs["text_cond"], inputs["text_uncond"], _shift_flow(4), static, steps=3,
        sampler=sampler, cancel=cancel, progress=progress))
    assert events == [], f"stage 2: {events}"


def test_progress_gets_the_denoised_latent(stage1, inputs):
    seen = []
    result = _flow(stage1, inputs, num_frames=4, steps=2, keep_step_latents=True,
                   progress=lambda i, n, x0: seen.append(x0))
    assert len(seen) == 2 and seen[0].shape == result.latents.shape
    # the last step of DDIM goes to alpha = 1: its latent is its own denoised estimate
    torch.testing.assert_close(seen[-1].cpu(), result.latents, rtol=0, atol=0)
    assert not torch.allclose(seen[0].cpu(), result.step_latents[0])


def _poison(module):
    """Forward hook turning a VAE decoder's output into NaN (a half-precision overflow stand-in)."""
    return module.decoder.conv_out.register_forward_hook(lambda m, args, out: out * float("nan"))


def test_non_finite_decodes_name_the_stage_and_the_precision(stage1, stage2, inputs):
    from motion_i2v_core.pipelines.common import NonFiniteError

    handle = _poison(stage1.flow_vae)
    try:
        with pytest.raises(NonFiniteError, match=r"stage 1 \(Predict Flow\): the decoded flow .*float32"):
            _flow(stage1, inputs, num_frames=3, steps=1)
    finally:
        handle.remove()
    handle = _poison(stage2.vae)
    try:
        with pytest.raises(NonFiniteError, match=r"stage 2 \(Render Video\): the decoded video frames .*float32"):
            _render(stage2, inputs, _shift_flow(3), steps=1)
    finally:
        handle.remove()


@pytest.mark.parametrize("dtype, advice", [(torch.float16, "bf16 .* or fp32"), (torch.bfloat16, "in fp32"),
                                           (torch.float32, "even in fp32")])
def test_non_finite_error_suggests_the_next_precision(dtype, advice):
    from motion_i2v_core.pipelines.common import NonFiniteError, check_finite

    with pytest.raises(NonFiniteError, match=f"stage 9: the thing contains NaN .*{advice}"):
        check_finite(torch.tensor([1.0, float("inf")]), "stage 9", "the thing", dtype)
    assert check_finite(torch.ones(2), "stage 9", "the thing", dtype).shape == (2,)


def test_decode_chunking_does_not_change_the_results(stage1, stage2, inputs):
    noise = torch.randn(1, 4, 5, 8, 8, generator=torch.Generator().manual_seed(7))
    by_frame = _flow(stage1, inputs, num_frames=6, steps=1, noise=noise, decode_batch=1)
    for chunk in (None, 2, 5):
        other = _flow(stage1, inputs, num_frames=6, steps=1, noise=noise, decode_batch=chunk)
        # decoded [0, 1] values agree to ~1e-6 (batch-size-dependent summation), times 2 x 64 px
        torch.testing.assert_close(other.flow, by_frame.flow, rtol=0, atol=5e-4)
        assert torch.equal(other.latents, by_frame.latents)
    video = _render(stage2, inputs, _shift_flow(6), steps=1, decode_batch=1)
    other = _render(stage2, inputs, _shift_flow(6), steps=1, decode_batch=4)
    torch.testing.assert_close(other.frames, video.frames, rtol=0, atol=1e-5)
