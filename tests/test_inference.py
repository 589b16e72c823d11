"""upscale_tensor: tiling equals whole-image inference, blending, self-ensemble, precision and output checks."""

from __future__ import annotations

import pytest
import torch
from skimage import data
from torch import Tensor, nn

from srformer import inference
from srformer.handle import ModelHandle
from srformer.imresize import imresize
from srformer.inference import (
    InferenceError,
    _ramp,
    auto_tile_size,
    tile_spans,
    upscale_bands,
    upscale_tensor,
)
from srformer.metrics import psnr_y
from srformer.models import build_model


def detailed_tiny(scale: int) -> nn.Module:
    """A random tiny model whose body contributes (a fresh model starts as exact bicubic: zero last conv)."""
    torch.manual_seed(0)
    model = build_model("tiny", scale).eval()
    last = [m for m in model.upsampler.modules() if isinstance(m, nn.Conv2d)][-1]
    nn.init.normal_(last.weight, std=0.02)
    return model


@pytest.fixture(scope="module")
def model_x4() -> nn.Module:
    return detailed_tiny(4)


@pytest.fixture(scope="module")
def photo_pair() -> tuple[Tensor, Tensor]:
    """(lr, hr) from a real photo with the project's protocol: HR 256x320, LR its MATLAB bicubic x1/4."""
    hr = torch.from_numpy(data.astronaut()[64:320, 96:416]).permute(2, 0, 1)[None].contiguous()
    lr = imresize(hr, scale=0.25)
    return lr.float() / 255, hr.float() / 255


def test_untiled_is_the_model_output(model_x4: nn.Module) -> None:
    x = torch.rand(1, 3, 21, 18)
    with torch.no_grad():
        expected = model_x4(x).clamp(0, 1)
    torch.testing.assert_close(upscale_tensor(model_x4, x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("length", [1, 15, 16, 47, 48, 49, 63, 64, 65, 100, 161, 1500, 2000, 4001])
def test_tile_spans_cover_aligned_balanced_and_overlapping(length: int) -> None:
    tile, overlap, window = 48, 16, 16
    spans = tile_spans(length, tile, overlap, window)
    assert spans[0][0] == 0 and spans[-1][1] == length and all(start % window == 0 for start, _ in spans)
    assert all(0 < end - start <= tile for start, end in spans)
    for (start, end), (next_start, _) in zip(spans, spans[1:], strict=False):
        assert start < next_start and end - next_start >= overlap  # neighbours overlap by at least `overlap`
    # Balanced: no fewer tiles are possible, and the last one adds new pixels, not only overlap.
    assert len(spans) == max(1, -(-(length - overlap) // (tile - overlap)))
    assert spans[-1][1] - spans[-2][1] > 0 if len(spans) > 1 else spans == [(0, length)]
    # One shape: every tile pads to the same window multiple, and none is longer than needed for its count.
    padded = {_round_up(end - start, window) for start, end in spans}
    assert len(padded) == 1
    if len(spans) > 1:
        assert padded.pop() - window < (length + (len(spans) - 1) * overlap) / len(spans)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def test_blend_weights_of_neighbours_sum_to_one() -> None:
    fade, discard = 32, 8
    overlap = fade + 2 * discard
    left = _ramp(100, fade, discard, fade_start=False, fade_end=True)
    right = _ramp(100, fade, discard, fade_start=True, fade_end=False)
    torch.testing.assert_close(left[-overlap:] + right[:overlap], torch.ones(overlap))
    assert left[-discard:].abs().max() == 0 and right[:discard].abs().max() == 0
    assert torch.all(left[:-overlap] == 1)


def test_tiled_matches_untiled_on_a_photo(model_x4: nn.Module, photo_pair: tuple[Tensor, Tensor]) -> None:
    lr, hr = photo_pair  # LR 64x80: 3 x 3 tiles of 32 with overlap 16
    whole = upscale_tensor(model_x4, lr)
    tiled = upscale_tensor(model_x4, lr, tile=32, tile_overlap=16)
    assert tiled.shape == whole.shape == hr.shape
    assert abs(float(psnr_y(tiled, hr, 4) - psnr_y(whole, hr, 4))) < 0.01
    # No seams: nowhere, tile borders included, does the tiled result differ by 2 grey levels or more.
    difference = (tiled - whole).abs()
    assert difference.max() < 2 / 255
    assert difference.mean() < 0.25 / 255


def test_tiling_really_happens(model_x4: nn.Module) -> None:
    calls: list[tuple[int, int]] = []
    upscale_tensor(
        model_x4, torch.rand(1, 3, 70, 90), tile=32, tile_overlap=16, on_tile=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (20, 20) and len(calls) == 20  # 4 rows x 5 columns of 32 advancing by 16


def test_bands_are_the_tiled_result_top_to_bottom(model_x4: nn.Module) -> None:
    x = torch.rand(1, 3, 70, 90)
    whole = upscale_tensor(model_x4, x, tile=32, tile_overlap=16)
    bands = [band.clone() for band in upscale_bands(model_x4, x, tile=32, tile_overlap=16)]
    assert len(bands) == 4 and all(band.shape[-1] == 360 for band in bands)  # one band per row of tiles
    torch.testing.assert_close(torch.cat(bands, dim=-2), whole, rtol=0, atol=0)


class _Pointwise(nn.Module):
    """A model without context: each output pixel depends on its input pixel only, so any tiling gives the
    untiled result up to rounding, whatever the blend weights."""

    scale, window_size = 2, 8

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.interpolate(x.sin() * 0.5 + 0.25, scale_factor=2, mode="nearest")


@pytest.mark.parametrize("tile", [24, 40])  # 24: the carried rows overlap their place at the top of the buffer
def test_rows_carried_between_bands_are_blended_in(tile: int) -> None:
    x = torch.rand(1, 3, 75, 50)
    whole = upscale_tensor(_Pointwise(), x)
    tiled = torch.cat([band.clone() for band in upscale_bands(_Pointwise(), x, tile=tile, tile_overlap=16)], -2)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


def test_auto_tile_is_a_window_multiple(model_x4: nn.Module) -> None:
    tile = auto_tile_size(ModelHandle.wrap(model_x4), torch.device("cpu"))
    assert tile % model_x4.window_size == 0 and tile >= 2 * model_x4.window_size
    with pytest.raises(TypeError, match="memory per pixel"):  # a bare module does not know it
        auto_tile_size(model_x4, torch.device("cpu"))


def test_auto_tile_sizes_memory_from_the_model_not_its_config(
    model_x4: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A community model has no ``config``: its feature width is read from its stem convolution instead, and
    its memory per pixel and channel is the conservative one measured on SwinIR-light, not this network's."""
    monkeypatch.setattr(inference, "available_memory", lambda device: 2**29)  # memory-bound, under the CPU cap

    class Wrapped(nn.Module):  # as srformer.checkpoint.ZooModel wraps a spandrel network: no `config`
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net, self.window_size = net, model_x4.window_size

        scale = model_x4.scale

    wider = Wrapped(nn.Conv2d(3, 4 * model_x4.config["dim"], 3))
    cpu = torch.device("cpu")
    sizes = [auto_tile_size(ModelHandle.wrap(m), cpu) for m in (wider, Wrapped(model_x4), model_x4)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_tta_is_the_mean_of_eight_symmetries(model_x4: nn.Module) -> None:
    x = torch.rand(1, 3, 20, 28)
    outputs = []
    with torch.no_grad():
        for flip in (False, True):
            for k in range(4):
                y = torch.rot90(x.flip(-1) if flip else x, k, dims=(-2, -1))
                out = torch.rot90(model_x4(y), -k, dims=(-2, -1))
                outputs.append(out.flip(-1) if flip else out)
    expected = torch.stack(outputs).mean(0).clamp(0, 1)
    result = upscale_tensor(model_x4, x, tta=True)
    torch.testing.assert_close(result, expected, atol=1e-5, rtol=0)
    assert (result - upscale_tensor(model_x4, x)).abs().max() > 1e-3  # the ensemble changes something


def test_fp16_refused_on_cpu(model_x4: nn.Module) -> None:
    with pytest.raises(InferenceError, match="fp16 is not supported on the CPU"):
        upscale_tensor(model_x4, torch.rand(1, 3, 8, 8), precision="fp16")


def test_bf16_close_to_fp32(model_x4: nn.Module) -> None:
    x = torch.rand(1, 3, 24, 24)
    fp32 = upscale_tensor(model_x4, x)
    bf16 = upscale_tensor(model_x4, x, precision="bf16")
    assert bf16.dtype == torch.float32 and (bf16 - fp32).abs().mean() < 0.01


class _Broken(nn.Module):
    scale, window_size = 2, 4

    def forward(self, x: Tensor) -> Tensor:
        out = torch.nn.functional.interpolate(x, scale_factor=2)
        out[..., 3, 3] = float("nan")
        return out


def test_nan_output_is_detected() -> None:
    with pytest.raises(InferenceError, match="NaN"):
        upscale_tensor(_Broken(), torch.rand(1, 3, 8, 8))
    with pytest.raises(InferenceError, match="NaN"):
        upscale_tensor(_Broken(), torch.rand(1, 3, 20, 20), tile=8, tile_overlap=4)


def test_tiny_inputs(model_x4: nn.Module) -> None:
    for height, width in ((1, 1), (3, 5)):
        out = upscale_tensor(model_x4, torch.rand(1, 3, height, width), tile=16)
        assert out.shape == (1, 3, 4 * height, 4 * width) and torch.isfinite(out).all()
