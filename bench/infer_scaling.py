"""Wall time and peak memory of ``infer.py`` against output size, end to end, with the model's own speed alongside.

    python bench/infer_scaling.py                          # 3, 12, 48, 192 MP; writes docs/BENCHMARKS.md
    python bench/infer_scaling.py --sizes 3,12 --peer-sizes 3 --no-write
    python bench/infer_scaling.py --sizes 192 --peer-sizes "" --keep-previous   # add a size to the last results

For each size a photo mosaic (skimage's photos side by side, rows 375 pixels high, so the PNG compresses
like a photo) of 500x375, 1000x750, 2000x1500 or 4000x3000 pixels is upscaled x4 to PNG by ``infer.py`` in a
fresh process, measured with GNU ``/usr/bin/time -v`` (peak resident set size, wall time from process start to
exit, so imports, decoding and the closed file included). Right before each run the model's own throughput
is measured in this process on one 256x256 input (median of 5 after a warm-up, before and after the run,
averaged), on the same number of threads
and with the same allocator setting as ``infer.py`` (glibc keeps freed memory for reuse: without it the model
alone page-faults and runs slower than the whole pipeline), so that the ratio is taken under the same load. SwinIR-light (spandrel, random weights:
speed does not depend on them; built by ``bench/model_cost.py``'s ``peer_models``) goes through the very
same pipeline (tiling, streaming, PNG writing: :func:`srformer.upscaling.upscale_file`, with the options
``infer.py`` parses) in a child process, as a :class:`srformer.handle.ModelHandle` of the module.

Targets (issue 16): peak RSS <= 1.3 GB + 3 bytes per output pixel; end-to-end output Mpx/s >= 85% of the
model's own on the 2000x1500 -> x4 job.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
from infer_memory import run_measured  # noqa: E402
from model_cost import peer_models  # noqa: E402
from report import write_section  # noqa: E402

from srformer.allocator import reuse_freed_memory  # noqa: E402
from srformer.checkpoint import load_model  # noqa: E402
from srformer.commands.options import tile_of  # noqa: E402
from srformer.imageio import peek_size  # noqa: E402
from srformer.shipped import weights_file  # noqa: E402

DEFAULT_MODEL = weights_file("x4")

#: Output megapixels -> input size (width, height) at x4.
INPUT_SIZES = {3: (500, 375), 12: (1000, 750), 48: (2000, 1500), 192: (4000, 3000)}
SCALE = 4
PEER = "SwinIR-light"
PLOT = REPO / "docs" / "infer_scaling.png"
RESULTS = REPO / "docs" / "infer_scaling.json"  # the measured rows behind the table and the plot


def swinir_light() -> torch.nn.Module:
    model = peer_models(SCALE)[PEER].eval()
    model.scale, model.window_size = SCALE, 8  # what the tiling reads
    return model


def make_mosaic(path: Path, width: int, height: int) -> Path:
    """A ``width`` x ``height`` RGB PNG tiled with skimage's photos, each scaled to rows 375 pixels high."""
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.hubble_deep_field()]
    row_height = 375
    strip = [
        np.asarray(Image.fromarray(p[..., :3]).resize((p.shape[1] * row_height // p.shape[0], row_height)))
        for p in photos
    ]
    strip = np.concatenate(strip, axis=1)  # about 2900 x 375
    rows = []
    for index in range(-(-height // row_height)):
        shifted = np.roll(strip, -index * 997, axis=1)  # another arrangement on every row
        rows.append(np.tile(shifted, (1, -(-width // strip.shape[1]), 1))[:, :width])
    Image.fromarray(np.concatenate(rows)[:height]).save(path, compress_level=1)
    return path


def model_speed(model: torch.nn.Module, side: int = 256, repeats: int = 3) -> float:
    """Output Mpx/s of ``model`` on one ``side`` x ``side`` input: median of ``repeats`` after a warm-up."""
    x = torch.rand(1, 3, side, side)
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return side * side * SCALE**2 / statistics.median(times) / 1e6


def run_peer_child(infer_args: list[str]) -> int:
    """In a fresh process: ``infer.py``'s pipeline and options with SwinIR-light as the model."""
    from srformer.commands.upscale import build_parser
    from srformer.handle import ModelHandle
    from srformer.upscaling import UpscaleOptions, upscale_file

    reuse_freed_memory()
    args = build_parser().parse_args(infer_args)
    handle = ModelHandle.wrap(swinir_light(), name=f"{PEER} x{SCALE}", architecture="SwinIR")
    tile = handle.tile_for(tile_of(args.tile))  # once, as infer.py sizes it
    options = UpscaleOptions(tile=tile, tile_overlap=args.tile_overlap, overwrite=args.overwrite)
    for source in map(Path, args.inputs):
        upscale_file(handle, source, args.output / f"{source.stem}_x{SCALE}.png", options)
    return 0


def measure_run(
    name: str, image: Path, out_dir: Path, model_path: Path, threads: int, infer_options: list[str]
) -> dict:
    args = [str(image), "-o", str(out_dir), "--device", "cpu", "--quiet", "--overwrite", *infer_options]
    if name == PEER:
        command = [sys.executable, str(Path(__file__).resolve()), "--peer-child", *args]
    else:
        command = [sys.executable, str(REPO / "infer.py"), *args, "--model", str(model_path)]
    env_threads = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    os.environ.update(env_threads)
    peak_mib, seconds, method = run_measured(command)
    output = next(out_dir.iterdir())
    width, height = peek_size(output)  # from the header: Pillow's own bomb check refuses 192 MP
    output.unlink()
    return {"peak_mib": peak_mib, "seconds": seconds, "method": method, "out_px": width * height}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name in dict.fromkeys(row["model"] for row in rows):
        mine = [row for row in rows if row["model"] == name]
        mpx = [row["out_px"] / 1e6 for row in mine]
        left.plot(mpx, [row["out_px"] / 1e6 / row["seconds"] for row in mine], "o-", label=f"{name}: end to end")
        left.plot(mpx, [row["model_mpx_s"] for row in mine], "x--", label=f"{name}: model alone, 256x256")
        right.plot(mpx, [row["peak_mib"] / 1024 for row in mine], "o-", label=name)
    grid = np.geomspace(min(row["out_px"] for row in rows), max(row["out_px"] for row in rows), 50)
    right.plot(grid / 1e6, (1.3e9 + 3 * grid) / 2**30, "k:", label="target: 1.3 GB + 3 B/px")
    for axis in (left, right):
        axis.set_xscale("log")
        axis.set_xlabel("output megapixels (PNG, x4)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    left.set_ylabel("output Mpx/s")
    right.set_ylabel("peak RSS (GiB)")
    fig.suptitle("infer.py on the CPU: speed and memory against image size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


NOTES = """How the pipeline is set up (see ``srformer/inference.py`` and ``srformer/imageio.py`` for the measurements):

* Allocator: ``infer.py`` has glibc keep freed blocks of up to 256 MiB for reuse. By default (and with the
  earlier 1 MiB mmap threshold, set against fragmentation) every tile faulted its feature maps in afresh,
  0.7 (3.3) GiB of zero-filled pages per 256x256 tile, and the model ran up to 35% slower.
* Overlap 16 input pixels (one window): inverting one input pixel moves output pixels by more than 1/255 up
  to 13-21 px away, but the crossfade hides most of it: tiled against untiled on a photo, +0.002 dB PSNR,
  at most 5-6 grey levels on under 0.1% of the pixels (overlap 32: 1-2 levels, half the speed gain).
* Tiles: as few as 320 px allows on the CPU, all of one shape (the last one of a row or column a little
  shorter, padded by the network to the same size). On a 2000x1500 input that is 7 x 5 tiles of 304 x 320,
  13% of the pixels computed twice. One shape matters for memory: with two shapes alternating, glibc's heap
  fragmented and a 320x304 tile's forward pass grew from 507 to 565 and then 665 MB. 320 against 256 px,
  48 MP job, same session: 83.7 s against 95.6 s.
* Memory held through a tile's forward pass kept small: the shift mask covers only the windows of the last
  row and column of a tile (8 MB instead of 64 MB for 256x256; the other windows need none), which took a
  256x256 tile's forward pass from 336 to 260 MiB (320x320: 510 to 410 MiB); a tile's output is freed before
  the next tile runs; the rows carried into the next band stay in the band buffer; the band is converted to
  8/16 bits 32 rows at a time, so that no large temporaries split the memory the next tile reuses; window
  indices and masks stay cached for each tile shape.
* The result streams out one row of tiles at a time: written as PNG by a streaming encoder ("Up" filter,
  zlib level 1: about 5x faster than level 6 for a file about 20% larger; ``--compression`` sets it).
  Memory then grows with the image's width only (one row of tiles at the output size, ~12 bytes per output
  pixel of it), not with its area. JPEG and WebP are assembled once in uint8 (memory-mapped next to the
  output when larger than the free memory).
* Process start and end: importing PyTorch takes about 2 s and 529 MiB (its CUDA libraries are mapped even
  on the CPU). The interpreter's teardown after the file is written took another 125 MiB and 0.1-0.9 s;
  ``infer.py`` and ``srformer`` now exit right after their exit handlers (``srformer.cli.exit_after``).
* Where the time goes (1000x750 -> x4, cProfile, 2026-11-30): the model's forward passes 93-98% of the wall time;
  imports and model load about 2.6 s; blending, conversion to 8 bits and PNG encoding together under 1.5 s.
  Decoding, compute and encoding do not overlap in time: encoding is 1-3% of the wall time.
* SwinIR-light (spandrel) needs 807 MiB before its first tile (PyTorch, spandrel, its TorchScript parts) and
  7-11 KB per input pixel of a tile, twice this network's 4.2 KB: its 3 MP run stays over the memory target
  even with the smaller tiles ``auto_tile_size`` now gives architectures it has not measured.
* The machine is shared: the model alone ran at 0.59 to 0.80 Mpx/s on 256x256 in the same afternoon, so the
  model-alone column is the average of measurements right before and right after each run."""


def verdict(rows: list[dict]) -> str:
    """The targets, met or not, in words."""
    parts = []
    for name in dict.fromkeys(row["model"] for row in rows):
        mine = [row for row in rows if row["model"] == name]
        over = [row for row in mine if row["peak_mib"] * 2**20 > 1.3e9 + 3 * row["out_px"]]
        parts.append(f"{name} {len(mine) - len(over)} of {len(mine)} runs within the target")
    memory = "; ".join(parts)
    speed = [row for row in rows if row["model"] == "srformer" and row["input"] == "2000x1500"]
    if not speed:
        return f"Memory: {memory}."
    ratio = speed[0]["out_px"] / 1e6 / speed[0]["seconds"] / speed[0]["model_mpx_s"]
    met = "met" if ratio >= 0.85 else "missed"
    return f"Memory: {memory}. Speed on the 48 MP job: {ratio:.0%} of the model's own Mpx/s (target 85%: {met})."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="3,12,48,192", help="output megapixels of the srformer runs")
    parser.add_argument("--peer-sizes", default="3,12", help=f"output megapixels of the {PEER} runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--tile", default=None, help="infer.py's --tile (default: its own, auto)")
    parser.add_argument("--tile-overlap", default=None, help="infer.py's --tile-overlap (default: its own)")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/BENCHMARKS.md")
    parser.add_argument(
        "--keep-previous",
        action="store_true",
        help=f"keep the rows of {RESULTS.name} for the runs not repeated now (a slow size measured once)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reuse_freed_memory()  # the allocator setting infer.py runs with: the model alone at its best, not page-faulting
    jobs = [("srformer", int(s)) for s in args.sizes.split(",") if s]
    jobs += [(PEER, int(s)) for s in args.peer_sizes.split(",") if s]
    models = {"srformer": load_model(args.model).eval(), PEER: swinir_light()}
    infer_options = [f"--{name}={value}" for name, value in (("tile", args.tile), ("tile-overlap", args.tile_overlap))]
    infer_options = [option for option in infer_options if not option.endswith("=None")]

    rows = []
    with tempfile.TemporaryDirectory(prefix="srformer-scaling-") as tmp:
        tmp_dir = Path(tmp)
        for name, megapixels in jobs:
            width, height = INPUT_SIZES[megapixels]
            image = tmp_dir / f"mosaic_{width}x{height}.png"
            if not image.exists():
                make_mosaic(image, width, height)
            # The model alone right before and right after the run, averaged: the machine's speed drifts
            # by 10-20% over a minute-long run, and one side of it alone gave ratios 6 points apart.
            before = model_speed(models[name], repeats=5)
            row = measure_run(name, image, tmp_dir / "out", args.model, args.threads, infer_options)
            after = model_speed(models[name], repeats=5)
            speed = (before + after) / 2
            row.update(
                model=name, input=f"{width}x{height}", model_mpx_s=speed, model_mpx_s_before_after=[before, after],
                date=str(datetime.date.today()),
            )  # fmt: skip
            rows.append(row)
            end_to_end = row["out_px"] / 1e6 / row["seconds"]
            print(
                f"{name} {width}x{height} -> {row['out_px'] / 1e6:.0f} MP: {row['seconds']:.1f} s, "
                f"{end_to_end:.3f} Mpx/s end to end, model alone {speed:.3f} Mpx/s ({before:.3f} before, "
                f"{after:.3f} after) "
                f"({end_to_end / speed:.0%}), peak RSS {row['peak_mib']:.0f} MiB",
                flush=True,
            )

    if args.keep_previous and RESULTS.exists():
        measured = {(row["model"], row["input"]) for row in rows}
        rows += [row for row in json.loads(RESULTS.read_text()) if (row["model"], row["input"]) not in measured]
    rows.sort(key=lambda row: (row["model"] != "srformer", row["out_px"]))
    if not args.no_write:
        RESULTS.write_text(json.dumps(rows, indent=1) + "\n")
        plot(rows, PLOT)
    lines = [
        "| model | input -> output (x4, PNG) | wall time | end-to-end Mpx/s | model alone, 256x256 | ratio | peak RSS"
        " | target RSS | measured |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        end_to_end = row["out_px"] / 1e6 / row["seconds"]
        target_mib = (1.3e9 + 3 * row["out_px"]) / 2**20
        lines.append(
            f"| {row['model']} | {row['input']} -> {row['out_px'] / 1e6:.0f} MP | {row['seconds']:.1f} s "
            f"| {end_to_end:.3f} | {row['model_mpx_s']:.3f} | {end_to_end / row['model_mpx_s']:.0%} "
            f"| {row['peak_mib']:.0f} MiB | {target_mib:.0f} MiB | {row['date']} |"
        )
    command = shlex.join(["python", "bench/infer_scaling.py", *sys.argv[1:]])
    load = os.getloadavg()[0]
    header = (
        f"`{command}`\n\n"
        f"`infer.py` (defaults: auto tile, overlap 16, PNG zlib level 1) on the CPU with {args.threads} threads"
        f" ({platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {datetime.date.today()};"
        f" load average {load:.1f} at the end of the run), model {args.model.name}; {PEER} with random weights"
        f" through the same pipeline. Wall time and peak RSS of a fresh process each ({rows[0]['method']}); the"
        " model-alone column is measured in the bench process right before and right after each run (median of 5"
        " each, the two averaged), so that the ratio is taken under the same load. Targets: peak RSS at most 1.3 GB + 3 bytes per output pixel; end-to-end Mpx/s at"
        " least 85% of the model's own on the 48 MP job."
    )
    body = (
        f"{header}\n\n" + "\n".join(lines) + f"\n\n{verdict(rows)}\n\n![speed and memory against size]({PLOT.name})"
        f"\n\n{NOTES}"
    )
    print(body)
    if not args.no_write:
        write_section("Large images: wall time and memory", body)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--peer-child":
        sys.exit(run_peer_child(sys.argv[2:]))
    main()
