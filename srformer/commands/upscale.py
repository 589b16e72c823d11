"""``srformer upscale INPUT [INPUT ...] -o OUTDIR`` (also ``python infer.py``): upscale image files, folders and globs.

Each input is upscaled by :func:`srformer.upscaling.upscale_file` and written to ``OUTDIR/<stem><suffix>.<ext>``.
``--model auto`` (the default) chooses a shipped model per file (:mod:`srformer.autoselect`), prints the choice
and its reason, and records both in a PNG output. Existing files are never replaced without ``--overwrite``;
an input is never overwritten at all. A run over many files continues past a bad one and ends with a summary
of the failures (exit status 1 then).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from srformer.allocator import reuse_freed_memory
from srformer.commands import options
from srformer.errors import ImageError, exit_on_user_error, resolve_device
from srformer.handle import AUTO, ModelHandle, check_scale, open_model
from srformer.imageio import peek_size, read_image
from srformer.inference import check_precision
from srformer.upscaling import (
    AutoModel,
    Job,
    UpscaleOptions,
    check_output_sizes,
    choice_metadata,
    expand_inputs,
    plan_jobs,
    prepare_output_folder,
    upscale_file,
)

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2


def build_parser(prog: str = "srformer upscale") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Upscale images with an SRFormer model.",
        epilog=f"Example: {prog} photos/ shot.jpg 'raw/*.png' -o upscaled --tta",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder (created if missing)")
    options.add_model(
        parser,
        AUTO,
        extra="'auto' (per file: the real-world x4 model for JPEGs of quality <= 90 and noisy photos, else the"
        " classical model of the scale), 'bicubic'",
    )
    options.add_tiles(parser)
    options.add_device(parser)
    options.add_scale(parser, "upscaling factor (default: the model's, x4 for auto); refused if the model has another")
    options.add_upscale_outputs(parser)
    parser.add_argument("--compare", action="store_true", help="also write <name>_compare: bicubic | SR side by side")
    exists = parser.add_mutually_exclusive_group()
    exists.add_argument("--overwrite", action="store_true", help="replace existing output files")
    exists.add_argument("--skip-existing", action="store_true", help="skip inputs whose output already exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


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

    def begin_image(self, name: str, output_pixels: int) -> None:
        """The next image, of ``output_pixels`` (from its header; 0 when unknown), is read and computed now."""
        self.image_megapixels, self.image_start = output_pixels / 1e6, time.perf_counter()
        if self.enabled:
            self.bar.update(self.images, description=name[-40:])
            self.bar.reset(self.tiles, total=1, visible=False)

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


def warn(note: str) -> None:
    print(f"warning: {note}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    reuse_freed_memory()
    tile = options.tile_of(args.tile)
    device = resolve_device(args.device)
    sources = expand_inputs(args.inputs)
    check_scale(args.scale)
    auto = AutoModel(args.scale, device) if args.model == AUTO and not Path(AUTO).exists() else None
    handle: ModelHandle | None = None
    check_precision(args.precision, device)  # the device; the model is checked when it is opened
    if auto is None:
        handle = open_model(args.model, scale=args.scale, device=device)
        handle.check_precision(args.precision)
        # once: the free memory moves while we run
        tile = handle.tile_for(tile, args.precision)
    scale = handle.scale if handle is not None else args.scale or 4
    suffix = args.suffix if args.suffix is not None else f"_x{scale}"
    jobs = plan_jobs(sources, args.output, suffix, args.ext, args.compare)
    check_output_sizes(jobs, scale)
    prepare_output_folder(args.output)
    settings = options.upscale_options(args, tile=tile, overwrite=args.overwrite, compare=args.compare)

    failures: list[tuple[Path, str]] = []
    written = skipped = 0
    progress = Progress(len(jobs), enabled=not args.quiet)
    try:
        for job in jobs:
            targets = [p for p in (job.target, job.compare_target) if p is not None]
            if not args.overwrite and any(p.exists() for p in targets):
                existing = next(p for p in targets if p.exists())
                if args.skip_existing:
                    skipped += 1
                else:
                    failures.append((job.source, f"{existing} exists (use --overwrite or --skip-existing)"))
                progress.end_image(0)
                continue
            size = peek_size(job.source)
            progress.begin_image(job.source.name, size[0] * size[1] * scale**2 if size else 0)
            try:
                output_pixels = upscale_job(job, handle, auto, settings, progress)
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


def upscale_job(
    job: Job, handle: ModelHandle | None, auto: AutoModel | None, settings: UpscaleOptions, progress: Progress
) -> int:
    """Upscale one input with ``handle``, or with the model ``auto`` chooses for it (the choice printed and
    recorded in the output); prints its warnings and returns the output pixels."""
    image, metadata = None, None
    if auto is not None:
        image = read_image(job.source, max_pixels=settings.max_pixels)
        handle, choice = auto.choose(job.source, image)
        print(f"{job.source}: {choice.reference} ({choice.reason})", flush=True)
        metadata = choice_metadata(choice)
        settings = dataclasses.replace(settings, tile=handle.tile_for(settings.tile, settings.precision))
    assert handle is not None
    result = upscale_file(handle, job.source, job.target, settings, progress.on_tile, image=image, metadata=metadata)
    for note in result.notes:
        warn(note)
    return result.output_pixels


@exit_on_user_error
def main(argv: Sequence[str] | None = None, prog: str = "srformer upscale") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("error: interrupted; files already written are complete, none is half-written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    from srformer.cli import exit_after

    exit_after(main)
