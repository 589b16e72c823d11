"""Running a model on images of any size: tiling, self-ensemble, precision, and output checks.

Tiling cuts the low-resolution input into overlapping tiles, upscales each, and blends them with weights that
ramp smoothly (raised cosine) across each overlap, so no seam shows. Tiles start on multiples of the attention
window and have a window-multiple size, so every (shifted) window inside a tile is the same window the whole
image would use; only the tile borders see less context, and those pixels are faded out by the blend: the
outer quarter of each overlap gets zero weight, the middle half is the crossfade.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from srformer.errors import SRFormerError

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: Default overlap between neighbouring tiles, in input pixels (rounded up to a window multiple).
DEFAULT_TILE_OVERLAP = 32

#: Peak resident memory of a forward pass per input pixel per feature channel (fp32), measured on the CPU
#: with ru_maxrss: tiny 109 / 85 at 256 / 512 px inputs, light 100 / 79 at 256 / 384 px.
_PEAK_BYTES_PER_PIXEL_CHANNEL = 110

#: On CPU, auto tiles are sized to this share of the available memory, at most this many bytes.
_CPU_TILE_BUDGET = 512 * 2**20

TileProgress = Callable[[int, int], None]


class InferenceError(SRFormerError):
    """The model cannot run as asked (precision unsupported on the device) or produced NaN/inf."""


def check_precision(precision: str, device: torch.device) -> None:
    """Raise :class:`InferenceError` when ``precision`` is unknown or not supported on ``device``."""
    if precision not in PRECISIONS:
        raise InferenceError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        raise InferenceError("fp16 is not supported on the CPU; use --precision bf16 or fp32 there")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InferenceError(f"bf16 is not supported on {torch.cuda.get_device_name(device)}; use fp16 or fp32")


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[precision])


def available_memory(device: torch.device) -> int:
    """Free bytes on ``device``: CUDA's free memory, or the system's available memory for the CPU."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/meminfo") as meminfo:
            line = next(line for line in meminfo if line.startswith("MemAvailable:"))
        return int(line.split()[1]) * 1024
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return 2 * 2**30


def auto_tile_size(model: nn.Module, device: torch.device, precision: str = "fp32") -> int:
    """Largest window-multiple tile side (input pixels) whose forward pass fits the memory budget of ``device``."""
    window = _window_size(model)
    channels = int(getattr(model, "config", {}).get("dim", 64))
    bytes_per_pixel = _PEAK_BYTES_PER_PIXEL_CHANNEL * channels * (1 if precision == "fp32" else 0.6)
    free = available_memory(device)
    budget = 0.6 * free if device.type == "cuda" else min(0.4 * free, _CPU_TILE_BUDGET)
    side = int(math.sqrt(budget / bytes_per_pixel)) // window * window
    return max(side, 2 * window)


def _window_size(model: nn.Module) -> int:
    return int(getattr(model, "window_size", 1))


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def tile_starts(length: int, tile: int, overlap: int, window: int) -> list[int]:
    """Start offsets of tiles covering ``[0, length)``: window-aligned, neighbours overlapping by >= ``overlap``.

    Every tile is ``tile`` long except the last, which runs to ``length`` (between ``tile`` and
    ``tile + window - 1`` long), so no tile is a thin sliver.
    """
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    last = (length - tile) // window * window
    if last - starts[-1] < window:  # the regular grid already reaches the end
        starts[-1] = last
    else:
        starts.append(last)
    return starts


def _ramp(length: int, fade: int, discard: int, fade_start: bool, fade_end: bool) -> Tensor:
    """Blend weights ``(length,)`` of a tile along one axis, in output pixels.

    On a side shared with a neighbour the first ``discard`` pixels get weight 0, the next ``fade`` pixels rise
    as a raised cosine, the rest is 1. Two neighbours overlapping by exactly ``2 * discard + fade`` pixels thus
    sum to 1 everywhere; larger overlaps are normalised by the accumulated weight.
    """
    weight = torch.ones(length, dtype=torch.float64)
    position = torch.arange(length, dtype=torch.float64)
    rise = torch.sin(0.5 * math.pi * ((position + 0.5 - discard) / fade).clamp(0, 1)) ** 2
    if fade_start:
        weight *= rise
    if fade_end:
        weight *= rise.flip(0)
    return weight.float()


def upscale_tensor(
    model: nn.Module,
    lr: Tensor,
    tile: int | Literal["auto"] | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    precision: Precision = "fp32",
    tta: bool = False,
    on_tile: TileProgress | None = None,
) -> Tensor:
    """Upscale ``lr`` float ``(B, 3, H, W)`` in [0, 1] -> ``(B, 3, s*H, s*W)`` float32 in [0, 1].

    Args:
        model: an SR model with ``.scale`` (and ``.window_size`` for aligned tiles), in eval mode.
        lr: input batch on the model's device.
        tile: tile side in input pixels (rounded up to a window multiple), ``"auto"`` to size it from the
            free memory of the device, or ``None``/0 to run the whole image at once.
        tile_overlap: overlap of neighbouring tiles in input pixels (rounded up to a window multiple).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast); fp16 is refused on the CPU.
        tta: average the 8 flips/rotations of the input (x8 self-ensemble; 8 times slower).
        on_tile: called as ``on_tile(done, total)`` after each tile (over all TTA passes).

    Raises:
        InferenceError: unsupported precision, or the model produced NaN/inf.
    """
    if lr.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(lr.shape)}")
    device = lr.device
    check_precision(precision, device)
    if tile == "auto":
        tile = auto_tile_size(model, device, precision)
    transforms = _TTA_TRANSFORMS if tta else _TTA_TRANSFORMS[:1]
    tiles_per_pass = [
        _count_tiles(_transformed_size(lr, t), tile, tile_overlap, _window_size(model)) for t in transforms
    ]
    progress = _ProgressCounter(sum(tiles_per_pass), on_tile)
    total: Tensor | None = None
    with torch.inference_mode():
        for transform in transforms:
            sr = _upscale_tiled(model, _apply(lr, transform), tile or None, tile_overlap, precision, progress)
            sr = _invert(sr, transform)
            total = sr if total is None else total.add_(sr)
        assert total is not None
        total = total.div_(len(transforms)).clamp_(0.0, 1.0)
    return total.clone()  # a normal tensor: callers may modify it outside inference mode


class _ProgressCounter:
    def __init__(self, total: int, callback: TileProgress | None) -> None:
        self.total, self.done, self.callback = total, 0, callback

    def step(self) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total)


# (transpose, k) pairs: rotate by k * 90 degrees after an optional transpose; the 8 symmetries of a square.
_TTA_TRANSFORMS: list[tuple[bool, int]] = [(t, k) for t in (False, True) for k in range(4)]


def _apply(x: Tensor, transform: tuple[bool, int]) -> Tensor:
    transpose, k = transform
    if transpose:
        x = x.transpose(-2, -1)
    return torch.rot90(x, k, dims=(-2, -1)).contiguous() if k else x.contiguous()


def _invert(x: Tensor, transform: tuple[bool, int]) -> Tensor:
    transpose, k = transform
    if k:
        x = torch.rot90(x, -k, dims=(-2, -1))
    return x.transpose(-2, -1) if transpose else x


def _transformed_size(x: Tensor, transform: tuple[bool, int]) -> tuple[int, int]:
    height, width = x.shape[-2:]
    transpose, k = transform
    return (width, height) if transpose != (k % 2 == 1) else (height, width)


def _tile_grid(size: tuple[int, int], tile: int | None, overlap: int, window: int) -> tuple[int, int, list, list]:
    height, width = size
    if not tile:
        return height, width, [0], [0]
    overlap = _round_up(max(overlap, 0), window)
    # Overlapping tiles must advance by a window multiple, so a tile is at least overlap + one window.
    tile = max(_round_up(tile, window), overlap + window)
    return tile, overlap, tile_starts(height, tile, overlap, window), tile_starts(width, tile, overlap, window)


def _count_tiles(size: tuple[int, int], tile: int | None, overlap: int, window: int) -> int:
    _, _, rows, cols = _tile_grid(size, tile, overlap, window)
    return len(rows) * len(cols)


def _run(model: nn.Module, x: Tensor, precision: str) -> Tensor:
    with _autocast(precision, x.device):
        out = model(x)
    out = out.float()
    if not torch.isfinite(out).all():
        hint = " (try --precision fp32)" if precision != "fp32" else ""
        raise InferenceError(f"the model produced NaN or infinite values in {precision}{hint}")
    return out


def _upscale_tiled(
    model: nn.Module, lr: Tensor, tile: int | None, overlap: int, precision: str, progress: _ProgressCounter
) -> Tensor:
    """One pass over tiles of ``lr`` ``(B, C, H, W)`` -> ``(B, C, s*H, s*W)`` float32 (not clamped)."""
    scale = int(model.scale)
    window = _window_size(model)
    batch, channels, height, width = lr.shape
    tile, overlap, rows, cols = _tile_grid((height, width), tile, overlap, window)
    if len(rows) == 1 and len(cols) == 1:
        out = _run(model, lr, precision)
        progress.step()
        return out
    # Blend weights are separable, so their sum is the outer product of per-axis sums: no full-size buffer.
    discard = overlap // 4 * scale
    fade = max(overlap * scale - 2 * discard, 1)
    out = torch.zeros(batch, channels, height * scale, width * scale, device=lr.device)
    row_sum = torch.zeros(height * scale, device=lr.device)
    col_sum = torch.zeros(width * scale, device=lr.device)
    row_spans = _spans(rows, tile, height)
    col_spans = _spans(cols, tile, width)
    row_weights = [
        _axis_weight(i, span, row_spans, scale, fade, discard).to(lr.device) for i, span in enumerate(row_spans)
    ]
    col_weights = [
        _axis_weight(j, span, col_spans, scale, fade, discard).to(lr.device) for j, span in enumerate(col_spans)
    ]
    for (top, bottom), row_weight in zip(row_spans, row_weights, strict=True):
        row_sum[top * scale : bottom * scale] += row_weight
    for (left, right), col_weight in zip(col_spans, col_weights, strict=True):
        col_sum[left * scale : right * scale] += col_weight
    for (top, bottom), row_weight in zip(row_spans, row_weights, strict=True):
        for (left, right), col_weight in zip(col_spans, col_weights, strict=True):
            sr = _run(model, lr[..., top:bottom, left:right], precision)
            weight = row_weight[:, None] * col_weight[None, :]
            out[..., top * scale : bottom * scale, left * scale : right * scale] += sr * weight
            progress.step()
    return out.div_(row_sum[:, None] * col_sum[None, :])


def _spans(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    ends = [min(start + tile, length) for start in starts[:-1]] + [length]
    return list(zip(starts, ends, strict=True))


def _axis_weight(
    index: int, span: tuple[int, int], spans: list[tuple[int, int]], scale: int, fade: int, discard: int
) -> Tensor:
    start, end = span
    return _ramp((end - start) * scale, fade, discard, fade_start=index > 0, fade_end=index < len(spans) - 1)
