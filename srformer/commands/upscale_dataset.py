"""``srformer upscale-dataset INPUTS -o OUT [--engine ray]``: upscale a whole data set, resumably.

The command face of :mod:`srformer.dataset_job`: INPUTS are folders (recursive), globs, images, or manifests
(``.txt`` / ``.parquet`` lists of paths), local or on object storage; each output keeps its input's relative
path and gets ``srformer upscale``'s name and bits. A second run skips every finished output; a bad file is a
line in the report (``OUT/_upscale_report.jsonl``), never the end of the job. Exit status 1 when a file failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from srformer.commands.options import (
    add_device,
    add_model,
    add_scale,
    add_tiles,
    add_upscale_outputs,
    upscale_options,
)
from srformer.dataset_job import REPORT_NAME, RayOptions, Record, Summary, UpscaleSettings, run_job
from srformer.errors import SRFormerError, exit_on_user_error
from srformer.handle import AUTO

EXIT_OK, EXIT_FAILURES, EXIT_INTERRUPTED = 0, 1, 130

#: Failures listed after the summary; the report has them all.
_LISTED_FAILURES = 10


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="srformer upscale-dataset",
        description="Upscale a data set of images, on this machine or a Ray cluster: a re-run skips finished"
        " outputs, a bad file is reported and skipped, outputs equal 'srformer upscale' bit for bit.",
        epilog="Example: srformer upscale-dataset photos/ 's3://bucket/raw/**/*.png' list.parquet -o s3://bucket/x4"
        " --engine ray --address auto --gpus-per-worker 1",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="folders (walked recursively), glob patterns (** for any folders), image files, or manifests (.txt:"
        " one path per line; .parquet: a 'path' column); local paths or URIs (s3://, gs://, ... via pyarrow/fsspec)",
    )
    parser.add_argument("-o", "--output", required=True, help="output folder or URI; outputs keep relative paths")
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process (default); ray: a Ray Data job over an actor pool (pip install 'srformer[ray]')",
    )
    ray = parser.add_argument_group("Ray engine")
    ray.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join: 'auto', host:6379 or ray://host:10001 (default: RAY_ADDRESS, else a local one)",
    )
    ray.add_argument("--workers", type=int, default=None, help="model workers (default: as many as resources allow)")
    ray.add_argument(
        "--cpus-per-worker",
        type=float,
        default=1.0,
        help="CPUs each worker reserves, fractions allowed (default: 1; its torch threads: the whole part, at least 1)",
    )
    ray.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs each worker uses (default: 0, CPU)")
    add_model(parser, AUTO, extra="'auto' (as in srformer upscale: a shipped model chosen per file), 'bicubic'")
    add_scale(parser, help="upscaling factor (default: the model's, x4 for auto); refused if the model has another")
    add_tiles(parser)
    add_device(parser)
    add_upscale_outputs(parser)
    parser.add_argument(
        "--report", default=None, help=f"JSON-lines report, one record per input (default: OUT/{REPORT_NAME})"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary unless a file failed")
    return parser


def settings_of(args: argparse.Namespace) -> UpscaleSettings:
    options = upscale_options(args)
    return UpscaleSettings(model=args.model, scale=args.scale, suffix=args.suffix, ext=args.ext, options=options)


def ray_options_of(args: argparse.Namespace) -> RayOptions:
    if args.workers is not None and args.workers < 1:
        raise SRFormerError(f"--workers must be at least 1, got {args.workers}")
    if args.cpus_per_worker <= 0 or args.gpus_per_worker < 0:
        raise SRFormerError("--cpus-per-worker must be positive and --gpus-per-worker not negative")
    return RayOptions(args.address, args.workers, args.cpus_per_worker, args.gpus_per_worker)


class _ProgressBar:
    """A rich progress bar over the records as they arrive (done, skipped and failed alike)."""

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(
                "images",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                "left",
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self.task = None

    def __call__(self, record: Record, total: int) -> None:
        if self.bar is None:
            return
        if self.task is None:
            self.bar.start()
            self.task = self.bar.add_task("images", total=total)
        self.bar.advance(self.task)

    def close(self) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.stop()


def print_summary(summary: Summary, output: str, report: str, quiet: bool) -> None:
    """``upscale``'s summary line, and the first failures with their reasons."""
    if quiet and not summary.failed:
        return
    print(summary.line(output, report), file=sys.stderr)
    for record in summary.failures[:_LISTED_FAILURES]:
        print(f"  {record.input}: {record.reason}", file=sys.stderr)
    if summary.failed > _LISTED_FAILURES:
        print(f"  ... and {summary.failed - _LISTED_FAILURES} more (see the report)", file=sys.stderr)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings, ray_options = settings_of(args), ray_options_of(args)
    progress = _ProgressBar(enabled=not args.quiet)
    report = args.report or f"{args.output.rstrip('/')}/{REPORT_NAME}"
    try:
        summary = run_job(
            args.inputs,
            args.output,
            settings,
            engine=args.engine,
            ray_options=ray_options,
            report=report,
            device=args.device,
            on_record=progress,
        )
    except KeyboardInterrupt:
        progress.close()
        print(
            "error: interrupted; finished outputs are complete and a re-run skips them, none is half-written",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    progress.close()
    print_summary(summary, args.output, report, args.quiet)
    return EXIT_FAILURES if summary.failed else EXIT_OK


if __name__ == "__main__":
    from srformer.cli import exit_after

    exit_after(main)
