"""Peak memory and wall time of ``infer.py`` on the CPU, tiled and untiled, and throughput against SwinIR-light.

    python bench/infer_memory.py                 # writes the "Inference memory" section of docs/BENCHMARKS.md
    python bench/infer_memory.py --no-write --model path/to/weights.safetensors

A 960x540 photo-like input (skimage's astronaut, resized) is upscaled x4 to 3840x2160 by ``infer.py`` in a
child process, once with automatic tiles and once with ``--tile 0``; each run is measured with GNU
``/usr/bin/time -v`` (peak resident set size, wall time). Without GNU time the child's
``resource.getrusage`` figures are used instead, and the report says so. Throughput: the default model and
SwinIR-light (spandrel, random weights; speed does not depend on them) on the same 960x540 input, tiled the
same way, in the same process.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import resource
import shutil
import subprocess
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
from report import write_section  # noqa: E402

from srformer.checkpoint import load_model, save_weights  # noqa: E402
from srformer.handle import ModelHandle  # noqa: E402
from srformer.inference import auto_tile_size, upscale_tensor  # noqa: E402
from srformer.models import build_model  # noqa: E402
from srformer.shipped import weights_file  # noqa: E402

DEFAULT_MODEL = weights_file("x4")

GNU_TIME = Path("/usr/bin/time")


def make_input(path: Path, width: int, height: int) -> Path:
    from skimage import data

    Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC).save(path)
    return path


def run_measured(command: list[str]) -> tuple[float, float, str]:
    """(peak RSS in MiB, wall seconds, how it was measured) of ``command``; raises if it fails."""
    if GNU_TIME.exists():
        done = subprocess.run([str(GNU_TIME), "-v", *command], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        peak_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
        wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr).group(1)
        seconds = sum(float(part) * 60**i for i, part in enumerate(reversed(wall.split(":"))))
        return peak_kib / 1024, seconds, "GNU time -v"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux; max over children so far
    return max(peak, before) / 1024, seconds, "resource.getrusage (GNU time missing)"


def swinir_light(scale: int) -> torch.nn.Module:
    from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR

    model = SwinIR(
        upscale=scale, img_size=64, window_size=8, img_range=1.0, depths=[6, 6, 6, 6], embed_dim=60,
        num_heads=[6, 6, 6, 6], mlp_ratio=2, upsampler="pixelshuffledirect",
    ).eval()  # fmt: skip
    model.scale, model.window_size = scale, 8  # what upscale_tensor reads to place the tiles
    return model


def throughput(model: torch.nn.Module, lr: torch.Tensor, tile: int) -> float:
    """Output megapixels per second of one tiled pass over ``lr``."""
    start = time.perf_counter()
    out = upscale_tensor(model, lr, tile=tile)
    return out.shape[-2] * out.shape[-1] / (time.perf_counter() - start) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", type=Path, default=None, help="default: srformer/weights/ model, else a random 'light' x4"
    )
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=540)
    parser.add_argument("--no-untiled", action="store_true", help="skip the (slow, memory-hungry) untiled run")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/BENCHMARKS.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="srformer-bench-") as tmp:
        tmp_dir = Path(tmp)
        if args.model is not None:
            model_path, model_name = args.model, args.model.name
        elif DEFAULT_MODEL.is_file():
            model_path, model_name = DEFAULT_MODEL, f"srformer/weights/{DEFAULT_MODEL.name}"
        else:
            torch.manual_seed(0)
            model_path = save_weights(build_model("light", 4), tmp_dir / "light_x4.safetensors")
            model_name = "random 'light' x4 (no shipped model in srformer/weights/ yet)"
        model = load_model(model_path)
        image = make_input(tmp_dir / "input.png", args.width, args.height)
        rows = []
        modes = [("auto", "tiled (auto)")] + ([] if args.no_untiled else [("0", "untiled")])
        for tile_arg, label in modes:
            out_dir = tmp_dir / f"out_{tile_arg}"
            command = [sys.executable, str(REPO / "infer.py"), str(image), "-o", str(out_dir)]
            command += ["--model", str(model_path), "--device", "cpu", "--tile", tile_arg, "--quiet"]
            peak_mib, seconds, method = run_measured(command)
            result = Image.open(next(out_dir.iterdir()))
            rows.append((label, peak_mib, seconds, result.size))
            print(f"{label}: peak RSS {peak_mib:.0f} MiB, wall {seconds:.1f} s, output {result.size}", flush=True)

        tile = auto_tile_size(ModelHandle.wrap(model), torch.device("cpu"))
        lr = torch.from_numpy(np.asarray(Image.open(image), dtype=np.float32) / 255).permute(2, 0, 1)[None]
        speeds = [(f"srformer ({model_name})", throughput(model, lr, tile))]
        speeds.append(("SwinIR-light (spandrel, random weights)", throughput(swinir_light(4), lr, tile)))
        for name, speed in speeds:
            print(f"{name}: {speed:.3f} output Mpx/s", flush=True)

    lines = ["| run | peak RSS | wall time | output |", "|---|---:|---:|---|"]
    lines += [f"| {label} | {peak:.0f} MiB | {sec:.1f} s | {w}x{h} |" for label, peak, sec, (w, h) in rows]
    speed_lines = ["| model | output Mpx/s (CPU, tiled) |", "|---|---:|"]
    speed_lines += [f"| {name} | {speed:.3f} |" for name, speed in speeds]
    header = (
        f"`python bench/infer_memory.py {' '.join(sys.argv[1:])}`".replace(" `", "`") + "\n\n"
        f"`infer.py` on a {args.width}x{args.height} input at x4 on the CPU ({torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {datetime.date.today()}), "
        f"model: {model_name}; auto tile = {tile} px. Measured with {method}; the whole process, Python and "
        "PyTorch included. Target: tiled peak RSS under 1.5 GB."
    )
    body = f"{header}\n\n" + "\n".join(lines) + "\n\nSame input, same process, same tiles:\n\n" + "\n".join(speed_lines)
    print(body)
    if not args.no_write:
        write_section("Inference memory", body)


if __name__ == "__main__":
    if not GNU_TIME.exists() and shutil.which("apt-get"):
        print("GNU time not found (apt-get install time); falling back to resource.getrusage", file=sys.stderr)
    main()
