"""srformer.pixels: the one float -> uint8 conversion, at its edges (level boundaries, out of range, NaN)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from srformer import pixels
from srformer.pixels import quantize, snap_to_uint8_levels, to_uint8, to_uint8_array


def near_boundary_values() -> tuple[np.ndarray, np.ndarray]:
    """float32 values next to the level boundaries ``(k + 0.5) / 255`` that float32 arithmetic rounds to the
    wrong level, and their correct levels (the exactly computed ``x * 255``, rounded)."""
    values, levels = [], []
    for k in range(255):
        centre = np.float32((k + 0.5) / 255)
        for step in range(-3, 4):
            x = np.float32(centre + np.float32(step) * np.spacing(centre))
            exact = float(x) * 255  # exact in float64: 24 + 8 significant bits
            float32_product = np.float32(x) * np.float32(255)
            if np.round(exact) != np.round(float32_product):
                values.append(x)
                levels.append(int(np.round(exact)))
    return np.array(values, dtype=np.float32), np.array(levels, dtype=np.uint8)


def test_every_level_round_trips() -> None:
    levels = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(to_uint8(levels.float() / 255), levels)
    assert torch.equal(to_uint8(levels.double() / 255), levels)
    assert torch.equal(snap_to_uint8_levels(levels.float() / 255), levels.float() / 255)


def test_values_next_to_a_level_boundary_round_to_the_nearest_level() -> None:
    values, levels = near_boundary_values()
    assert len(values) > 50  # float32 arithmetic (x.mul(255).round()) gets every one of these wrong
    assert not np.array_equal(torch.from_numpy(values).mul(255).round().to(torch.uint8).numpy(), levels)
    np.testing.assert_array_equal(to_uint8(torch.from_numpy(values)).numpy(), levels)
    # just below and just above each boundary: k and k + 1
    for k in (0, 1, 100, 126, 128, 254):
        boundary = (k + 0.5) / 255
        below = np.nextafter(np.float32(boundary), np.float32(0))
        above = np.nextafter(np.float32(boundary), np.float32(1))
        while float(below) * 255 >= k + 0.5:
            below = np.nextafter(below, np.float32(0))
        while float(above) * 255 <= k + 0.5:
            above = np.nextafter(above, np.float32(1))
        assert to_uint8(torch.tensor([below, above])).tolist() == [k, k + 1]


def test_the_one_exact_half_rounds_to_even() -> None:
    """0.5 is the only float32 value on a boundary (127.5); it becomes 128, as MATLAB's im2uint8 gives."""
    assert to_uint8(torch.tensor([0.5])).item() == 128
    assert to_uint8(torch.tensor([254.5, 253.5]), peak=255.0).tolist() == [254, 254]


def test_out_of_range_and_non_finite_values() -> None:
    x = torch.tensor([-0.3, -1e-9, 1 + 1e-6, 7.0, float("-inf"), float("inf"), float("nan")])
    assert to_uint8(x).tolist() == [0, 0, 255, 255, 0, 255, 0]
    assert to_uint8(torch.tensor([-4.0, 255.49, 300.0, float("nan")]), peak=255.0).tolist() == [0, 255, 255, 0]


def test_dtypes_shapes_and_devices() -> None:
    image = torch.rand(2, 3, 5, 7)
    assert to_uint8(image).shape == image.shape and to_uint8(image).dtype == torch.uint8
    assert torch.equal(to_uint8(image.half()), to_uint8(image.half().float()))
    assert torch.equal(to_uint8(image.bfloat16()), to_uint8(image.bfloat16().float()))
    levels = to_uint8(image)
    assert to_uint8(levels) is levels  # uint8 is already levels
    with pytest.raises(TypeError, match="float image or a uint8 image"):
        to_uint8(torch.arange(4))
    assert snap_to_uint8_levels(image.double()).dtype == torch.float32


def test_numpy_variant_matches_and_leaves_its_input_alone() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.uniform(-0.1, 1.1, (6, 8, 3)).astype(np.float32)
    original = rgb.copy()
    flipped = rgb[::-1, :, ::2]  # negative strides, not contiguous
    np.testing.assert_array_equal(to_uint8_array(rgb), to_uint8(torch.from_numpy(original)).numpy())
    np.testing.assert_array_equal(to_uint8_array(flipped), to_uint8(torch.from_numpy(flipped.copy())).numpy())
    np.testing.assert_array_equal(rgb, original)
    assert to_uint8_array(np.array([[12.4, 12.6]]), peak=255.0).tolist() == [[12, 13]]


def around_boundaries(bits: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 values within 4 ulps of level boundaries ``(k + 0.5) / top`` (every level at 8 bits, one in 61 at
    16), and their levels computed with exact rational arithmetic (Python rounds a Fraction's halves to even)."""
    top = 2**bits - 1
    values = []
    for k in range(0, top, 1 if bits == 8 else 61):
        centre = np.float32((k + 0.5) / top)
        values += [centre + np.float32(step) * np.spacing(centre) for step in range(-4, 5)]
    values = np.array(values + [0.0, 0.5, 1.0], dtype=np.float32)
    levels = [round(Fraction(float(x)) * top) for x in values]
    return values, np.array(levels, dtype=np.uint8 if bits == 8 else np.uint16)


@pytest.mark.parametrize("bits", [8, 16])
def test_quantize_rounds_the_exact_product_for_tensors_and_arrays(bits: int) -> None:
    values, levels = around_boundaries(bits)
    np.testing.assert_array_equal(quantize(values, bits), levels)
    np.testing.assert_array_equal(quantize(torch.from_numpy(values), bits).numpy(), levels)
    np.testing.assert_array_equal(quantize(values.astype(np.float64), bits), levels)  # float32 values, in float64
    float32_product = np.rint(values * np.float32(2**bits - 1))  # the writer's former formula
    assert not np.array_equal(float32_product, levels)


@pytest.mark.parametrize("bits", [8, 16])
def test_quantize_a_piece_at_a_time_is_the_whole_formula(bits: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large images are converted in pieces (contiguous runs, or rows of a strided view): same levels as the
    formula applied to the whole image in float64, for tensors and arrays alike."""
    monkeypatch.setattr(pixels, "STEP_ELEMENTS", 1000)  # many pieces, some not a whole number of rows
    rng = np.random.default_rng(bits)
    image = rng.uniform(-0.1, 1.1, (37, 41, 3)).astype(np.float32)
    image[3, 4] = [np.nan, np.inf, -np.inf]
    top = 2**bits - 1
    whole = np.round(np.clip(np.nan_to_num(image.astype(np.float64)), 0, 1) * top)
    for view, expected in ((image, whole), (image[::-1, ::2], whole[::-1, ::2]), (image[..., 1], whole[..., 1])):
        np.testing.assert_array_equal(quantize(view, bits), expected)
        np.testing.assert_array_equal(quantize(torch.from_numpy(view.copy()), bits).numpy(), expected)
    channels_first = torch.from_numpy(image).permute(2, 0, 1)  # not contiguous: pieces of whole rows
    np.testing.assert_array_equal(quantize(channels_first, bits).numpy(), whole.transpose(2, 0, 1))
    assert quantize(image, bits).dtype == (np.uint8 if bits == 8 else np.uint16)
    with pytest.raises(ValueError, match="8 or 16 bits"):
        quantize(image, 12)
