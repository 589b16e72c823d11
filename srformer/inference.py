"""Running a model on images of any size: tiling, self-ensemble, precision, and output checks.

Tiling cuts the low-resolution input into overlapping tiles, upscales each, and blends them with weights that
ramp smoothly (raised cosine) across each overlap, so no seam shows. Tiles start on multiples of the attention
window and have a window-multiple size, so every (shifted) window inside a tile is the same window the whole
image would use; only the tile borders see less context, and those pixels are faded out by the blend: the
outer quarter of each overlap gets zero weight, the middle half is the crossfade.

:func:`upscale_bands` yields the result one row of tiles at a time, so a caller can convert and write it
while the rest is computed, in memory that grows with the image's width, not its area;
:func:`upscale_tensor` is the same computation gathered into one tensor.

How wide the overlap must be was measured on the shipped x4 model (2 CPU threads, 2026-11-29): inverting one
input pixel of a 192x192 photo moved SR pixels by more than 1/255 up to 13-21 input pixels away, and nothing
beyond 48; cutting a photo into tiles, a tile's output differs from the whole image's by up to 44 grey levels
at its border, 8 at 8 px inside, 1.5 at 16 px, 0.3 at 24 px. With 64-px tiles on a photo (a stress test:
seams every 32 px) the result differs from the untiled one by at most 5.0 grey levels at overlap 16
(+0.003 dB PSNR), 2.3 at overlap 32 (+0.0002 dB), 0.6 at overlap 48. On skimage's astronaut upscaled from
320x320 (2026-11-30): overlap 16 +0.002 dB against the HR photo (128- and 256-px tiles), at most 5-6 levels
on 0.05-0.09% of the pixels, 65-67 dB PSNR between tiled and untiled; overlap 32 within 0.001 dB, at most 1-2
levels. The default is 16, the window: well within the 0.01 dB target, and it recomputes half the pixels
overlap 32 does (on a 2000x1500 input with the CPU's 320-px tiles, 13% of the pixels twice).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from srformer.errors import SRFormerError

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: Default overlap between neighbouring tiles, in input pixels (rounded up to a window multiple); from the
#: model's measured reach and the tiled-against-untiled PSNR, see the module docstring.
DEFAULT_TILE_OVERLAP = 16

#: Largest auto tile on the CPU. Per pixel, larger tiles run about as fast or a little faster (shipped x4
#: model, 2 threads, glibc keeping freed memory as infer.py has it, quiet machine, best of 3, 2026-11-30:
#: 208x224 0.72, 240x240 0.69, 256x256 0.70, 272x272 0.78, 304x320 0.76 output Mpx/s; the slowdown measured
#: earlier for large tiles was page faults, see ``allocator.reuse_freed_memory``) and recompute less overlap.
#: On a 2000x1500 -> x4 job in one session, 320 took 83.7 s against 95.6 s for 256 (93% and 85% of the model's
#: own speed on 256x256). The cap is memory: a 320x304 tile's forward pass holds about 500 MB, which fits the
#: 48 MP job's target (1.3 GB + 3 B per output pixel) since the shift mask covers only the border windows.
_CPU_FASTEST_TILE = 320

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


def check_model_precision(precision: str, name: str, supported: Sequence[str]) -> None:
    """Raise :class:`InferenceError` when the model ``name`` is not known to give correct output in ``precision``
    (``supported``: its descriptor's ``precisions``, e.g. ``("fp32", "bf16")`` for SwinIR)."""
    if precision not in supported:
        raise InferenceError(
            f"{name} does not give correct output in {precision}; use --precision {' or '.join(supported)}"
        )


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


def auto_tile_size(model: Any, device: torch.device, precision: str = "fp32") -> int:
    """Tile side (input pixels, a multiple of the model's size multiple) for ``device``: the largest whose
    forward pass fits its memory budget, and on the CPU at most the side that runs fastest per new pixel
    (``_CPU_FASTEST_TILE``).

    ``model``: a :class:`srformer.handle.ModelHandle` (``open_model``, or ``ModelHandle.wrap`` for a module built
    in this process), whose ``bytes_per_pixel`` estimates its peak memory per input pixel."""
    bytes_per_pixel = getattr(model, "bytes_per_pixel", None)
    if bytes_per_pixel is None:
        raise TypeError(
            "an auto tile size needs the model's memory per pixel: pass a srformer.handle.ModelHandle"
            " (open_model, or ModelHandle.wrap(module))"
        )
    window = size_multiple(model)
    bytes_per_pixel *= 1 if precision == "fp32" else 0.6
    free = available_memory(device)
    budget = 0.6 * free if device.type == "cuda" else min(0.4 * free, _CPU_TILE_BUDGET)
    side = int(math.sqrt(budget / bytes_per_pixel))
    if device.type == "cpu":
        side = min(side, _CPU_FASTEST_TILE)
    return max(side // window * window, 2 * window)


def size_multiple(model: Any) -> int:
    """The tile alignment of ``model``: a handle's ``size_multiple``, else (a bare module, as in training
    validation) the ``window_size`` that every model :func:`srformer.checkpoint.load_any` returns has (1 without)."""
    multiple = getattr(model, "size_multiple", None) or getattr(model, "window_size", 1)
    return int(multiple)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def tile_spans(length: int, tile: int, overlap: int, window: int) -> list[tuple[int, int]]:
    """``(start, end)`` of tiles covering ``[0, length)``: window-aligned starts, neighbours overlapping by at least
    ``overlap``, every tile padded by the model to one and the same length.

    As few tiles as ``tile`` allows, each as short as that count permits. All of them have one length, the last
    one a little shorter if need be but padded by the network to that same window multiple: tiles of one shape
    reuse one set of activation buffers, while with the shapes alternating (full tiles, then the shorter last
    one of each row) glibc's heap fragmented and grew (shipped x4 model, 320x304 and 320x272 tiles: 507 MB of
    activations for one shape, 565 then 665 MB for the two alternating, 2026-11-30). ``tile`` and ``overlap``
    must be window multiples, ``tile > overlap``.
    """
    if length <= tile:
        return [(0, length)]
    count = -(-(length - overlap) // (tile - overlap))
    while True:
        size = _round_up(-(-(length + (count - 1) * overlap) // count), window)
        while size <= tile:
            last = _round_up(length - size, window)  # the last tile, [last, length), pads to `size`
            steps = (count - 1) * window
            starts = [(index * last + steps // 2) // steps * window for index in range(count)]
            if all(0 < after - before <= size - overlap for before, after in itertools.pairwise(starts)):
                ends = [start + size for start in starts[:-1]] + [length]
                return list(zip(starts, ends, strict=True))
            size += window
        count += 1


def _ramp(length: int, fade: int, discard: int, fade_start: bool, fade_end: bool) -> Tensor:
    """Blend weights ``(length,)`` of a tile along one axis, in output pixels.

    On a side shared with a neighbour the first ``discard`` pixels get weight 0, the next ``fade`` pixels rise
    as a raised cosine, the rest is 1. Two neighbours overlapping by exactly ``2 * discard + fade`` pixels thus
    sum to 1 everywhere; other overlaps are normalised by the accumulated weight.
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
    *,
    tile: int | Literal["auto"] | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    precision: Precision = "fp32",
    tta: bool = False,
    on_tile: TileProgress | None = None,
) -> Tensor:
    """Upscale ``lr`` float ``(B, 3, H, W)`` in [0, 1] -> ``(B, 3, s*H, s*W)`` float32 in [0, 1].

    The whole result in memory; :func:`upscale_bands` gives the same pixels band by band.

    Args:
        model: a :class:`srformer.handle.ModelHandle`, or a bare SR module with ``.scale`` (and
            ``.window_size`` for aligned tiles) in eval mode.
        lr: input batch on the model's device.
        tile: tile side in input pixels (rounded up to a window multiple), ``"auto"`` to size it for the
            device (:func:`auto_tile_size`), or ``None``/0 to run the whole image at once.
        tile_overlap: overlap of neighbouring tiles in input pixels (rounded up to a window multiple).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast); fp16 is refused on the CPU.
        tta: average the 8 flips/rotations of each tile (x8 self-ensemble; 8 times slower).
        on_tile: called as ``on_tile(done, total)`` after each tile (over all TTA passes).

    Raises:
        InferenceError: unsupported precision, or the model produced NaN/inf.
    """
    scale = int(model.scale)
    out = torch.empty(*lr.shape[:-2], lr.shape[-2] * scale, lr.shape[-1] * scale, device=lr.device)
    top = 0
    for band in upscale_bands(model, lr, tile, tile_overlap, precision, tta, on_tile):
        out[..., top : top + band.shape[-2], :] = band
        top += band.shape[-2]
    return out


def upscale_bands(
    model: nn.Module,
    lr: Tensor,
    tile: int | Literal["auto"] | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    precision: Precision = "fp32",
    tta: bool = False,
    on_tile: TileProgress | None = None,
) -> Iterator[Tensor]:
    """Upscale ``lr`` ``(B, 3, H, W)`` and yield the result top to bottom in row bands.

    Each band is float32 ``(B, 3, rows, s*W)`` in [0, 1], one per row of tiles; the bands' rows add up to
    ``s*H``. All bands are views of one buffer of a row of tiles at the output size, so the memory held does
    not grow with the image's height: a band is valid until the next one is asked for, and read-only (an
    inference-mode tensor); copy what must be kept. Arguments as :func:`upscale_tensor`.
    """
    if lr.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(lr.shape)}")
    device = lr.device
    check_precision(precision, device)
    if tile == "auto":
        tile = auto_tile_size(model, device, precision)
    scale, window = int(model.scale), size_multiple(model)
    height, width = lr.shape[-2:]
    overlap, row_spans, col_spans = _tile_grid((height, width), tile or None, tile_overlap, window)
    transforms = _TTA_TRANSFORMS if tta else _TTA_TRANSFORMS[:1]
    progress = _ProgressCounter(len(row_spans) * len(col_spans) * len(transforms), on_tile)
    # Blend weights are separable, so their sum is the outer product of per-axis sums: no full-size buffer.
    discard = overlap // 4 * scale
    fade = max(overlap * scale - 2 * discard, 1)
    row_weights = _axis_weights(row_spans, scale, fade, discard, device)
    col_weights = _axis_weights(col_spans, scale, fade, discard, device)
    row_sum = _weight_sum(row_spans, row_weights, height * scale, scale, device)
    col_sum = _weight_sum(col_spans, col_weights, width * scale, scale, device)
    tallest = max(bottom - top for top, bottom in row_spans) * scale
    with torch.inference_mode():
        buffer = torch.empty(*lr.shape[:-3], 3, tallest, width * scale, device=device)
    # Rows of the previous band that the current row of tiles overlaps: [carry_start, carry_start + carried)
    # of the buffer, moved to its top when the next band starts (after the caller has read the finished rows).
    # No copy lives on through a row of tiles, where its memory would split the space the model's activations
    # reuse tile after tile.
    carry_start = carried = 0
    for index, ((top, bottom), row_weight) in enumerate(zip(row_spans, row_weights, strict=True)):
        with torch.inference_mode():
            band = buffer[..., : (bottom - top) * scale, :]
            if carried:
                carry = buffer[..., carry_start : carry_start + carried, :]
                band[..., :carried, :] = carry if carry_start >= carried else carry.clone()  # overlapping copy
            band[..., carried:, :] = 0
            for (left, right), col_weight in zip(col_spans, col_weights, strict=True):
                sr = _run_symmetries(model, lr[..., top:bottom, left:right], precision, transforms, progress)
                band[..., left * scale : right * scale] += sr.mul_(row_weight[:, None] * col_weight[None, :])
                del sr  # before the next tile's forward pass, not after it
            # Rows above the next row of tiles are final; the rest is carried into the next band.
            done = (row_spans[index + 1][0] if index + 1 < len(row_spans) else height) - top
            carry_start, carried = done * scale, band.shape[-2] - done * scale
            finished = band[..., : done * scale, :]
            finished /= row_sum[top * scale : (top + done) * scale, None]  # two passes: no temporary of its size
            finished /= col_sum
            finished.clamp_(0.0, 1.0)
        yield finished  # outside inference mode: the caller's code, run meanwhile, is not in it


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


def _run_symmetries(
    model: nn.Module, lr: Tensor, precision: str, transforms: list[tuple[bool, int]], progress: _ProgressCounter
) -> Tensor:
    """Mean SR of ``lr`` ``(B, C, h, w)`` over ``transforms`` -> ``(B, C, s*h, s*w)`` float32 (not clamped).

    The self-ensemble runs per tile: the 8 symmetric versions of a tile see the same context, and the tiles of
    an image stay where they are, so self-ensemble and tiling combine without a second tile grid.
    """
    total: Tensor | None = None
    for transform in transforms:
        sr = _invert(_run(model, _apply(lr, transform), precision), transform)
        total = sr if total is None else total.add_(sr)
        progress.step()
    assert total is not None
    return total.div_(len(transforms)) if len(transforms) > 1 else total


def _tile_grid(
    size: tuple[int, int], tile: int | None, overlap: int, window: int
) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
    """(overlap, row spans, column spans) in input pixels; one span per axis without tiling."""
    height, width = size
    if not tile:
        return 0, [(0, height)], [(0, width)]
    overlap = _round_up(max(overlap, 0), window)
    # Overlapping tiles must advance by a window multiple, so a tile is at least overlap + one window.
    tile = max(_round_up(tile, window), overlap + window)
    return overlap, tile_spans(height, tile, overlap, window), tile_spans(width, tile, overlap, window)


def _axis_weights(
    spans: list[tuple[int, int]], scale: int, fade: int, discard: int, device: torch.device
) -> list[Tensor]:
    """Blend weights ``(s * span length,)`` of each tile along one axis, faded where a neighbour overlaps."""
    last = len(spans) - 1
    return [
        _ramp((end - start) * scale, fade, discard, fade_start=i > 0, fade_end=i < last).to(device)
        for i, (start, end) in enumerate(spans)
    ]


def _weight_sum(
    spans: list[tuple[int, int]], weights: list[Tensor], length: int, scale: int, device: torch.device
) -> Tensor:
    """Sum ``(length,)`` of the tiles' blend weights along one axis, in output pixels."""
    total = torch.zeros(length, device=device)
    for (start, end), weight in zip(spans, weights, strict=True):
        total[start * scale : end * scale] += weight
    return total


def _run(model: nn.Module, x: Tensor, precision: str) -> Tensor:
    with _autocast(precision, x.device):
        out = model(x)
    out = out.float()
    if not torch.isfinite(out).all():
        hint = " (try --precision fp32)" if precision != "fp32" else ""
        raise InferenceError(f"the model produced NaN or infinite values in {precision}{hint}")
    return out
