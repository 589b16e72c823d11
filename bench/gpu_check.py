"""The GPU check: speed, an equal-time comparison and the real training path, in under 8 minutes.

    PYTHONPATH=. python bench/gpu_check.py --data .gpudata --out $OUT           # on the GPU machine
    bash bench/gpu_check.sh                                                      # the same, wheels from .whl/ first
    PYTHONPATH=. python bench/gpu_check.py --dry-run --out /tmp/gpu_check        # CPU, tiny budgets, ~1-2 min
    python bench/gpu_check.py --score $OUT_COPY --data ../shared/data --sets B100  # later, on the CPU

Parts, each with its elapsed time and a hard cap (``--deadline`` for the whole, cache build included):

1. bf16 autocast training throughput (patches/s; batch ``--tp-batch``, LR patch ``--tp-patch``, synthetic
   data on the device, Adam, after warmup) of ``light`` and SwinIR-light, and inference output Mpx/s and
   peak memory (``torch.cuda.max_memory_allocated``) on one ``--infer-size`` input at x4 in bf16 and fp32.
   Meanwhile a process pool decodes the training and benchmark images into the cache (under /tmp).
2. The equal-time comparison (``bench/equal_time.py``'s loop, the wall clock instead of CPU time):
   ``light``, ``swinir-light``, ``swinir-light+skip`` and ``light:none``, ``--seconds`` (70) of bf16 training each
   with the same patches in the same order (``PatchStream``, batch ``--batch``, LR patch ``--patch``, in
   ``--workers`` loader processes), the same time schedule (warmup 2.5% of the budget, cosine to zero at
   its end) and an EMA with a half-life of 1/60 of the budget; scored in fp32 on the benchmark sets present
   under ``--data`` (a missing set is noted). The trained weights go to ``--out`` so that missing sets can be
   scored on the CPU later (``--score``): ours with ``srformer.checkpoint.save_weights`` (``.safetensors`` +
   ``.json``), the peers in one ``peers.safetensors`` (keys ``<model>/<tensor>``). With ``gpu_check.md``
   that is 6 files.
3. The real ``python train.py experiment=bsd400_x4_light trainer=gpu logger=csv`` for ``--train-seconds``
   (``trainer.max_time``), validated and tested on Set5, with its test score read from its metrics.csv.

Time on an H200 (estimated): start-up ~10 s, part 1 ~35 s, part 2 4 x ~78 s, part 3 ~90 s: ~7.6 minutes.
``--deadline`` (470 s from the start) is enforced: part 2 leaves ``--reserve-part3`` seconds to part 3 and
skips its last models if they would not fit; part 3's ``max_time`` shrinks to what is left, and its process
is killed at its cap.

Everything is printed as markdown and written to ``--out/gpu_check.md`` after each part. Needs torch,
numpy, pillow, safetensors, pytorch-lightning, torchmetrics, rich, hydra-core + omegaconf + antlr4 (part 3),
kornia (srformer.metrics) and spandrel + spandrel-extra-arches (the peers).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import itertools
import json
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import torch  # noqa: E402
from equal_budget import TEST_SETS, cache_root, make_optimizer, patch_stream, score, train_step  # noqa: E402
from equal_time import Recipe, TimedRun  # noqa: E402
from peers import build, is_ours  # noqa: E402

# In order of importance: a model that the deadline leaves no time for is the last one.
MODELS = ["light", "swinir-light", "swinir-light+skip", "light:none"]
SPEED_MODELS = ["light", "swinir-light"]


class Report:
    """Markdown lines, printed as they come and rewritten to ``out/gpu_check.md`` at every flush."""

    def __init__(self, out: Path) -> None:
        self.path = out / "gpu_check.md"
        self.lines: list[str] = []
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def add(self, *lines: str) -> None:
        for line in lines:
            print(line, flush=True)
            self.lines.append(line)
        self.path.write_text("\n".join(self.lines) + "\n")


# ----------------------------------------------------------------------------------------------- data cache
def _prepare_chunk(root: str, pairs: list, scale: int) -> int:
    from srformer.data.cache import ImageCache

    torch.set_num_threads(1)
    return len(ImageCache(root).prepare_all(pairs, scale, what="gpu_check cache"))


def start_cache_build(data: Path, sets: list[str], scale: int, root: Path, workers: int) -> list:
    """Decode every training and benchmark image into the cache in a process pool (forked before CUDA starts)."""
    from srformer.data.datasets import find_pairs

    pairs = find_pairs(data / "train" / "BSD400", scale)
    for set_name in sets:
        pairs += find_pairs(data / "benchmark" / set_name, scale)
    chunks = [pairs[i::workers] for i in range(workers)]
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    futures = [pool.submit(_prepare_chunk, str(root), chunk, scale) for chunk in chunks if chunk]
    pool.shutdown(wait=False)
    return futures


# ------------------------------------------------------------------------------------------------ part 1
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def training_throughput(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    """Patches per second of bf16-autocast training steps on synthetic data already on the device."""
    model = build(name, 4).to(device).train()
    optimizer = make_optimizer(model, 1e-4)
    batch = {
        "lr": torch.rand(args.tp_batch, 3, args.tp_patch, args.tp_patch, device=device),
        "hr": torch.rand(args.tp_batch, 3, args.tp_patch * 4, args.tp_patch * 4, device=device),
    }
    amp = torch.bfloat16 if device.type == "cuda" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(3):
        train_step(model, batch, optimizer, device, amp)
    sync(device)
    start, steps = time.perf_counter(), 0
    while steps < 2 or time.perf_counter() - start < args.tp_seconds:
        train_step(model, batch, optimizer, device, amp)  # .item() inside: synchronised every step
        steps += 1
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"patches_per_s": steps * args.tp_batch / seconds, "steps": steps, "peak_gib": peak}


def inference_speed(name: str, precision: str, args: argparse.Namespace, device: torch.device) -> dict:
    """Output Mpx/s and peak memory of one forward pass on a ``--infer-size`` input (warm-up run excluded)."""
    model = build(name, 4).to(device).eval()
    width, height = args.infer_size
    x = torch.rand(1, 3, height, width, device=device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.inference_mode(), autocast:
        model(x)
        sync(device)
        start, runs = time.perf_counter(), 0
        while runs < 2 or time.perf_counter() - start < args.infer_seconds:
            model(x)
            sync(device)
            runs += 1
    seconds = (time.perf_counter() - start) / runs
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"mpix_per_s": width * height * 16 / seconds / 1e6, "ms": seconds * 1e3, "peak_gib": peak}


def part_speed(args: argparse.Namespace, device: torch.device, report: Report) -> None:
    began = time.perf_counter()
    amp = "bf16 autocast" if device.type == "cuda" else "fp32 (CPU)"
    lines = [
        f"### 1. Speed ({device.type})",
        "",
        f"Training: {amp}, batch {args.tp_batch}, LR patch {args.tp_patch}, x4, L1 + Adam, synthetic data on the "
        f"device, after 3 warm-up steps, for {args.tp_seconds:g} s. Inference: one {args.infer_size[0]}x"
        f"{args.infer_size[1]} input -> x4, warm-up run excluded; peak = `torch.cuda.max_memory_allocated`.",
        "",
        "| model | train patches/s | train peak GiB | infer bf16 Mpx/s | bf16 peak GiB | infer fp32 Mpx/s "
        "| fp32 peak GiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in SPEED_MODELS:
        if time.perf_counter() - began > args.part1_cap:
            lines.append(f"| {name} | skipped: part 1 over its {args.part1_cap:g} s cap | | | | | |")
            continue
        train = training_throughput(name, args, device)
        infer = {p: inference_speed(name, p, args, device) for p in ("bf16", "fp32")}
        lines.append(
            f"| {name} | {train['patches_per_s']:.0f} | {train['peak_gib']:.2f} | "
            f"{infer['bf16']['mpix_per_s']:.1f} | {infer['bf16']['peak_gib']:.2f} | "
            f"{infer['fp32']['mpix_per_s']:.1f} | {infer['fp32']['peak_gib']:.2f} |"
        )
    lines += ["", f"Part 1: {time.perf_counter() - began:.0f} s."]
    report.add(*lines)


# ------------------------------------------------------------------------------------------------ part 2
def save_trained(name: str, model: torch.nn.Module, out: Path, peers: dict[str, torch.Tensor]) -> str:
    """Ours: ``<name>.safetensors`` + ``.json``; peers: gathered into ``peers`` (written once, at the end)."""
    if is_ours(name):
        from srformer.checkpoint import save_weights

        path = out / f"{name.replace(':', '_')}.safetensors"
        save_weights(model, path, meta={"trained_by": "bench/gpu_check.py", "model": name})
        return path.name
    # Parameters only: SwinIR's buffers (attention masks, relative position indices) are rebuilt from its
    # configuration and would triple the file.
    for key, value in model.named_parameters():
        peers[f"{name}/{key}"] = value.detach().to("cpu").contiguous().clone()
    return "peers.safetensors"


def part_equal_time(args: argparse.Namespace, device: torch.device, sets: list[str], report: Report) -> None:
    from safetensors.torch import save_file

    began = time.perf_counter()
    recipe = Recipe(
        scale=4,
        batch=args.batch,
        patch=args.patch,
        lr=args.lr,
        horizon=args.seconds,
        warmup=0.025 * args.seconds,
        ema_half_life=args.seconds / 60,
        seed=0,
        amp="bf16" if device.type == "cuda" else "fp32",
    )
    stream = patch_stream(args.data, 4, args.patch, args.batch, 0, args.cache_dir)
    rows, peers, files = [], {}, set()
    for name in args.models:
        left = args.deadline - report.elapsed() - args.reserve_part3
        if left < args.seconds + 10:
            rows.append(f"| {name} | skipped: {left:.0f} s left before the deadline | | | " + "| " * len(sets))
            continue
        run = TimedRun(name, recipe, device)
        batches = stream.batches(0, workers=args.workers, pin_memory=device.type == "cuda")
        batches = itertools.chain([next(batches)], batches)  # loader start-up off the clock
        scores: dict = {}

        def on_mark(mark: float, run: TimedRun = run, scores: dict = scores) -> None:
            scores.update(score(run.scored_model, args.data, sets, 4, args.cache_dir, device))

        run.train_until(recipe.horizon, batches, time.perf_counter, [recipe.horizon], on_mark)
        del batches
        files.add(save_trained(name, run.scored_model, args.out, peers))
        cells = [f"{scores[s]['psnr']:.2f} / {scores[s]['ssim']:.4f}" for s in sets]
        rows.append(
            f"| {name} | {run.step} | {run.step * recipe.batch / run.spent:.0f} | "
            f"{sum(run.losses[-50:]) / max(len(run.losses[-50:]), 1):.4f} | " + " | ".join(cells) + " |"
        )
        print(f"  {name}: {run.step} steps in {run.spent:.1f} s; " + ", ".join(cells), flush=True)
        del run
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if peers:
        save_file(peers, str(args.out / "peers.safetensors"))
    missing = [s for s in TEST_SETS if not (args.data / "benchmark" / s).is_dir()]
    lines = [
        f"### 2. Equal time on the {device.type}: {args.seconds:g} s of training each",
        "",
        f"{'bf16 autocast' if recipe.amp == 'bf16' else 'fp32'}, batch {recipe.batch}, LR patch {recipe.patch}, x4, L1, Adam lr "
        f"{recipe.lr:g}: warmup {recipe.warmup:.1f} s then cosine to 0 at {recipe.horizon:g} s (wall clock, "
        f"every step synchronised), the same BSD400 patches in the same order (seed 0, {args.workers} loader "
        f"workers); scored fp32 with an EMA of {recipe.ema_half_life:.2f} s half-life. Y-PSNR / SSIM.",
        "",
        "| model | steps | patches/s | final loss | " + " | ".join(sets) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(sets),
        *rows,
        "",
    ]
    if missing:
        lines.append(
            f"Not scored here ({', '.join(missing)} not under {args.data}/benchmark): weights in --out "
            f"({', '.join(sorted(files))}); score them with `python bench/gpu_check.py --score <out> --data ../shared/data --sets "
            f"{' '.join(missing)}`."
        )
    lines.append(f"Part 2: {time.perf_counter() - began:.0f} s.")
    report.add(*lines)


def score_saved(args: argparse.Namespace) -> None:
    """Score the weights part 2 saved (``--score DIR``) on ``--sets``, on the CPU."""
    from safetensors.torch import load_file

    from srformer.checkpoint import load_model

    torch.set_num_threads(args.threads)
    models: dict[str, torch.nn.Module] = {}
    for path in sorted(args.score.glob("*.safetensors")):
        if path.name == "peers.safetensors":
            state = load_file(str(path))
            for name in sorted({key.split("/", 1)[0] for key in state}):
                model = build(name, 4)
                params = {k.split("/", 1)[1]: v for k, v in state.items() if k.startswith(name + "/")}
                missing, unexpected = model.load_state_dict(params, strict=False)
                if unexpected or set(missing) - {n for n, _ in model.named_buffers()}:
                    raise SystemExit(f"error: {path} does not fit {name}: {unexpected or missing}")
                models[name] = model
        else:
            info = json.loads(path.with_suffix(".json").read_text())
            models[info.get("model", path.stem)] = load_model(path)
    print("| model | " + " | ".join(args.sets) + " |\n|---|" + "---:|" * len(args.sets))
    for name, model in models.items():
        scores = score(model, args.data, args.sets, 4, args.cache_dir)
        print(
            f"| {name} | " + " | ".join(f"{scores[s]['psnr']:.2f} / {scores[s]['ssim']:.4f}" for s in args.sets) + " |"
        )


# ------------------------------------------------------------------------------------------------ part 3
def part_train_py(args: argparse.Namespace, device: torch.device, sets: list[str], report: Report) -> None:
    began = time.perf_counter()
    left = args.deadline - report.elapsed()
    budget = min(args.train_seconds, left - 45)
    if budget < min(args.train_seconds, 10):
        report.add("### 3. train.py", "", f"Skipped: {left:.0f} s left before the {args.deadline:g} s deadline.")
        return
    log_dir = Path(args.tmp) / "gpu_check_logs"
    run_name = f"gpu_check_{int(time.time())}"
    data = args.data.resolve()
    overrides = [
        "experiment=bsd400_x4_light",
        f"trainer={'gpu' if device.type == 'cuda' else 'cpu'}",
        "logger=csv",
        f"run_name={run_name}",
        f"paths.data_dir={data}",
        f"paths.log_dir={log_dir}",
        f"data.cache_dir={cache_root(args.cache_dir)}",
        f"data.num_workers={args.workers}",
        f"+trainer.max_time={{seconds:{budget:.0f}}}",
        f"trainer.val_check_interval={args.val_every}",
        "~data.val_dirs.Set14",
        *(f"~data.test_dirs.{s}" for s in ("Set14", "B100")),
        "~callbacks.progress_bar",
        "+trainer.enable_progress_bar=false",
        *args.train_args,
    ]
    command = [sys.executable, "train.py", *overrides]
    log_path = Path(args.tmp) / "gpu_check_train.log"
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cap = max(30.0, min(budget + args.train_overhead, args.deadline - report.elapsed()))
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            rc = process.wait(timeout=cap)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            rc = None
    seconds = time.perf_counter() - began
    lines = [
        "### 3. The real training path",
        "",
        f"`python train.py {' '.join(overrides)}`",
        "",
    ]
    metrics = list((log_dir / "bsd400_x4_light" / "runs" / run_name / "csv").glob("version_*/metrics.csv"))
    rows = [row for path in metrics for row in csv.DictReader(path.open())]
    steps = max((int(r["step"]) for r in rows if r.get("step")), default=0)
    test = [r["test/Set5/psnr"] for r in rows if r.get("test/Set5/psnr")]
    val = [f"{float(r['val/Set5/psnr']):.2f}" for r in rows if r.get("val/Set5/psnr")]
    status = "finished" if rc == 0 else ("killed at its cap" if rc is None else f"exit status {rc}")
    lines += [
        "| run | steps | steps/s (of max_time) | val Set5 PSNR (each validation) | test Set5 PSNR / SSIM |",
        "|---|---:|---:|---|---:|",
        f"| {status}, {seconds:.0f} s in all | {steps} | {steps / budget:.1f} | {', '.join(val) or '-'} | "
        + (
            f"{float(test[-1]):.2f} / {float(next(r['test/Set5/ssim'] for r in rows if r.get('test/Set5/ssim'))):.4f}"
            if test
            else "-"
        )
        + " |",
        "",
    ]
    if rc != 0 or not test:
        tail = log_path.read_text(errors="replace").splitlines()[-25:]
        lines += ["Last lines of its log:", "", "```", *tail, "```", ""]
    lines.append(f"Part 3: {seconds:.0f} s (max_time {budget:.0f} s, cap {cap:.0f} s).")
    report.add(*lines)


# ------------------------------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("/tmp/gpu_check"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dry-run", action="store_true", help="tiny budgets for a CPU check (about 1-2 minutes)")
    parser.add_argument("--parts", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--deadline", type=float, default=470, help="seconds for everything; parts are cut to fit")
    parser.add_argument("--tmp", default="/tmp", help="cache and train.py run folders go under here")
    parser.add_argument("--cache-dir", default=None, help="default: <tmp>/srformer_gpu_check_cache")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="loader processes")
    # part 1
    parser.add_argument("--tp-batch", type=int, default=32)
    parser.add_argument("--tp-patch", type=int, default=64)
    parser.add_argument("--tp-seconds", type=float, default=5)
    parser.add_argument("--infer-size", type=int, nargs=2, default=[960, 540], metavar=("W", "H"))
    parser.add_argument("--infer-seconds", type=float, default=2)
    parser.add_argument("--part1-cap", type=float, default=75)
    # part 2
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--seconds", type=float, default=70, help="training time of each model in part 2")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--sets", nargs="+", default=list(TEST_SETS))
    # part 3
    parser.add_argument("--train-seconds", type=float, default=60)
    parser.add_argument("--train-overhead", type=float, default=75, help="start-up + test allowance in part 3's cap")
    parser.add_argument("--reserve-part3", type=float, default=95, help="seconds part 2 leaves to part 3")
    parser.add_argument("--val-every", type=int, default=1000, help="train.py's val_check_interval")
    parser.add_argument("--train-args", nargs="*", default=[], help="more train.py overrides")
    # scoring saved weights
    parser.add_argument("--score", type=Path, default=None, help="score the weights part 2 saved in this folder")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for --score")
    args = parser.parse_args()
    if args.dry_run:
        args.device = "cpu"
        args.sets = ["Set5"]
        args.tp_batch, args.tp_patch, args.tp_seconds = 2, 32, 1
        args.infer_size, args.infer_seconds = [64, 64], 0.5
        args.seconds, args.batch, args.patch = 3, 4, 32
        args.train_seconds, args.val_every, args.workers = 8, 5, min(args.workers, 2)
        args.deadline, args.reserve_part3 = 400, 60
    if args.cache_dir is None and args.score is None:
        args.cache_dir = str(Path(args.tmp) / "srformer_gpu_check_cache")
    return args


def main() -> None:
    args = parse_args()
    if args.score is not None:
        score_saved(args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    report = Report(args.out)
    device = torch.device(args.device)
    sets = [s for s in args.sets if (args.data / "benchmark" / s).is_dir()]
    if not (args.data / "train" / "BSD400").is_dir():
        raise SystemExit(f"error: no training images at {args.data / 'train' / 'BSD400'}; pass --data")
    futures = start_cache_build(args.data, sets, 4, cache_root(args.cache_dir), max(1, (os.cpu_count() or 2) - 2))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    report.add(
        "## GPU check",
        "",
        f"`python bench/gpu_check.py {' '.join(sys.argv[1:])}`: {name}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPU cores. Benchmark sets present: {', '.join(sets) or 'none'}.",
        "",
    )
    if 1 in args.parts:
        part_speed(args, device, report)
    began = time.perf_counter()
    images = sum(f.result() for f in futures)
    report.add(
        f"Data cache: {images} images ready {time.perf_counter() - began:.0f} s after part 1 (built alongside it).", ""
    )
    if 2 in args.parts:
        part_equal_time(args, device, sets, report)
    if 3 in args.parts:
        part_train_py(args, device, sets, report)
    report.add("", f"Total: {report.elapsed():.0f} s.")


if __name__ == "__main__":
    main()
