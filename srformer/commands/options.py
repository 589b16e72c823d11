"""Command-line options that several commands share, each defined once: device, model, scale, tiles and
precision, image cache, degradation. Each ``add_*`` adds one option group to a parser; the helpers below turn
the parsed values into what the library takes. Validation stays in the library (:func:`srformer.handle.open_model`
checks references and scales, :func:`srformer.errors.resolve_device` devices), so a value from the command
line and one from code are refused with the same sentence."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from srformer import shipped
from srformer.data.benchmark_degradations import BICUBIC, check_degradation, degradation_names
from srformer.data.cache import ImageCache, default_cache_dir
from srformer.errors import SRFormerError
from srformer.handle import Tile
from srformer.imageio import DEFAULT_COMPRESSION, DEFAULT_MAX_PIXELS, FORMATS
from srformer.inference import DEFAULT_TILE_OVERLAP, PRECISIONS
from srformer.upscaling import UpscaleOptions

#: What ``--model`` accepts, for help texts.
MODEL_KINDS = (
    f"a shipped name ({', '.join(shipped.names())}), weights (.safetensors), a Lightning .ckpt, a run folder, or a"
    " community checkpoint (SwinIR, Real-ESRGAN .pth, ...; needs srformer[zoo])"
)


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="torch device: cpu, cuda, cuda:1 (default: cuda if present)")


def add_model(parser: argparse.ArgumentParser, default: str | None, extra: str = "", required: bool = False) -> None:
    """``--model``; ``extra`` names what this command accepts beyond :data:`MODEL_KINDS` (``'bicubic'``, ...)."""
    what = f"{extra}, {MODEL_KINDS}" if extra else MODEL_KINDS
    parser.add_argument("--model", default=default, required=required, help=f"{what} (default: {default})")


def add_scale(parser: argparse.ArgumentParser, help: str, several: bool = False, required: bool = False) -> None:
    parser.add_argument("--scale", type=int, nargs="+" if several else None, required=required, help=help)


def add_tiles(parser: argparse.ArgumentParser, default: str = "auto", overlap_and_precision: bool = True) -> None:
    """``--tile`` (and ``--tile-overlap``, ``--precision``); :func:`tile_of` reads ``--tile``."""
    parser.add_argument(
        "--tile",
        default=default,
        help="tile side in input pixels; 'auto' sizes it to the free memory (on the CPU at most 320), 0 disables"
        f" tiling (default: {default})",
    )
    if not overlap_and_precision:
        return
    parser.add_argument(
        "--tile-overlap",
        type=int,
        default=DEFAULT_TILE_OVERLAP,
        help=f"tile overlap in input pixels (default: {DEFAULT_TILE_OVERLAP}, from the model's measured reach;"
        " 32 or more for the last 0.001 dB)",
    )
    parser.add_argument("--precision", choices=list(PRECISIONS), default="fp32", help="compute precision")


def tile_of(value: str) -> Tile:
    """``--tile``: ``"auto"`` -> ``"auto"``, ``"0"`` -> ``None`` (no tiling), ``"256"`` -> 256."""
    if value == "auto":
        return "auto"
    try:
        tile = int(value)
    except ValueError:
        raise SRFormerError(f"--tile must be 'auto' or a number of pixels, got {value!r}") from None
    if tile < 0:
        raise SRFormerError(f"--tile must not be negative, got {tile}")
    return tile or None


def add_upscale_outputs(parser: argparse.ArgumentParser) -> None:
    """What an upscaled file is and how it is written: ``--tta``, ``--suffix``, ``--ext``, ``--quality``,
    ``--compression``, ``--max-pixels`` (with :func:`add_tiles`: everything :func:`upscale_options` reads)."""
    parser.add_argument("--tta", action="store_true", help="x8 self-ensemble (flips and rotations): better, 8x slower")
    parser.add_argument("--suffix", default=None, help="appended to each output name (default: _x<scale>)")
    parser.add_argument(
        "--ext",
        default=None,
        choices=sorted({e.lstrip(".") for e in FORMATS}),
        help="output format (default: the input's format, or png when it cannot be written)",
    )
    parser.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default: 95)")
    parser.add_argument(
        "--compression",
        type=int,
        default=DEFAULT_COMPRESSION,
        choices=range(10),
        metavar="0-9",
        help=f"PNG/TIFF zlib level (default: {DEFAULT_COMPRESSION}, fast; 6-9: files ~20%% smaller, 5-10x slower)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse inputs with more pixels than this (decompression bomb guard, default: {DEFAULT_MAX_PIXELS})",
    )


def upscale_options(args: argparse.Namespace, **overrides: object) -> UpscaleOptions:
    """The :class:`~srformer.upscaling.UpscaleOptions` of :func:`add_tiles` and :func:`add_upscale_outputs`'
    options (``--tile`` through :func:`tile_of`); ``overrides`` set other fields (``overwrite``, ``compare``)."""
    settings = {
        "tile": tile_of(args.tile),
        "tile_overlap": args.tile_overlap,
        "precision": args.precision,
        "tta": args.tta,
        "quality": args.quality,
        "compression": args.compression,
        "max_pixels": args.max_pixels,
    }
    return UpscaleOptions(**{**settings, **overrides})  # type: ignore[arg-type]


def add_benchmark_data(parser: argparse.ArgumentParser) -> None:
    """``--degradation``, ``--cache-dir`` and ``--no-cache``: how benchmark LR images are made and cached."""
    parser.add_argument(
        "--degradation",
        default=BICUBIC,
        type=check_degradation,  # a DataError: reported as one sentence by exit_on_user_error
        help=f"how the LR is made from the HR: {', '.join(degradation_names())} (default: bicubic)",
    )
    parser.add_argument("--cache-dir", default=None, help="decoded-image cache (default: ~/.cache/srformer)")
    parser.add_argument("--no-cache", action="store_true", help="use a temporary cache, removed afterwards")


@contextmanager
def image_cache(args: argparse.Namespace, prefix: str) -> Iterator[ImageCache]:
    """The decoded-image cache of :func:`add_benchmark_data`'s options: ``--cache-dir``, the default one, or
    with ``--no-cache`` a temporary folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield ImageCache(Path(tmp) if args.no_cache else Path(args.cache_dir or default_cache_dir() / "decoded"))
