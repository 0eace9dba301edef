"""Resize-to-cover + centre crop (stage1_spec.md section 7) and size checks."""

import numpy as np
import pytest
import torch

from motion_i2v_core.motion.image_prep import check_size, fit_image, fit_mask, fit_transform, to_01, to_pm1


@pytest.mark.parametrize("h, w", [(320, 512), (64, 64), (512, 320), (1024, 1024)])
def test_check_size_accepts_multiples_of_64(h, w):
    check_size(h, w)


def test_check_size_messages():
    with pytest.raises(ValueError, match="height 300 is not a multiple of 64; use 256 or 320"):
        check_size(300, 512)
    with pytest.raises(ValueError, match="width 500 is not a multiple of 64; use 448 or 512"):
        check_size(320, 500)
    with pytest.raises(ValueError, match="too small"):
        check_size(0, 512)
    with pytest.raises(ValueError, match="integer"):
        check_size(320.0, 512)


def test_fit_transform_matches_app_geometry():
    # 1000x600 (w x h) -> 512x320: s = max(0.512, 0.5333) = 0.5333 -> 533x320, crop 10 px left
    tf = fit_transform(600, 1000, 320, 512)
    assert (tf.resized_width, tf.resized_height, tf.offset_x, tf.offset_y) == (533, 320, 10, 0)
    # torchvision CenterCrop rounds half to even: (69 - 64) / 2 = 2.5 -> 2
    tf2 = fit_transform(64, 69, 64, 64)
    assert tf2.offset_x == 2
    # float round-off never makes the resize smaller than the target
    for h0, w0 in [(333, 517), (719, 1283), (101, 97)]:
        t = fit_transform(h0, w0, 320, 512)
        assert t.resized_width >= 512 and t.resized_height >= 320


def test_fit_image_layouts_and_content():
    # 100 (h) x 200 (w) image, left half black / right half white, and a red marker column at x=100.
    img = torch.zeros(100, 200, 3)
    img[:, 100:] = 1.0
    out_hwc, tf = fit_image(img, 64, 64)
    out_chw, _ = fit_image(img.permute(2, 0, 1), 64, 64)
    out_b, _ = fit_image(img[None], 64, 64)
    assert out_hwc.shape == (3, 64, 64) and torch.equal(out_hwc, out_chw) and torch.equal(out_hwc, out_b)
    # scale 0.64 -> 128x64, crop 32 px each side: the edge (x=100 -> 64-32=32) stays in the middle
    assert (tf.resized_width, tf.offset_x) == (128, 32)
    assert tf.apply_points([[100, 50]]).tolist() == [[32.0, 32.0]]
    assert out_hwc[:, :, :30].max() < 0.01 and out_hwc[:, :, 34:].min() > 0.99
    assert out_hwc.min() >= 0 and out_hwc.max() <= 1


def test_fit_image_identity_at_target_size():
    img = torch.rand(3, 64, 128)
    out, tf = fit_image(img, 64, 128)
    assert torch.equal(out, img) and (tf.scale_x, tf.scale_y, tf.offset_x, tf.offset_y) == (1, 1, 0, 0)


def test_fit_image_rejects_bad_shapes():
    with pytest.raises(ValueError, match="3 colour channels"):
        fit_image(torch.rand(10, 10, 4), 64, 64)
    with pytest.raises(ValueError, match="batch of 2"):
        fit_image(torch.rand(2, 10, 10, 3), 64, 64)


def test_fit_mask_uses_the_same_geometry():
    m = np.zeros((100, 200), np.float32)
    m[:, 100:] = 1
    tf = fit_transform(100, 200, 64, 64)
    fm = fit_mask(m, tf)
    assert fm.shape == (64, 64) and fm[:, :31].max() == 0 and fm[:, 33:].min() == 1


def test_range_conversions():
    x = torch.rand(3, 4, 4)
    assert torch.allclose(to_01(to_pm1(x)), x)
    assert to_pm1(torch.tensor([0.0, 1.0])).tolist() == [-1.0, 1.0]
