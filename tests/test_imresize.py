"""MATLAB bicubic resize: against a float64 loop-form reference written here from MATLAB's algorithm, and
against values known analytically."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
import torch

from srformer.imresize import imresize, output_length


def reference_resize_1d(signal: np.ndarray, out_length: int, scale: float) -> np.ndarray:
    """MATLAB ``imresize`` bicubic along axis 0 of ``signal`` (float64), one output pixel at a time."""

    def cubic(x: float) -> float:
        x = abs(x)
        if x <= 1:
            return 1.5 * x**3 - 2.5 * x**2 + 1
        if x <= 2:
            return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
        return 0.0

    n = signal.shape[0]
    width = 4 / scale if scale < 1 else 4
    out = np.zeros((out_length, *signal.shape[1:]))
    for x in range(1, out_length + 1):  # 1-based, as in MATLAB
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = [left + k for k in range(math.ceil(width) + 2)]
        weights = [scale * cubic(scale * (u - j)) if scale < 1 else cubic(u - j) for j in taps]
        total = sum(weights)
        for j, w in zip(taps, weights, strict=True):
            # symmetric padding: ... 2 1 | 1 2 ... n | n n-1 ...
            k = (j - 1) % (2 * n)
            source = k if k < n else 2 * n - 1 - k
            out[x - 1] += (w / total) * signal[source]
    return out


def reference_imresize(image: np.ndarray, scale: float, uint8: bool) -> np.ndarray:
    """(H, W, ...) float64 image resized by ``scale``: rows first, then columns; rounded after each pass
    when ``uint8`` (MATLAB returns the input's class from each pass)."""
    out_h = math.ceil(round(image.shape[0] * scale, 9))
    out_w = math.ceil(round(image.shape[1] * scale, 9))
    rows = reference_resize_1d(image.astype(np.float64), out_h, scale)
    if uint8:
        rows = np.clip(np.round(rows), 0, 255)
    cols = reference_resize_1d(rows.swapaxes(0, 1), out_w, scale).swapaxes(0, 1)
    if uint8:
        cols = np.clip(np.round(cols), 0, 255)
    return cols


def as_chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 29x37 RGB crop with edges and texture (sizes not multiples of 2, 3 or 4)."""
    return skimage.data.astronaut()[100:129, 200:237]


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2, 3, 4, 0.7, 1.5])
def test_float_matches_reference(photo: np.ndarray, scale: float) -> None:
    image = photo.astype(np.float64) / 255
    expected = reference_imresize(image, scale, uint8=False)
    got = imresize(as_chw(image), scale=scale)
    assert got.dtype == torch.float64
    assert got.shape == (3, expected.shape[0], expected.shape[1])
    np.testing.assert_allclose(got.permute(1, 2, 0).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2, 4])
def test_uint8_matches_reference_rounding_each_pass(photo: np.ndarray, scale: float) -> None:
    expected = reference_imresize(photo, scale, uint8=True)
    got = imresize(as_chw(photo), scale=scale)
    assert got.dtype == torch.uint8
    diff = np.abs(got.permute(1, 2, 0).numpy().astype(np.int64) - expected.astype(np.int64))
    # Exactly equal, but for a value landing on .5 where summation order may tip the rounding.
    assert diff.max() <= 1 and (diff > 0).mean() < 0.002


def test_uint8_differs_from_rounding_once(photo: np.ndarray) -> None:
    """The per-pass rounding is real: rounding only at the end gives some different pixels."""
    once = np.clip(np.round(reference_imresize(photo, 1 / 3, uint8=False)), 0, 255)
    got = imresize(as_chw(photo), scale=1 / 3).permute(1, 2, 0).numpy()
    assert (got != once).any()


def test_float32_close_to_float64(photo: np.ndarray) -> None:
    image = torch.from_numpy(photo.transpose(2, 0, 1) / 255)
    got = imresize(image.float(), scale=1 / 4)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), imresize(image, scale=1 / 4), atol=1e-6, rtol=0)


def test_size_argument_uses_per_axis_scale(photo: np.ndarray) -> None:
    image = photo.astype(np.float64)
    got = imresize(as_chw(image), size=(15, 74)).permute(1, 2, 0).numpy()
    rows = reference_resize_1d(image, 15, 15 / 29)
    expected = reference_resize_1d(rows.swapaxes(0, 1), 74, 74 / 37).swapaxes(0, 1)
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_output_sizes_are_ceil() -> None:
    assert output_length(10, 1 / 3) == 4
    assert output_length(7, 0.5) == 4
    assert output_length(255, 1 / 3) == 85
    assert output_length(9, 1 / 3) == 3
    assert imresize(torch.zeros(1, 3, 10, 7), scale=1 / 3).shape == (1, 3, 4, 3)
    assert imresize(torch.zeros(2, 3, 5, 6), scale=4).shape == (2, 3, 20, 24)


def test_constant_image_stays_constant() -> None:
    constant = torch.full((2, 3, 23, 31), 0.375, dtype=torch.float64)
    for scale in (1 / 4, 1 / 3, 0.6, 2, 3):
        torch.testing.assert_close(
            imresize(constant, scale=scale), torch.full_like(imresize(constant, scale=scale), 0.375)
        )
    constant_u8 = torch.full((3, 17, 17), 200, dtype=torch.uint8)
    assert (imresize(constant_u8, scale=1 / 3) == 200).all()
    assert (imresize(constant_u8, scale=4) == 200).all()


def test_linear_ramp_downscale_x2() -> None:
    """Interior outputs of x2 are the ramp at 0-based input coordinate 2x + 0.5 (the cubic kernel
    reproduces linear functions and its taps are symmetric there); borders see the mirror padding."""
    ramp = torch.arange(40, dtype=torch.float64).mul(0.5).add(3.0)  # f(i) = 3 + 0.5 i, 0-based
    image = ramp.view(1, 40, 1).expand(1, 40, 6).contiguous()
    out = imresize(image, scale=0.5)[0, :, 0]
    x = torch.arange(20, dtype=torch.float64)
    expected = 3.0 + 0.5 * (2 * x + 0.5)
    torch.testing.assert_close(out[2:-2], expected[2:-2], atol=1e-12, rtol=0)
    assert abs(out[0] - expected[0]) > 1e-3  # the mirror padding is not the ramp's continuation


def test_linear_ramp_upscale_x2() -> None:
    ramp = torch.arange(30, dtype=torch.float64) * 2.0 - 7.0  # f(i) = 2 i - 7, 0-based
    out = imresize(ramp.view(1, 1, 30), scale=2)[0, 0]
    x = torch.arange(60, dtype=torch.float64)
    expected = 2 * (x / 2 - 0.25) - 7  # output x samples input coordinate x/2 - 0.25 (0-based)
    torch.testing.assert_close(out[4:-4], expected[4:-4], atol=1e-12, rtol=0)


def test_upscale_of_downscale_keeps_the_pixel_grid() -> None:
    """x4 up then x1/4 down of a smooth image returns close to the original (no half-pixel shift)."""
    yy, xx = torch.meshgrid(
        torch.linspace(0, 3, 24, dtype=torch.float64), torch.linspace(0, 2, 20, dtype=torch.float64), indexing="ij"
    )
    image = (torch.sin(yy) * torch.cos(xx)).view(1, 1, 24, 20)
    back = imresize(imresize(image, scale=4), scale=1 / 4)
    assert (back - image)[..., 3:-3, 3:-3].abs().max() < 2e-3


def test_batched_equals_single_and_any_leading_dims(photo: np.ndarray) -> None:
    a = as_chw(photo)
    b = torch.flip(a, dims=[-1]).contiguous()
    batch = torch.stack([a, b])
    out = imresize(batch, scale=1 / 3)
    assert torch.equal(out[0], imresize(a, scale=1 / 3))
    assert torch.equal(out[1], imresize(b, scale=1 / 3))
    assert imresize(batch.unsqueeze(0), scale=1 / 3).shape == (1, 2, 3, 10, 13)


def test_half_precision_computed_in_float32(photo: np.ndarray) -> None:
    image = torch.from_numpy(photo.transpose(2, 0, 1).copy()).float() / 255
    out = imresize(image.bfloat16(), scale=2)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), imresize(image, scale=2), atol=1e-2, rtol=0)


def test_bad_arguments() -> None:
    x = torch.zeros(3, 8, 8)
    with pytest.raises(ValueError):
        imresize(x)
    with pytest.raises(ValueError):
        imresize(x, scale=2, size=(4, 4))
    with pytest.raises(ValueError):
        imresize(x, scale=-1)
    with pytest.raises(TypeError):
        imresize(x.long(), scale=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(photo: np.ndarray) -> None:
    image = as_chw(photo).unsqueeze(0)
    for scale in (1 / 4, 1 / 3, 2, 4):
        assert torch.equal(imresize(image.cuda(), scale=scale).cpu(), imresize(image, scale=scale))
        f = image.float() / 255
        torch.testing.assert_close(imresize(f.cuda(), scale=scale).cpu(), imresize(f, scale=scale), atol=1e-5, rtol=0)
