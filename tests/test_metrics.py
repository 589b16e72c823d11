"""Y-channel PSNR/SSIM against values computed independently: numpy formulas written here and
scikit-image's structural_similarity with the protocol's settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
import torch
from skimage.metrics import structural_similarity

from srformer.metrics import psnr, psnr_y, ssim, ssim_y, to_y


def y_of(rgb_uint8: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> BT.601 studio-range Y, float64, unrounded."""
    rgb = rgb_uint8.astype(np.float64)
    return 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255


def hand_psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255**2 / np.mean((a - b) ** 2))


def skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)


def batch(*images: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 arrays -> (B, 3, H, W) float in [0, 1]."""
    return torch.stack([torch.from_numpy(im.transpose(2, 0, 1).copy()) for im in images]).double() / 255


@pytest.fixture(scope="module")
def hr() -> np.ndarray:
    return skimage.data.chelsea()[60:160, 150:270]  # 100x120 RGB


@pytest.fixture(scope="module")
def noisy(hr: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(hr.astype(np.int64) + rng.integers(-12, 13, hr.shape), 0, 255).astype(np.uint8)


def test_identical_images() -> None:
    image = batch(skimage.data.astronaut()[:64, :64])
    assert torch.isinf(psnr_y(image, image, border=4)).all()
    torch.testing.assert_close(ssim_y(image, image, border=4), torch.ones(1, dtype=torch.float64))


def test_to_y_values() -> None:
    pixels = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [10, 200, 30]]], dtype=np.uint8)
    y = to_y(batch(pixels))[0, 0, 0].numpy()
    np.testing.assert_allclose(y, y_of(pixels)[0], atol=1e-12)
    np.testing.assert_allclose(y[:2], [16.0, 235.0], atol=1e-12)


@pytest.mark.parametrize("border", [0, 2, 4])
def test_noise_against_independent_values(hr: np.ndarray, noisy: np.ndarray, border: int) -> None:
    crop = (slice(border, -border), slice(border, -border)) if border else (slice(None), slice(None))
    y_sr, y_hr = y_of(noisy)[crop], y_of(hr)[crop]
    got_psnr = psnr_y(batch(noisy), batch(hr), border).item()
    got_ssim = ssim_y(batch(noisy), batch(hr), border).item()
    assert got_psnr == pytest.approx(hand_psnr(y_sr, y_hr), abs=1e-9)
    assert got_ssim == pytest.approx(skimage_ssim(y_sr, y_hr), abs=1e-9)
    assert 25 < got_psnr < 40 and 0.5 < got_ssim < 0.99  # a real, non-trivial case


def test_one_pixel_shift(hr: np.ndarray) -> None:
    shifted = np.roll(hr, 1, axis=1)
    y_sr, y_hr = y_of(shifted)[3:-3, 3:-3], y_of(hr)[3:-3, 3:-3]
    assert psnr_y(batch(shifted), batch(hr), 3).item() == pytest.approx(hand_psnr(y_sr, y_hr), abs=1e-9)
    assert ssim_y(batch(shifted), batch(hr), 3).item() == pytest.approx(skimage_ssim(y_sr, y_hr), abs=1e-9)


def test_uint8_and_float_inputs_agree(hr: np.ndarray, noisy: np.ndarray) -> None:
    as_uint8 = [torch.from_numpy(im.transpose(2, 0, 1).copy()).unsqueeze(0) for im in (noisy, hr)]
    # Floats a little off the uint8 levels round to the same levels; values outside [0, 1] are clamped.
    jitter = (torch.rand(1, 3, *hr.shape[:2], generator=torch.Generator().manual_seed(0)) - 0.5) * 0.9 / 255
    off_levels = (batch(noisy) + jitter).float()
    off_levels = torch.where(batch(noisy) == 0, off_levels - 0.3, off_levels)
    off_levels = torch.where(batch(noisy) == 1, off_levels + 0.3, off_levels)
    for metric in (psnr_y, ssim_y):
        expected = metric(*as_uint8, 2)
        torch.testing.assert_close(metric(batch(noisy), batch(hr), 2), expected)
        torch.testing.assert_close(metric(off_levels, batch(hr).float(), 2), expected)


def test_border_crop_hides_border_errors(hr: np.ndarray) -> None:
    damaged = hr.copy()
    damaged[:3] = 0
    damaged[:, -3:] = 255
    assert torch.isinf(psnr_y(batch(damaged), batch(hr), 3)).all()
    assert psnr_y(batch(damaged), batch(hr), 2).item() < 30  # one damaged row and column remain


def test_rgb_space(hr: np.ndarray, noisy: np.ndarray) -> None:
    a, b = noisy.astype(np.float64)[4:-4, 4:-4], hr.astype(np.float64)[4:-4, 4:-4]
    assert psnr(batch(noisy), batch(hr), 4, space="rgb").item() == pytest.approx(hand_psnr(a, b), abs=1e-9)
    expected_ssim = np.mean([skimage_ssim(a[..., c], b[..., c]) for c in range(3)])
    assert ssim(batch(noisy), batch(hr), 4, space="rgb").item() == pytest.approx(expected_ssim, abs=1e-9)


def test_gray_images_use_studio_range_y() -> None:
    """Gray read as three equal channels: Y = 16 + 219/255 gray, so PSNR is 20 log10(255/219) dB above
    the PSNR of the gray levels themselves (the SwinIR/BasicSR convention)."""
    gray = skimage.data.camera()[100:180, 200:300]
    rng = np.random.default_rng(1)
    noisy_gray = np.clip(gray.astype(np.int64) + rng.integers(-9, 10, gray.shape), 0, 255).astype(np.uint8)
    rgb, rgb_noisy = (np.repeat(g[..., None], 3, axis=2) for g in (gray, noisy_gray))
    a, b = noisy_gray.astype(np.float64)[4:-4, 4:-4], gray.astype(np.float64)[4:-4, 4:-4]
    got = psnr_y(batch(rgb_noisy), batch(rgb), 4).item()
    assert got == pytest.approx(hand_psnr(a, b) + 20 * math.log10(255 / 219), abs=1e-9)


def test_batches_are_per_image(hr: np.ndarray, noisy: np.ndarray) -> None:
    both = psnr_y(batch(noisy, hr), batch(hr, noisy), 4)
    torch.testing.assert_close(both, psnr_y(batch(noisy), batch(hr), 4).repeat(2))


def test_bad_inputs(hr: np.ndarray) -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        psnr_y(batch(hr), batch(hr)[..., :-1], 2)
    with pytest.raises(ValueError, match="border"):
        psnr_y(batch(hr[:8, :8]), batch(hr[:8, :8]), 4)
    with pytest.raises(ValueError, match="11x11"):
        ssim_y(batch(hr[:20, :20]), batch(hr[:20, :20]), 5)
