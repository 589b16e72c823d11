"""``python infer.py INPUT [INPUT ...] -o OUTDIR``: upscale image files, folders and globs.

Each input image is read robustly (:mod:`srformer.imageio`), upscaled by the model in tiles sized to the free
memory (:func:`srformer.inference.upscale_tensor`), and written to ``OUTDIR/<stem><suffix>.<ext>`` atomically.
Existing files are never replaced without ``--overwrite``; an input is never overwritten at all. A run over
many files continues past a bad one and ends with a summary of the failures (exit status 1 then).
"""

from __future__ import annotations

import argparse
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

from srformer.checkpoint import load_model
from srformer.errors import CheckpointError, ImageError, SRFormerError
from srformer.imageio import DEFAULT_MAX_PIXELS, FORMATS, INPUT_EXTENSIONS, LoadedImage, read_image, write_image
from srformer.inference import DEFAULT_TILE_OVERLAP, PRECISIONS, auto_tile_size, check_precision, upscale_tensor

#: The model shipped with the package, used when ``--model`` is not given.
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL = ASSETS_DIR / "srformer_x4.safetensors"

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2
_GLOB_CHARS = set("*?[")


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
        help="weights (.safetensors + .json), Lightning .ckpt or run folder (default: the shipped"
        f" assets/{DEFAULT_MODEL.name}, or srformer_x2.safetensors with --scale 2)",
    )
    parser.add_argument(
        "--tile",
        default="auto",
        help="tile side in input pixels; 'auto' (default) sizes it to the free memory, 0 disables tiling",
    )
    parser.add_argument(
        "--tile-overlap", type=int, default=DEFAULT_TILE_OVERLAP, help="tile overlap in input pixels (default: 32)"
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


def resolve_device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SRFormerError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SRFormerError(f"device {name} was asked for, but PyTorch sees no CUDA GPU here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SRFormerError(f"device {name} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    return device


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


def upscale_image(
    model: nn.Module,
    image: LoadedImage,
    device: torch.device,
    tile: int | str | None,
    tile_overlap: int,
    precision: str,
    tta: bool,
    on_tile=None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """SR of a loaded image: float ``(sH, sW, 3)`` in [0, 1], and its alpha ``(sH, sW)`` upscaled bicubically."""
    lr = torch.from_numpy(image.rgb).permute(2, 0, 1)[None].to(device)
    sr = upscale_tensor(model, lr, tile, tile_overlap, precision, tta, on_tile)
    rgb = sr[0].permute(1, 2, 0).cpu().numpy()
    alpha = None
    if image.alpha is not None:
        plane = torch.from_numpy(image.alpha)[None, None]
        alpha = bicubic_upscale(plane, model.scale)[0, 0].numpy()
    return rgb, alpha


def bicubic_upscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, sH, sW)`` bicubic (a = -0.75, like PIL/OpenCV), clamped to [0, 1]."""
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp_(0.0, 1.0)


def side_by_side(bicubic: np.ndarray, sr: np.ndarray, gap: int = 8) -> np.ndarray:
    """``(H, W, 3)`` twice -> ``(H, 2W + gap, 3)``: bicubic on the left, SR on the right, a white gap between."""
    height = bicubic.shape[0]
    separator = np.ones((height, gap, bicubic.shape[2]), dtype=bicubic.dtype)
    return np.concatenate([bicubic, separator, sr], axis=1)


class Progress:
    """A rich progress bar over images (and tiles of the current image), with output megapixels per second."""

    def __init__(self, total_images: int, enabled: bool) -> None:
        self.enabled = enabled
        self.megapixels = 0.0
        self.start = time.perf_counter()
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.bar.start()
        self.images = self.bar.add_task("images", total=total_images, speed="")
        self.tiles = self.bar.add_task("tiles", total=1, speed="", visible=False)

    def speed(self) -> str:
        elapsed = time.perf_counter() - self.start
        return f"{self.megapixels / elapsed:.2f} MP/s" if elapsed > 0 and self.megapixels else ""

    def begin_image(self, name: str) -> None:
        if self.enabled:
            self.bar.update(self.images, description=name[-40:])
            self.bar.reset(self.tiles, total=1, visible=False)

    def on_tile(self, done: int, total: int) -> None:
        if self.enabled and total > 1:
            self.bar.update(self.tiles, completed=done, total=total, visible=True)

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
    """The shipped model for ``scale``: ``assets/srformer_x{scale}.safetensors``, x4 when no scale is asked."""
    return DEFAULT_MODEL if scale in (None, 4) else DEFAULT_MODEL.with_name(f"srformer_x{scale}.safetensors")


def load_cli_model(model_path: Path | None, device: torch.device, scale: int | None = None) -> nn.Module:
    if model_path is None:
        model_path = default_model(scale)
        if not model_path.is_file():
            what = "the default model" if scale in (None, 4) else f"the shipped x{scale} model"
            raise CheckpointError(
                f"no model given and {what} {model_path} is not "
                "installed; pass --model WEIGHTS (a .safetensors, a .ckpt or a run folder)"
            )
    return load_model(model_path, device=device, scale=scale)


def run(args: argparse.Namespace) -> int:
    tile = parse_tile(args.tile)
    device = resolve_device(args.device)
    check_precision(args.precision, device)
    sources = expand_inputs(args.inputs)
    if args.scale is not None and args.scale < 1:
        raise SRFormerError(f"--scale must be a positive integer, got {args.scale}")
    model = load_cli_model(args.model, device, args.scale)
    suffix = args.suffix if args.suffix is not None else f"_x{model.scale}"
    jobs = plan_jobs(sources, args.output, suffix, args.ext, args.compare)
    prepare_output_folder(args.output)
    if tile == "auto" and device.type == "cpu":
        tile = auto_tile_size(model, device, args.precision)  # once: the free memory moves while we run

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
                output_pixels = process(job, model, device, tile, args, progress)
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
        print(f"{summary}; {progress.speed() or '0 MP/s'}", file=sys.stderr)
    return EXIT_OK


def process(
    job: Job, model: nn.Module, device: torch.device, tile, args: argparse.Namespace, progress: Progress
) -> int:
    """Upscale one image and write its outputs; returns the number of output pixels."""
    image = read_image(job.source, max_pixels=args.max_pixels)
    for note in image.warnings:
        print(f"warning: {note}", file=sys.stderr)
    rgb, alpha = upscale_image(
        model, image, device, tile, args.tile_overlap, args.precision, args.tta, progress.on_tile
    )
    notes = write_image(
        job.target, rgb, alpha, image.grayscale, image.bit_depth, image.icc_profile, args.quality, args.overwrite
    )
    if job.compare_target is not None:
        bicubic = bicubic_upscale(torch.from_numpy(image.rgb).permute(2, 0, 1)[None], model.scale)
        panel = side_by_side(bicubic[0].permute(1, 2, 0).numpy(), rgb)
        notes += write_image(
            job.compare_target, panel, None, image.grayscale, 8, image.icc_profile, args.quality, args.overwrite
        )
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    return rgb.shape[0] * rgb.shape[1]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except SRFormerError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted; files already written are complete, none is half-written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
