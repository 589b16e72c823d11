"""The same data set through ``srformer upscale`` (one process) and ``srformer upscale-dataset --engine ray``
with 1 and 2 workers: images/s and output Mpx/s side by side, and the Ray job's overhead as a ratio.

    python bench/dataset_scaling.py                  # 48 images of 0.1-3 MP, x4_tiny; writes docs/BENCHMARKS.md
    python bench/dataset_scaling.py --model x4       # the default x4 model (about 10x slower per pixel)
    python bench/dataset_scaling.py --images 6 --max-mp 0.3 --no-write   # a quick check that it works

The images are photo mosaics (skimage's photos, as ``bench/infer_scaling.py`` makes them) whose input sizes
spread evenly on a log scale from ``--min-mp`` to ``--max-mp`` megapixels, in five aspect ratios, shuffled
so that large and small ones alternate. Each run is a fresh process, timed from its start to its exit (imports,
model loading, Ray's start-up and its workers' included: what a user waits for). The Ray runs start a local
Ray instance of this machine's CPUs, and give each worker its share of them (1 worker: all CPUs and as many
torch threads; 2 workers: half each), so all three runs use every core. Every Ray output is compared with
``upscale``'s, byte for byte.

Target (issue 25): the 2-worker Ray job at >= 90% of the one-process ``upscale``'s output Mpx/s, since the
model, not the engine, should be the limit.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
from infer_scaling import make_mosaic  # noqa: E402
from report import write_section  # noqa: E402

SECTION = "Data set upscaling: one process against Ray Data"
SCALE = 4  # the shipped models the bench offers are x4
ASPECTS = ((4, 3), (3, 2), (1, 1), (16, 9), (3, 4))


def input_sizes(count: int, min_mp: float, max_mp: float, seed: int = 0) -> list[tuple[int, int]]:
    """``count`` (width, height) pairs from ``min_mp`` to ``max_mp`` megapixels (log-spaced), shuffled."""
    sizes = []
    for index, megapixels in enumerate(np.geomspace(min_mp, max_mp, count)):
        aspect_w, aspect_h = ASPECTS[index % len(ASPECTS)]
        height = int(round((megapixels * 1e6 * aspect_h / aspect_w) ** 0.5))
        sizes.append((int(round(height * aspect_w / aspect_h)), height))
    order = np.random.default_rng(seed).permutation(count)
    return [sizes[i] for i in order]


def make_images(folder: Path, sizes: list[tuple[int, int]]) -> int:
    """The data set's PNGs in ``folder``; returns the total output pixels at x4."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, (width, height) in enumerate(sizes):
        make_mosaic(folder / f"img_{index:02d}.png", width, height)
    return sum(w * h for w, h in sizes) * SCALE**2


def timed(command: list[str]) -> float:
    """Wall seconds of ``command`` in a fresh process; a failed run stops the bench with its output."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def same_outputs(reference: Path, other: Path) -> bool:
    names = sorted(p.name for p in reference.glob("*_x4.png"))
    return names == sorted(p.name for p in other.glob("*_x4.png")) and all(
        (reference / n).read_bytes() == (other / n).read_bytes() for n in names
    )


def table(rows: list[dict], images: int, output_mpx: float) -> str:
    base = rows[0]["mpx_s"]
    lines = [
        "| run | workers x CPUs | wall s | images/s | output Mpx/s | vs upscale | outputs = upscale's |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['layout']} | {row['seconds']:.1f} | {images / row['seconds']:.3f}"
            f" | {row['mpx_s']:.3f} | {row['mpx_s'] / base:.2f} | {row['same']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=48, help="images in the data set (default: 48)")
    parser.add_argument("--min-mp", type=float, default=0.1, help="smallest input in megapixels (default: 0.1)")
    parser.add_argument("--max-mp", type=float, default=3.0, help="largest input in megapixels (default: 3)")
    parser.add_argument("--model", default="x4_tiny", help="model reference (default: x4_tiny; x4: the default model)")
    parser.add_argument("--tile", default="256", help="tile side for every run (default: 256, the same everywhere)")
    parser.add_argument("--workers", default="1,2", help="Ray worker counts to run (default: 1,2)")
    parser.add_argument("--no-write", action="store_true", help="print the table only, leave docs/BENCHMARKS.md")
    args = parser.parse_args(argv)

    cpus = os.cpu_count() or 1
    common = ["--model", args.model, "--tile", args.tile, "--quiet"]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="dataset_scaling_") as tmp:
        data, out = Path(tmp) / "data", Path(tmp) / "out"
        sizes = input_sizes(args.images, args.min_mp, args.max_mp)
        output_pixels = make_images(data, sizes)
        output_mpx = output_pixels / 1e6
        print(f"{args.images} images, {output_mpx:.0f} output Mpx, model {args.model}, {cpus} CPUs", flush=True)

        rows = []
        upscale = [sys.executable, "-m", "srformer", "upscale", str(data), "-o", str(out / "upscale"), *common]
        seconds = timed(upscale)
        rows.append(
            {"name": "srformer upscale", "layout": f"1 x {cpus}", "seconds": seconds, "same": "-"}
            | {"mpx_s": output_mpx / seconds}
        )
        print(table(rows, args.images, output_mpx).splitlines()[-1], flush=True)
        for workers in (int(w) for w in args.workers.split(",")):
            cpus_per_worker = cpus / workers
            target = out / f"ray{workers}"
            command = [sys.executable, "-m", "srformer.commands.upscale_dataset", str(data), "-o", str(target)]
            command += [
                *common,
                "--engine",
                "ray",
                "--workers",
                str(workers),
                "--cpus-per-worker",
                f"{cpus_per_worker:g}",
            ]
            seconds = timed(command)
            same = "yes" if same_outputs(out / "upscale", target) else "NO"
            rows.append(
                {"name": "upscale-dataset --engine ray", "layout": f"{workers} x {cpus_per_worker:g}"}
                | {"seconds": seconds, "same": same, "mpx_s": output_mpx / seconds}
            )
            print(table(rows, args.images, output_mpx).splitlines()[-1], flush=True)
    load_after = os.getloadavg()

    import ray
    import torch

    two = next((r for r in rows[1:] if r["layout"].startswith("2 x")), None)
    verdict = (
        f"2-worker Ray job at {two['mpx_s'] / rows[0]['mpx_s']:.0%} of `upscale`'s output Mpx/s (target >= 90%)."
        if two
        else "No 2-worker run."
    )
    command = "python bench/dataset_scaling.py " + " ".join(argv if argv is not None else sys.argv[1:])
    body = "\n".join(
        [
            f"`{command.strip()}` ({datetime.date.today()}, {platform.processor() or platform.machine()},"
            f" {cpus} CPUs, torch {torch.__version__}, Ray {ray.__version__}; load average {load_before[0]:.1f}"
            f" before, {load_after[0]:.1f} after).",
            "",
            f"{args.images} PNG photo mosaics of {args.min_mp:g}-{args.max_mp:g} MP, x4 to PNG with `{args.model}`,"
            f" tile {args.tile}: {output_mpx:.0f} output Mpx. Wall time of each run in a fresh process, from start"
            " to exit (imports, model loading and Ray's start-up included).",
            "",
            table(rows, args.images, output_mpx),
            "",
            verdict,
        ]
    )
    print()
    print(body)
    if not args.no_write:
        write_section(SECTION, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
