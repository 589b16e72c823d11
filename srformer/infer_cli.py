"""``python infer.py INPUT [INPUT ...] -o OUTDIR``: upscale image files, folders and globs.

Each input image is read robustly (:mod:`srformer.imageio`), upscaled by the model in tiles
(:func:`srformer.inference.upscale_bands`), and written to ``OUTDIR/<stem><suffix>.<ext>`` atomically.
The result streams from the model to the file one row of tiles at a time, converted to 8 or 16 bits on the
way: PNG and TIFF are encoded band by band, so memory does not grow with the image; JPEG and WebP are
assembled in uint8 and encoded once. Output sizes a format cannot hold are refused before any compute, and
so is an output folder whose disk is too full (a disk that fills up later stops the run with one sentence).
Existing files are never replaced without ``--overwrite``; an input is never overwritten at all. A run over
many files continues past a bad one and ends with a summary of the failures (exit status 1 then).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from srformer import shipped
from srformer.checkpoint import LoadedModel, load_any
from srformer.errors import CheckpointError, ImageError, SRFormerError, exit_on_user_error, resolve_device
from srformer.imageio import (
    DEFAULT_COMPRESSION,
    DEFAULT_MAX_PIXELS,
    FORMATS,
    INPUT_EXTENSIONS,
    check_free_space,
    check_output_size,
    output_layout,
    peek_size,
    read_image,
    to_pixels,
    write_pixel_bands,
)
from srformer.inference import (
    DEFAULT_TILE_OVERLAP,
    PRECISIONS,
    auto_tile_size,
    check_model_precision,
    check_precision,
    upscale_bands,
)

#: The model shipped with the package, used when ``--model`` is not given.
DEFAULT_MODEL = shipped.weights_file("x4")

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2
_GLOB_CHARS = set("*?[")

#: Output rows converted to integers at a time: bounds the float temporaries of a band of a wide image, which
#: are allocated between two tiles' forward passes and fragment the heap those reuse (256 rows: about 60 MB
#: of temporaries per chunk 8000 px wide, and a 48 MP job's peak RSS 35 MB higher, 1290 against 1255 MiB).
_CONVERT_ROWS = 32

#: Width of the white gap between the two halves of a --compare image.
_COMPARE_GAP = 8

#: glibc's mallopt parameters: the size from which allocations are memory-mapped, and the free space at the
#: top of the heap from which it is given back to the system.
_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD = -3, -1

#: Allocations up to this size come from the heap and are reused once freed (see :func:`reuse_freed_memory`).
_HEAP_BLOCK_LIMIT = 256 * 2**20


@dataclass
class Job:
    """One image to upscale: where it comes from and where its result (and comparison image) go."""

    source: Path
    target: Path
    compare_target: Path | None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infer.py",
        description="Upscale images with an SRFormer model.",
        epilog="Example: python infer.py photos/ shot.jpg 'raw/*.png' -o upscaled --tta",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="weights (.safetensors), Lightning .ckpt, run folder or a community checkpoint (SwinIR, Real-ESRGAN"
        " .pth, ...; needs srformer[zoo]) (default: the shipped"
        f" srformer/weights/{DEFAULT_MODEL.name}, or srformer_x2.safetensors with --scale 2)",
    )
    parser.add_argument(
        "--tile",
        default="auto",
        help="tile side in input pixels; 'auto' (default) sizes it to the free memory (on the CPU at most 272,"
        " which keeps a run within about 1.3 GB), 0 disables tiling",
    )
    parser.add_argument(
        "--tile-overlap",
        type=int,
        default=DEFAULT_TILE_OVERLAP,
        help=f"tile overlap in input pixels (default: {DEFAULT_TILE_OVERLAP}, from the model's measured reach;"
        " 32 or more for the last 0.001 dB)",
    )
    parser.add_argument("--precision", choices=list(PRECISIONS), default="fp32", help="compute precision")
    parser.add_argument(
        "--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if present)"
    )
    parser.add_argument(
        "--scale", type=int, default=None, help="expected upscaling factor; refused if the model has another"
    )
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
    parser.add_argument("--compare", action="store_true", help="also write <name>_compare: bicubic | SR side by side")
    exists = parser.add_mutually_exclusive_group()
    exists.add_argument("--overwrite", action="store_true", help="replace existing output files")
    exists.add_argument("--skip-existing", action="store_true", help="skip inputs whose output already exists")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse inputs with more pixels than this (decompression bomb guard, default: {DEFAULT_MAX_PIXELS})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def parse_tile(value: str) -> int | str | None:
    """``"auto"`` -> ``"auto"``, ``"0"`` -> ``None`` (no tiling), ``"256"`` -> 256."""
    if value == "auto":
        return "auto"
    try:
        tile = int(value)
    except ValueError:
        raise SRFormerError(f"--tile must be 'auto' or a number of pixels, got {value!r}") from None
    if tile < 0:
        raise SRFormerError(f"--tile must not be negative, got {tile}")
    return tile or None


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Files as given, image files of folders (sorted, not recursive), and glob matches, without duplicates."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in INPUT_EXTENSIONS)
            if not matches:
                raise SRFormerError(f"folder {path} holds no images ({', '.join(sorted(INPUT_EXTENSIONS))})")
        elif path.exists():
            matches = [path]
        elif _GLOB_CHARS & set(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matches:
                raise SRFormerError(f"no file matches {item!r}")
        else:
            raise SRFormerError(f"input not found: {item}")
        found.extend(matches)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def output_extension(source: Path, ext: str | None) -> str:
    if ext is not None:
        return "." + ext.lower()
    suffix = source.suffix.lower()
    return suffix if suffix in FORMATS else ".png"


def plan_jobs(sources: list[Path], outdir: Path, suffix: str, ext: str | None, compare: bool) -> list[Job]:
    """Output paths of every input; an output that is an input, or that two inputs share, is refused."""
    inputs = {p.resolve() for p in sources}
    jobs: list[Job] = []
    claimed: dict[Path, Path] = {}
    for source in sources:
        extension = output_extension(source, ext)
        target = outdir / f"{source.stem}{suffix}{extension}"
        compare_target = outdir / f"{source.stem}{suffix}_compare{extension}" if compare else None
        for path in filter(None, (target, compare_target)):
            resolved = path.resolve()
            if resolved in inputs:
                raise SRFormerError(
                    f"output {path} would overwrite an input image; choose another output folder or --suffix"
                )
            if resolved in claimed:
                raise SRFormerError(
                    f"{claimed[resolved]} and {source} would both be written to {path}; use --ext or rename one"
                )
            claimed[resolved] = source
        jobs.append(Job(source, target, compare_target))
    return jobs


def torch_bicubic_upscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, sH, sW)`` bicubic (a = -0.75, like PIL/OpenCV), clamped to [0, 1]."""
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp_(0.0, 1.0)


def bicubic_rows(x: torch.Tensor, scale: int, top: int, bottom: int) -> torch.Tensor:
    """Rows ``[top, bottom)`` of ``torch_bicubic_upscale(x, scale)``, ``(B, C, bottom - top, sW)``, from the input
    rows they need: output row y reads input rows floor((y + 0.5) / s - 0.5) - 1 to that + 2, so two more rows
    on each side make every row equal to the whole upscale's."""
    first = max(top // scale - 2, 0)
    last = min(-(-bottom // scale) + 2, x.shape[-2])
    return torch_bicubic_upscale(x[..., first:last, :], scale)[..., top - first * scale : bottom - first * scale, :]


def side_by_side(bicubic: np.ndarray, sr: np.ndarray, gap: int = _COMPARE_GAP) -> np.ndarray:
    """``(H, W, 3)`` twice -> ``(H, 2W + gap, 3)``: bicubic on the left, SR on the right, a white gap between."""
    height = bicubic.shape[0]
    separator = np.ones((height, gap, bicubic.shape[2]), dtype=bicubic.dtype)
    return np.concatenate([bicubic, separator, sr], axis=1)


class Progress:
    """A rich progress bar over images, and over the tiles of the current image with its output Mpx/s and the
    time left."""

    def __init__(self, total_images: int, enabled: bool) -> None:
        self.enabled = enabled
        self.megapixels = 0.0
        self.start = time.perf_counter()
        self.image_megapixels, self.image_start = 0.0, self.start
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.bar.start()
        self.images = self.bar.add_task("images", total=total_images, speed="")
        self.tiles = self.bar.add_task("tiles", total=1, speed="", visible=False)

    def speed(self) -> str:
        elapsed = time.perf_counter() - self.start
        return f"{self.megapixels / elapsed:.2f} Mpx/s" if elapsed > 0 and self.megapixels else ""

    def begin_image(self, name: str) -> None:
        if self.enabled:
            self.bar.update(self.images, description=name[-40:])
            self.bar.reset(self.tiles, total=1, visible=False)

    def begin_compute(self, output_pixels: int) -> None:
        """The current image is read; its ``output_pixels`` are computed from now on."""
        self.image_megapixels, self.image_start = output_pixels / 1e6, time.perf_counter()

    def on_tile(self, done: int, total: int) -> None:
        if self.enabled and total > 1:
            elapsed = time.perf_counter() - self.image_start
            speed = f"{done / total * self.image_megapixels / elapsed:.2f} Mpx/s" if elapsed > 0 else ""
            self.bar.update(self.tiles, completed=done, total=total, visible=True, speed=speed)

    def end_image(self, output_pixels: int) -> None:
        self.megapixels += output_pixels / 1e6
        if self.enabled:
            self.bar.update(self.images, advance=1, speed=self.speed())

    def close(self) -> None:
        if self.enabled:
            self.bar.update(self.tiles, visible=False)
            self.bar.stop()


def prepare_output_folder(outdir: Path) -> None:
    """Create ``outdir`` before any work, so that a path that cannot be a folder fails at once, not per image."""
    if outdir.exists() and not outdir.is_dir():
        raise SRFormerError(f"output folder {outdir} is an existing file, not a folder")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise SRFormerError(f"cannot create the output folder {outdir} ({reason})") from None


def default_model(scale: int | None) -> Path:
    """The shipped model for ``scale``: ``srformer/weights/srformer_x{scale}.safetensors``, x4 when no scale is asked."""
    return DEFAULT_MODEL if scale in (None, 4) else DEFAULT_MODEL.with_name(f"srformer_x{scale}.safetensors")


def load_cli_model(model_path: Path | None, device: torch.device, scale: int | None = None) -> LoadedModel:
    """The model to run and its descriptor: ``model_path`` (ours or a community checkpoint, through
    :func:`srformer.checkpoint.load_any`), else the shipped model for ``scale``."""
    if model_path is None:
        model_path = default_model(scale)
        if not model_path.is_file():
            what = "the default model" if scale in (None, 4) else f"the shipped x{scale} model"
            raise CheckpointError(
                f"no model given and {what} {model_path} is not "
                "installed; pass --model WEIGHTS (a .safetensors, a .ckpt, a run folder or a community .pth)"
            )
    return load_any(model_path, device=device, scale=scale)


def reuse_freed_memory() -> None:
    """Have glibc keep freed blocks of up to 256 MiB for reuse instead of giving them back to the system.

    A forward pass allocates and frees hundreds of feature maps of 10-100 MB. By default glibc serves those
    over 32 MiB by mmap and gives the top of the heap back, so the next tile faults the same memory in again,
    zero-filled by the kernel: 0.7 GiB of page faults per 256x256 tile; with every block over 1 MiB
    memory-mapped (this function's earlier setting, against fragmentation) 3.3 GiB, and the model ran about
    35% slower (2 threads, 2026-11-30, round-robin: 0.072 against 0.109-0.112 Mpx/s). With fixed thresholds
    a tile faults in nothing new, and the heap stays at the high-water mark of one tile plus one band.
    Elsewhere than glibc: nothing.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCK_LIMIT)  # fixed: no longer raised (or lowered) by glibc
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)


def run(args: argparse.Namespace) -> int:
    reuse_freed_memory()
    tile = parse_tile(args.tile)
    device = resolve_device(args.device)
    check_precision(args.precision, device)
    sources = expand_inputs(args.inputs)
    if args.scale is not None and args.scale < 1:
        raise SRFormerError(f"--scale must be a positive integer, got {args.scale}")
    loaded = load_cli_model(args.model, device, args.scale)
    model, descriptor = loaded.model, loaded.descriptor
    check_model_precision(args.precision, descriptor.name, descriptor.precisions)
    suffix = args.suffix if args.suffix is not None else f"_x{descriptor.scale}"
    jobs = plan_jobs(sources, args.output, suffix, args.ext, args.compare)
    check_output_sizes(jobs, descriptor.scale)
    prepare_output_folder(args.output)
    if descriptor.tile_hint == 0:
        tile = None  # the model tiles itself (descriptor.tiling == "internal"): never tile it
    elif tile == "auto" and device.type == "cpu":
        # once: the free memory moves while we run
        tile = auto_tile_size(model, device, args.precision, descriptor.size_multiple)

    failures: list[tuple[Path, str]] = []
    written = skipped = 0
    progress = Progress(len(jobs), enabled=not args.quiet)
    try:
        for job in jobs:
            progress.begin_image(job.source.name)
            targets = [p for p in (job.target, job.compare_target) if p is not None]
            if not args.overwrite and any(p.exists() for p in targets):
                existing = next(p for p in targets if p.exists())
                if args.skip_existing:
                    skipped += 1
                else:
                    failures.append((job.source, f"{existing} exists (use --overwrite or --skip-existing)"))
                progress.end_image(0)
                continue
            try:
                output_pixels = process(job, model, device, tile, args, progress, descriptor.size_multiple)
            except ImageError as err:
                failures.append((job.source, str(err)))
                progress.end_image(0)
                continue
            written += 1
            progress.end_image(output_pixels)
    finally:
        progress.close()

    summary = f"{written} written to {args.output}" + (f", {skipped} skipped (exist)" if skipped else "")
    if failures:
        print(f"{summary}, {len(failures)} failed:", file=sys.stderr)
        for source, reason in failures:
            print(f"  {source}: {reason}", file=sys.stderr)
        return EXIT_FAILURES
    if not args.quiet:
        print(f"{summary}; {progress.speed() or '0 Mpx/s'}", file=sys.stderr)
    return EXIT_OK


def process(
    job: Job,
    model: nn.Module,
    device: torch.device,
    tile,
    args: argparse.Namespace,
    progress: Progress,
    size_multiple: int | None = None,
) -> int:
    """Upscale one image and write its outputs, streaming from the model to the files; returns the output
    pixels. ``size_multiple``: the tile alignment (the model's ``descriptor.size_multiple``).
    Raises :class:`ImageError` for this image, :class:`DiskFullError` when no more output fits."""
    image = read_image(job.source, max_pixels=args.max_pixels)
    for note in image.warnings:
        print(f"warning: {note}", file=sys.stderr)
    scale = int(model.scale)
    width, height = image.width * scale, image.height * scale
    layout = output_layout(job.target, image.grayscale, image.alpha is not None, image.bit_depth)
    needed = layout.estimated_file_bytes(width, height)
    compare_layout = None
    if job.compare_target is not None:
        compare_layout = output_layout(job.compare_target, image.grayscale, False, 8)
        needed += compare_layout.estimated_file_bytes(2 * width + _COMPARE_GAP, height)
    check_free_space(job.target, needed)

    lr = torch.from_numpy(image.rgb).permute(2, 0, 1)[None]
    alpha = None if image.alpha is None else torch.from_numpy(image.alpha)[None, None]
    compare_bands: list[np.ndarray] = []  # the --compare image is small enough to keep: written second

    def pixel_bands():
        """The result as ``(rows, sW, C)`` integer samples, band by band, as the model produces it."""
        top = 0
        for band in upscale_bands(
            model,
            lr.to(device),
            tile,
            args.tile_overlap,
            args.precision,
            args.tta,
            progress.on_tile,
            size_multiple,
        ):
            for start in range(0, band.shape[-2], _CONVERT_ROWS):
                rgb = band[0, :, start : start + _CONVERT_ROWS].permute(1, 2, 0).contiguous().cpu().numpy()
                bottom = top + rgb.shape[0]
                rows_alpha = None if alpha is None else bicubic_rows(alpha, scale, top, bottom)[0, 0].numpy()
                if compare_layout is not None:
                    bicubic = bicubic_rows(lr, scale, top, bottom)[0].permute(1, 2, 0).numpy()
                    compare_bands.append(to_pixels(side_by_side(bicubic, rgb), None, compare_layout))
                yield to_pixels(rgb, rows_alpha, layout)
                top = bottom

    progress.begin_compute(width * height)
    common = {"icc_profile": image.icc_profile, "quality": args.quality, "overwrite": args.overwrite}
    write_pixel_bands(job.target, pixel_bands(), width, height, layout, compression=args.compression, **common)
    notes = list(layout.notes)
    if job.compare_target is not None and compare_layout is not None:
        compare_width = 2 * width + _COMPARE_GAP
        write_pixel_bands(job.compare_target, compare_bands, compare_width, height, compare_layout, **common)
        notes += compare_layout.notes
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    return width * height


def check_output_sizes(jobs: list[Job], scale: int) -> None:
    """Refuse, before any compute, an output larger than its format holds (inputs sized from their headers)."""
    for job in jobs:
        size = peek_size(job.source)
        if size is None:
            continue  # unreadable: reported as a failure of this image when it is read
        width, height = size[0] * scale, size[1] * scale
        check_output_size(job.target, width, height)
        if job.compare_target is not None:
            check_output_size(job.compare_target, 2 * width + _COMPARE_GAP, height)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("error: interrupted; files already written are complete, none is half-written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    from srformer.cli import exit_after

    exit_after(main)
