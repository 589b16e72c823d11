"""Equal-budget comparison: train several models with the same data, pipeline, steps, patch and batch, then
score them on the benchmark sets and time them, all in one run.

    python bench/equal_budget.py --models tiny light swinir-light srformer-light --steps 600
    python bench/equal_budget.py --models tiny tiny:none tiny:shallow --steps 1000 --title "Ablation: context"

Every model gets the same training loop: BSD400 patches from ``SRDataModule`` through :class:`PatchStream`
(batch ``k`` depends only on the seed and ``k``, so every model sees the same patches in the same order), L1 loss, Adam (0.9, 0.99), linear warmup then cosine decay to zero, fp32, on the
CPU with ``--threads`` threads. ``preset:context`` builds one of our presets with another context
(``none`` = MHSA only, ``overlap``, ``shallow``). Peers come from ``spandrel`` / ``spandrel-extra-arches``
(dev extras) with their published light configurations, randomly initialised; ``swinir-light+skip`` wraps a
peer in our bicubic skip (``bench/peers.py``).

The data stream, the training step and the scoring are shared with ``bench/equal_time.py`` (equal CPU time
instead of equal steps) and ``bench/gpu_check.py``.

Each trained model's scores are saved in ``--results`` (one JSON per model), so an interrupted comparison
resumes where it stopped; ``--retrain`` discards them. Throughput (output megapixels per second on one
``--size`` x ``--size`` input, ``--threads`` threads) is measured for all models at the end, round-robin so
that a change of machine load affects all alike. Prints a markdown table, writes it as a section of
docs/BENCHMARKS.md (``--no-write`` to skip) and, with ``--plot``, a PSNR-vs-throughput PNG.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import architecture, build, display_name, is_ours, upscaler  # noqa: E402
from report import write_section  # noqa: E402

from srformer.data import SRDataModule  # noqa: E402
from srformer.data.benchmark_degradations import BENCHMARK_DEGRADATIONS, BICUBIC  # noqa: E402
from srformer.data.cache import ImageCache, default_cache_dir  # noqa: E402
from srformer.data.datasets import PatchDataset  # noqa: E402
from srformer.evaluation import evaluate_folder  # noqa: E402
from srformer.profiling import count_flops, count_parameters  # noqa: E402
from srformer.training.schedules import build_scheduler  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"
TEST_SETS = ("Set5", "Set14", "B100")


def cache_root(cache_dir: str | Path | None) -> Path:
    """The decoded-image cache that ``SRDataModule(cache_dir=...)`` uses, for training and scoring alike."""
    return Path(cache_dir) if cache_dir else default_cache_dir() / "decoded"


class PatchStream:
    """Training batch ``k`` as a function of ``(seed, k)`` alone: the same patches in the same order for
    every model, whatever the model does with torch's random generator (SwinIR's stochastic depth draws
    from it), in one process or in DataLoader workers, and from any ``k`` on when a run resumes.

    Epoch ``e`` visits the patch indices in a permutation seeded by ``(seed, e)``; the crops and flips of
    batch ``k`` are drawn under ``torch.manual_seed`` of ``(seed, k)`` in a forked generator (the caller's
    generator is left as it was). Item ``k`` is a whole batch: use ``DataLoader(stream, batch_size=None)``.
    """

    def __init__(self, dataset: PatchDataset, batch_size: int, seed: int) -> None:
        if len(dataset) < batch_size:
            raise ValueError(f"{len(dataset)} patches per epoch are fewer than one batch of {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.batches_per_epoch = len(dataset) // batch_size
        self._order: tuple[int, list[int]] = (-1, [])

    def __len__(self) -> int:
        return 2**62

    def indices(self, k: int) -> list[int]:
        epoch, position = divmod(k, self.batches_per_epoch)
        if self._order[0] != epoch:
            generator = torch.Generator().manual_seed(_mix(self.seed, 0, epoch))
            self._order = (epoch, torch.randperm(len(self.dataset), generator=generator).tolist())
        return self._order[1][position * self.batch_size : (position + 1) * self.batch_size]

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_mix(self.seed, 1, k))
            return self.dataset.__getitems__(self.indices(k))

    def batches(self, start: int = 0, workers: int = 0, pin_memory: bool = False) -> Iterator[dict[str, torch.Tensor]]:
        """Batches ``start, start + 1, ...`` (in ``workers`` DataLoader processes when > 0)."""
        if workers == 0:
            return (self[k] for k in itertools.count(start))
        loader = torch.utils.data.DataLoader(
            self,
            batch_size=None,
            sampler=range(start, 2**62),
            num_workers=workers,
            pin_memory=pin_memory,
            prefetch_factor=4,
        )
        return iter(loader)


def _mix(*values: int) -> int:
    """A 32-bit seed from several integers (torch's CPU generator keeps only 32 bits of a seed)."""
    return int(np.random.SeedSequence(list(values)).generate_state(1)[0])


def patch_stream(
    data: Path, scale: int, patch: int, batch: int, seed: int, cache_dir: str | Path | None
) -> PatchStream:
    """BSD400 patches (``data/train/BSD400``, decoded once into the cache) as a :class:`PatchStream`."""
    module = SRDataModule(
        train_dirs=[str(data / "train" / "BSD400")],
        scale=scale,
        patch_size=patch,
        batch_size=batch,
        patches_per_image=64,
        num_workers=0,
        cache_dir=str(cache_root(cache_dir)),
    )
    module.prepare_data()
    module.setup("fit")
    assert module.train_set is not None
    return PatchStream(module.train_set, batch, seed)


def train_step(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    device: torch.device | None = None,
    amp_dtype: torch.dtype | None = None,
) -> float:
    """One L1 step (under autocast to ``amp_dtype`` if given); returns the loss, raising on NaN/inf."""
    device = device or torch.device("cpu")
    lr, hr = batch["lr"].to(device, non_blocking=True), batch["hr"].to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        sr = model(lr)
    loss = F.l1_loss(sr.float(), hr)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    value = loss.item()
    if not math.isfinite(value):
        raise SystemExit(f"error: training diverged (loss {value})")
    return value


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """The optimizer every benchmark model gets: Adam (0.9, 0.99), as in train.py's configs."""
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99))


def split_set_name(name: str) -> tuple[str, str]:
    """``"Set14_D1"`` -> ``("Set14", "D1")``; ``"Set14"`` -> ``("Set14", "bicubic")``."""
    folder, _, suffix = name.rpartition("_")
    if folder and suffix in BENCHMARK_DEGRADATIONS:
        return folder, suffix
    return name, BICUBIC


def score(
    model: nn.Module,
    data: Path,
    sets: list[str],
    scale: int,
    cache_dir: str | Path | None,
    device: torch.device | None = None,
) -> dict[str, dict[str, float]]:
    """Y-PSNR/SSIM of ``model`` (in eval mode, fp32) on ``data/benchmark/<set>`` for each set; a name
    ``<set>_<degradation>`` (``Set14_D1``) scores that set with the LR of a fixed benchmark degradation."""
    was_training = model.training
    model.eval()
    cache = ImageCache(cache_root(cache_dir))
    scores = {}
    for set_name in sets:
        folder, degradation = split_set_name(set_name)
        result = evaluate_folder(
            upscaler(model),
            data / "benchmark" / folder,
            scale,
            cache,
            device or torch.device("cpu"),
            degradation=degradation,
        )
        scores[set_name] = {"psnr": result.psnr, "ssim": result.ssim}
    model.train(was_training)
    return scores


def load_result(path: Path, name: str) -> dict | None:
    """A saved result of ``name``, or None if there is none or it was trained with another architecture."""
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if result.get("architecture") != architecture(name):
        print(f"{name}: {path} was trained with another architecture; training again", flush=True)
        return None
    return result


def train_and_score(name: str, args: argparse.Namespace) -> dict:
    """Train ``name`` for ``args.steps`` steps and score it on the test sets."""
    torch.manual_seed(args.seed)
    model = build(name, args.scale)
    stream = patch_stream(args.data, args.scale, args.patch, args.batch, args.seed, args.cache_dir)
    optimizer = make_optimizer(model, args.lr)
    scheduler = build_scheduler(optimizer, "cosine", total_steps=args.steps, warmup_steps=args.warmup)
    batches = stream.batches()
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(args.steps):
        losses.append(train_step(model, next(batches), optimizer))
        scheduler.step()
        if (step + 1) % args.log_every == 0:
            rate = (time.perf_counter() - start) / (step + 1)
            recent = statistics.fmean(losses[-args.log_every :])
            print(f"  {name}: step {step + 1}/{args.steps}  loss {recent:.4f}  {rate:.2f} s/step", flush=True)
    train_seconds = time.perf_counter() - start

    scores = score(model, args.data, args.sets, args.scale, args.cache_dir)
    for set_name, value in scores.items():
        print(f"  {name}: {set_name} {value['psnr']:.2f} dB / {value['ssim']:.4f}", flush=True)
    return {
        "model": name,
        "architecture": architecture(name),
        "steps": args.steps,
        "batch": args.batch,
        "patch": args.patch,
        "lr": args.lr,
        "threads": args.threads,
        "train_seconds": train_seconds,
        "final_loss": statistics.fmean(losses[-args.log_every :]),
        "scores": scores,
    }


def measure_speed(names: list[str], args: argparse.Namespace) -> dict[str, dict]:
    """Parameters, FLOPs per output pixel and throughput of every model, timed round-robin."""
    x = torch.rand(1, 3, args.size, args.size)
    out_pixels = args.size * args.size * args.scale**2
    models = {name: build(name, args.scale).eval() for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    with torch.inference_mode():
        for model in models.values():  # warm up every model once
            model(x)
        for _ in range(args.repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
    return {
        name: {
            "params": count_parameters(model),
            "flops_per_px": count_flops(model, x) / out_pixels,
            "mpix_per_s": out_pixels / statistics.median(times[name]) / 1e6,
        }
        for name, model in models.items()
    }


def make_table(results: dict[str, dict], speed: dict[str, dict], sets: list[str], reference: str | None) -> str:
    header = "| model | params | FLOPs/px | Mpx/s | " + " | ".join(f"{s} PSNR / SSIM" for s in sets)
    header += " | train s/step |"
    if reference:
        header += f" speed vs {display_name(reference)} |"
    lines = [header, "|" + " --- |" * (header.count("|") - 1)]
    for name, result in results.items():
        cost = speed[name]
        cells = [
            display_name(name),
            f"{cost['params'] / 1e6:.2f}M",
            f"{cost['flops_per_px'] / 1e3:.1f}K",
            f"{cost['mpix_per_s']:.3f}",
            *(f"{result['scores'][s]['psnr']:.2f} / {result['scores'][s]['ssim']:.4f}" for s in sets),
            f"{result['train_seconds'] / result['steps']:.2f}",
        ]
        if reference:
            cells.append(f"{cost['mpix_per_s'] / speed[reference]['mpix_per_s']:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict[str, dict], speed: dict[str, dict], scale: int, sets: list[str], path: Path, title: str) -> None:
    """PSNR on the first and last set (Set5 and B100 by default) against throughput (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    shown = list(dict.fromkeys([sets[0], sets[-1]]))
    rates = [speed[name]["mpix_per_s"] for name in results]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 4.2), constrained_layout=True, squeeze=False)
    for axis, set_name in zip(axes[0], shown, strict=True):
        for name, result in results.items():
            ours = is_ours(name)
            x, y = speed[name]["mpix_per_s"], result["scores"][set_name]["psnr"]
            axis.scatter(x, y, s=60, marker="o" if ours else "s", color="tab:blue" if ours else "tab:gray")
            label = display_name(name) if not ours else name  # the preset, or preset:context
            offset, align = ((0, 7), "center") if ours else ((8, -3), "left")
            axis.annotate(label, (x, y), textcoords="offset points", xytext=offset, ha=align, fontsize=8)
        axis.set_xscale("log")
        axis.set_xlim(min(rates) / 1.5, max(rates) * 1.5)
        axis.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xticks([t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5) if min(rates) / 1.5 <= t <= max(rates) * 1.5])
        axis.margins(y=0.15)
        axis.set_xlabel("CPU throughput (output Mpx/s, log scale)")
        axis.set_ylabel(f"{set_name} x{scale} PSNR-Y (dB)")
        axis.grid(True, alpha=0.3)
        axis.set_title(set_name)
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "light", "swinir-light", "srformer-light"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with train/BSD400 and benchmark/")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=32, help="LR patch side")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for training and timing")
    parser.add_argument("--size", type=int, default=128, help="LR side of the throughput input")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--sets", nargs="+", default=list(TEST_SETS), help="benchmark sets to score on")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results" / "equal_budget")
    parser.add_argument("--retrain", action="store_true", help="ignore saved results and train again")
    parser.add_argument("--reference", default="swinir-light", help="speed ratios against this model")
    parser.add_argument("--title", default="Equal-budget comparison")
    parser.add_argument("--plot", type=Path, default=None, help="write a PSNR-vs-throughput PNG here")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/BENCHMARKS.md")
    args = parser.parse_args()
    if not (args.data / "train" / "BSD400").is_dir():
        raise SystemExit(f"error: no training images at {args.data / 'train' / 'BSD400'}; pass --data")
    torch.set_num_threads(args.threads)

    budget = f"s{args.steps}_b{args.batch}_p{args.patch}_lr{args.lr:g}_x{args.scale}"
    results: dict[str, dict] = {}
    for name in args.models:
        saved = args.results / budget / f"{name.replace(':', '_')}.json"
        result = None if args.retrain else load_result(saved, name)
        if result is not None:
            results[name] = result
            print(f"{name}: loaded {saved}", flush=True)
            continue
        print(f"{name}: training {args.steps} steps", flush=True)
        results[name] = train_and_score(name, args) | {"scale": args.scale}
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(results[name], indent=2))

    speed = measure_speed(args.models, args)
    reference = args.reference if args.reference in results else None
    table = make_table(results, speed, args.sets, reference)
    command = "python bench/equal_budget.py " + " ".join(sys.argv[1:])
    body = (
        f"`{command}`\n\n"
        f"{datetime.date.today()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} CPU thread(s). Budget for every model: {args.steps} steps, batch {args.batch}, LR "
        f"patch {args.patch}, x{args.scale}, L1, Adam lr {args.lr:g} (warmup {args.warmup}, cosine to 0), "
        f"BSD400, seed {args.seed}. Scores: Y-PSNR/SSIM on the full sets (MATLAB bicubic LR, border {args.scale}). "
        f"Throughput: one {args.size}x{args.size} LR input, median of {args.repeats} round-robin runs.\n\n{table}"
    )
    print(body)
    if args.plot:
        plot(
            results,
            speed,
            args.scale,
            args.sets,
            args.plot,
            f"{args.title}: {args.steps} steps, batch {args.batch}, LR patch {args.patch}",
        )
        print(f"plot: {args.plot}")
    if not args.no_write:
        write_section(args.title, body)


if __name__ == "__main__":
    main()
