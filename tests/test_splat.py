"""Forward splat (motion_i2v_core.ops.splat) against stage2_spec.md section 4, the parity unit
examples and a python-loop transcription of the softsplat kernel."""

import math

import numpy as np
import pytest
import torch

from harness.reference import PARITY
from motion_i2v_core.ops.splat import (
    forward_splat,
    normalise_splat,
    parse_splat_mode,
    splat_corners,
    splat_normaliser,
    splat_sum,
)

UNITS = PARITY / "units.safetensors"
NAN = float("nan")


def spec_example():
    x = torch.tensor([[1.0, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=torch.float64)[None, None]
    flow = torch.zeros(1, 2, 3, 3, dtype=torch.float64)
    flow[0, :, 1, 1] = torch.tensor([0.5, 0.25])  # centre
    flow[0, 0, 0, 0] = -0.5  # top-left dx
    flow[0, 1, 0, 2] = 1.0  # top-right dy
    flow[0, 0, 2, 2] = NAN  # bottom-right dx
    return x, flow


def test_spec_vectors_sum_weight_avg():
    x, flow = spec_example()
    expected_sum = torch.tensor([[0.5, 2, 0], [4, 1.875, 10.875], [7, 8.625, 0.625]], dtype=torch.float64)
    expected_weight = torch.tensor([[0.5, 1, 0], [1, 0.375, 2.375], [1, 1.125, 0.125]], dtype=torch.float64)
    out_sum = forward_splat(x, flow, "sum")
    weight = splat_normaliser(splat_corners(flow))
    out_avg = forward_splat(x, flow, "avg")
    assert out_sum.dtype == torch.float64 and out_avg.dtype == torch.float64
    torch.testing.assert_close(out_sum[0, 0], expected_sum, rtol=0, atol=1e-12)
    torch.testing.assert_close(weight[0, 0], expected_weight, rtol=0, atol=1e-12)
    torch.testing.assert_close(out_avg[0, 0], expected_sum / (expected_weight + 1e-7), rtol=0, atol=1e-12)
    approx = torch.tensor([[1, 2, 0], [4, 5, 4.578947], [7, 7.666667, 5]], dtype=torch.float64)
    torch.testing.assert_close(out_avg[0, 0], approx, rtol=0, atol=5e-6)  # spec rounds to 6 digits
    # The same example in float32 (the kernel's arithmetic) gives the same numbers.
    torch.testing.assert_close(forward_splat(x.float(), flow.float(), "sum"), out_sum.float(), rtol=0, atol=1e-6)


def test_zero_flow_avg_is_x_over_one_plus_eps():
    x = torch.randn(2, 3, 5, 4)
    out = forward_splat(x, torch.zeros(2, 2, 5, 4))
    assert torch.equal(out, x / (torch.ones(()) + 1e-7))
    assert torch.equal(forward_splat(x, torch.zeros(2, 2, 5, 4), "sum"), x)


def test_integer_shift_moves_content_and_leaves_zeros():
    x = torch.rand(1, 2, 6, 7) + 1.0
    flow = torch.zeros(1, 2, 6, 7)
    flow[:, 0], flow[:, 1] = 2.0, 1.0  # right 2, down 1
    out = forward_splat(x, flow, "sum")
    assert torch.equal(out[:, :, 1:, 2:], x[:, :, :-1, :-2])
    assert (out[:, :, 0, :] == 0).all() and (out[:, :, :, :2] == 0).all()
    avg = forward_splat(x, flow, "avg")
    assert (avg[:, :, 0, :] == 0).all() and (avg[:, :, :, :2] == 0).all()
    torch.testing.assert_close(avg[:, :, 1:, 2:], x[:, :, :-1, :-2], rtol=2e-7, atol=0)


@pytest.mark.parametrize("channel", [0, 1])
def test_non_finite_source_is_skipped(channel):
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    flow = torch.zeros(1, 2, 3, 3)
    flow[0, channel, 1, 1] = NAN
    flow[0, channel, 0, 0] = float("inf")
    flow[0, channel, 2, 2] = -float("inf")
    out = forward_splat(x, flow, "sum")
    expected = x.clone()
    expected[0, 0, 1, 1] = expected[0, 0, 0, 0] = expected[0, 0, 2, 2] = 0
    assert torch.equal(out, expected)
    assert torch.isfinite(forward_splat(x, flow, "avg")).all()


def test_border_corners_dropped_without_renormalisation():
    x = torch.tensor([[[[2.0, 3.0, 5.0]]]])  # 1 x 3 image
    flow = torch.zeros(1, 2, 1, 3)
    flow[0, 0, 0, 2] = 0.25  # 3/4 stays at x=2, 1/4 falls off the right edge
    flow[0, 1, 0, 0] = -0.5  # half goes to row -1 (dropped)
    flow[0, 0, 0, 1] = -1.5  # lands on x in [-0.5]: 1/2 at x=0, 1/2 dropped at x=-1
    out = forward_splat(x, flow, "sum")
    torch.testing.assert_close(out, torch.tensor([[[[2 * 0.5 + 3 * 0.5, 0.0, 5 * 0.75]]]]), rtol=0, atol=1e-7)
    weight = splat_normaliser(splat_corners(flow))
    torch.testing.assert_close(weight, torch.tensor([[[[1.0, 0.0, 0.75]]]]), rtol=0, atol=1e-7)


@pytest.mark.parametrize("dx", [-1.5, -2.0, -2.5, -1e30, 1e30, 4.0, 3.5])
def test_far_outside_targets_leave_no_trace(dx):
    # floor(tx) = -2 puts the +1 corner at x = -1: still outside (regression: clamping the corner to
    # -1 before adding 1 leaked it into column 0).
    x = torch.arange(1.0, 5.0).view(1, 1, 1, 4)
    flow = torch.zeros(1, 2, 1, 4)
    flow[0, 0, 0, 0] = dx  # only the first pixel moves
    out = forward_splat(x, flow, "sum")
    expected = torch.from_numpy(kernel_loop(x.numpy(), flow.numpy())).float()
    assert torch.equal(out, expected)
    if dx < 0:
        assert out[0, 0, 0, 0] == 0
    elif dx >= 4:
        assert torch.equal(out[0, 0, 0, 1:], x[0, 0, 0, 1:])


def test_linear_and_soft_modes_match_manual_normalisation():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 6, generator=g)
    flow = torch.randn(2, 2, 5, 6, generator=g) * 1.5
    metric = torch.randn(2, 1, 5, 6, generator=g)
    for mode, m in (("linear", metric), ("soft", metric.exp())):
        num = forward_splat(x * m, flow, "sum")
        den = forward_splat(m, flow, "sum")
        torch.testing.assert_close(forward_splat(x, flow, mode, metric), num / (den + 1e-7), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            forward_splat(x, flow, mode + "-zeroeps", metric),
            num / torch.where(den == 0, torch.ones_like(den), den),
            rtol=1e-5,
            atol=1e-5,
        )


def test_eps_suffixes():
    # 1 x 3 image: x=2 is pushed out; x=0 sends a weight of 5e-8 to x=1; x=1 is pushed out too.
    x = torch.tensor([[[[4.0, 7.0, 9.0]]]])
    flow = torch.tensor([[[[5e-8 + 0.0, 10.0, 10.0]], [[0.0, 0.0, 0.0]]]])
    corners = splat_corners(flow)
    w = splat_normaliser(corners)[0, 0, 0]
    s = forward_splat(x, flow, "sum")[0, 0, 0]
    assert 0 < w[1] < 1e-7 and w[2] == 0
    add = forward_splat(x, flow, "avg")[0, 0, 0]
    zero = forward_splat(x, flow, "avg-zeroeps")[0, 0, 0]
    clip = forward_splat(x, flow, "avg-clipeps")[0, 0, 0]
    assert torch.equal(add, forward_splat(x, flow, "avg-addeps")[0, 0, 0])
    assert torch.equal(add[1], s[1] / (w[1] + 1e-7))
    assert torch.equal(zero[1], s[1] / w[1])
    assert torch.equal(clip[1], s[1] / torch.tensor(1e-7))
    assert add[2] == zero[2] == clip[2] == 0  # nothing arrives: 0 in every rule
    assert parse_splat_mode("soft-clipeps") == ("soft", "clipeps") and parse_splat_mode("sum") == ("sum", "addeps")


def test_bad_arguments_raise_clear_errors():
    x, flow = torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3)
    with pytest.raises(ValueError, match="unknown splat mode"):
        forward_splat(x, flow, "max")
    with pytest.raises(ValueError, match="unknown splat mode"):
        forward_splat(x, flow, "avg-foo")
    with pytest.raises(ValueError, match="needs a metric"):
        forward_splat(x, flow, "soft")
    with pytest.raises(ValueError, match="takes no metric"):
        forward_splat(x, flow, "avg", torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match="same N, H and W"):
        forward_splat(x, torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        forward_splat(x, torch.zeros(1, 3, 3, 3))


def test_fp16_input_accumulates_in_fp32():
    # Three fp16 values land on one pixel: 2048 + 1 + 1 is 2048 in fp16 arithmetic, 2050 in fp32.
    x = torch.tensor([[[[2048.0, 1.0, 1.0]]]], dtype=torch.float16)
    flow = torch.zeros(1, 2, 1, 3, dtype=torch.float16)
    flow[0, 0, 0, 1], flow[0, 0, 0, 2] = -1.0, -2.0
    out = forward_splat(x, flow, "sum")
    assert out.dtype == torch.float16
    assert out[0, 0, 0, 0].item() == 2050.0
    g = torch.Generator().manual_seed(1)
    xh = torch.randn(2, 4, 5, 6, generator=g).half()
    fh = (torch.randn(2, 2, 5, 6, generator=g) * 2).half()
    for mode in ("sum", "avg"):
        out = forward_splat(xh, fh, mode)
        assert out.dtype == torch.float16
        assert torch.equal(out, forward_splat(xh.float(), fh.float(), mode).half())
    assert forward_splat(xh.bfloat16(), fh, "avg").dtype == torch.bfloat16


def test_parity_unit_examples():
    from safetensors.torch import load_file

    units = load_file(str(UNITS))
    x, flow = units["softsplat_example_in"], units["softsplat_example_flow"]
    assert torch.isnan(flow).any()  # the example exercises the skip path
    for mode, key in (("avg", "softsplat_example_avg_out"), ("sum", "softsplat_example_sum_out")):
        ref = units[key]
        out = forward_splat(x, flow, mode)
        err = (out - ref).abs().max().item()
        assert err <= 1e-5 * max(1.0, ref.abs().max().item()), f"{mode}: max abs error {err}"


def test_pieces_equal_reference():
    g = torch.Generator().manual_seed(2)
    flow = torch.randn(3, 2, 5, 7, generator=g) * 2
    flow[1, 0, 2, 3] = NAN
    uncond, cond = torch.randn(3, 8, 5, 7, generator=g), torch.randn(3, 8, 5, 7, generator=g)
    both = torch.cat([uncond, cond])  # (G*N): item g*N + n uses flow n
    corners = splat_corners(flow)
    normaliser = splat_normaliser(corners)
    # The normaliser equals the splatted ones-channel of the reference 'avg'.
    assert torch.equal(normaliser, forward_splat(torch.ones(3, 1, 5, 7), flow, "sum"))
    shared = normalise_splat(splat_sum(both, corners), normaliser)
    assert torch.equal(shared, torch.cat([forward_splat(uncond, flow), forward_splat(cond, flow)]))
    zero = normalise_splat(splat_sum(cond, corners), normaliser, "zeroeps")
    assert torch.equal(zero, forward_splat(cond, flow, "avg-zeroeps"))
    # A batch of one is pushed along every flow.
    one = torch.randn(1, 2, 5, 7, generator=g)
    assert torch.equal(splat_sum(one, corners), forward_splat(one.expand(3, -1, -1, -1), flow, "sum"))
    with pytest.raises(ValueError, match="to match the flow"):
        splat_sum(torch.zeros(2, 1, 5, 7), corners)


def kernel_loop(x: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Python transcription of the softsplat forward kernel, float32 arithmetic, float64 accumulation."""
    n_, c_, h_, w_ = x.shape
    out = np.zeros(x.shape, dtype=np.float64)
    f32 = np.float32
    for n in range(n_):
        for y in range(h_):
            for xx in range(w_):
                tx = f32(xx) + f32(flow[n, 0, y, xx])
                ty = f32(y) + f32(flow[n, 1, y, xx])
                if not (math.isfinite(tx) and math.isfinite(ty)):
                    continue
                x0, y0 = math.floor(tx), math.floor(ty)
                x1, y1 = x0 + 1, y0 + 1
                corners = (
                    (x0, y0, (f32(x1) - tx) * (f32(y1) - ty)),
                    (x1, y0, (tx - f32(x0)) * (f32(y1) - ty)),
                    (x0, y1, (f32(x1) - tx) * (ty - f32(y0))),
                    (x1, y1, (tx - f32(x0)) * (ty - f32(y0))),
                )
                for cx, cy, wgt in corners:
                    if 0 <= cx < w_ and 0 <= cy < h_:
                        for c in range(c_):
                            out[n, c, cy, cx] += float(f32(x[n, c, y, xx]) * f32(wgt))
    return out


@pytest.mark.parametrize("seed,shape", [(0, (2, 3, 5, 7)), (1, (1, 2, 9, 4)), (2, (3, 1, 1, 6))])
def test_matches_python_kernel_transcription(seed, shape):
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    x = rng.standard_normal(shape).astype(np.float32)
    flow = (rng.standard_normal((n, 2, h, w)) * 3).astype(np.float32)
    flow.reshape(-1)[rng.choice(flow.size, size=3, replace=False)] = np.nan
    flow[0, 0, 0, -1] = np.float32(1e20)
    flow[0, 1, -1, 0] = -np.inf
    flow[-1, 0, h // 2, w // 2] = -1.5 - w // 2  # lands at x = -1.5
    ref_sum = kernel_loop(x, flow)
    ref_w = kernel_loop(np.ones((n, 1, h, w), np.float32), flow)
    out_sum = forward_splat(torch.from_numpy(x), torch.from_numpy(flow), "sum").double().numpy()
    out_avg = forward_splat(torch.from_numpy(x), torch.from_numpy(flow), "avg").double().numpy()
    np.testing.assert_allclose(out_sum, ref_sum, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out_avg, ref_sum / (ref_w + 1e-7), rtol=1e-5, atol=1e-5)


def test_inside_mask_and_index_layout():
    x, flow = spec_example()
    corners = splat_corners(flow)
    inside = corners.inside_mask()
    assert inside.shape == (4, 9)
    assert not inside[:, 8].any()  # the NaN source drops all four corners
    assert inside[:, 4].all()  # the centre pixel's four corners are all inside
    assert corners.index.shape == (4, 9) and corners.index.dtype == torch.long
