"""Is data loading ever the bottleneck? Loader patches/second next to the training step's consumption.

    python bench/data_loader.py                      # BSD400 from ../shared/data, x4, LR 48, batch 16
    python bench/data_loader.py --workers 8 --device cuda --no-write

The loader is the training ``SRDataModule`` (decoded-image cache, workers, pinned memory on CUDA), timed
over ``--batches`` batches after its first one (worker start-up reported apart), including the copy to the
device. The consumption is one training step (forward, L1 loss, backward, Adam) of the ``tiny`` and
``light`` models on a batch of the same size, median of ``--steps`` steps, on ``--device`` (bf16 autocast
on CUDA, as ``trainer=gpu`` trains). Without ``../shared/data`` the loader reads scikit-image's photos.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

from srformer.data import SRDataModule  # noqa: E402
from srformer.data.photos import write_skimage_photos  # noqa: E402
from srformer.models import build_model  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def default_train_dir() -> Path | None:
    data_dir = Path(os.environ.get("SRFORMER_DATA_DIR") or REPO.parent / "shared" / "data")
    folder = data_dir / "train" / "BSD400"
    return folder if folder.is_dir() else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_rate(module: SRDataModule, batches: int, device: torch.device) -> tuple[float, float]:
    """(patches per second over ``batches`` batches after the first, seconds to the first batch)."""
    start = time.perf_counter()
    iterator = iter(module.train_dataloader())
    first = next(iterator)
    first["hr"].to(device, non_blocking=True)
    startup = time.perf_counter() - start
    patches = 0
    start = time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(module.train_dataloader())
            batch = next(iterator)
        lr = batch["lr"].to(device, non_blocking=True)
        batch["hr"].to(device, non_blocking=True)
        patches += lr.shape[0]
    sync(device)
    return patches / (time.perf_counter() - start), startup


def train_step_rate(preset: str, scale: int, batch_size: int, patch: int, steps: int, device: torch.device) -> float:
    """Patches per second one optimizer step of ``preset`` consumes (median step time)."""
    torch.manual_seed(0)
    model = build_model(preset, scale).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.99))
    lr = torch.rand(batch_size, 3, patch, patch, device=device)
    hr = torch.rand(batch_size, 3, patch * scale, patch * scale, device=device)
    times = []
    for step in range(steps + 1):  # the first step (allocations, kernel selection) is not counted
        sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.l1_loss(model(lr), hr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)
        if step:
            times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="folder of training HR images (default: BSD400)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=48, help="LR patch side")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batches", type=int, default=200, help="loader batches timed")
    parser.add_argument("--steps", type=int, default=5, help="training steps timed per model")
    parser.add_argument("--presets", nargs="+", default=["tiny", "light"])
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--cache-dir", default=None, help="decoded-image cache (default: a temporary folder)")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/BENCHMARKS.md")
    args = parser.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    with tempfile.TemporaryDirectory(prefix="srformer-bench-") as tmp:
        train_dir = args.data or default_train_dir()
        if train_dir is None:
            train_dir, _ = write_skimage_photos(Path(tmp) / "photos")
        module = SRDataModule(
            train_dirs=[str(train_dir)],
            scale=args.scale,
            patch_size=args.patch_size,
            batch_size=args.batch_size,
            patches_per_image=64,
            num_workers=args.workers,
            cache_dir=args.cache_dir or str(Path(tmp) / "cache"),
            pin_memory=device.type == "cuda",
        )
        start = time.perf_counter()
        module.prepare_data()
        module.setup("fit")
        prepare_seconds = time.perf_counter() - start
        loader, startup = loader_rate(module, args.batches, device)
        images = len(module.train_set.items)
        # The same loader in the main process alone: the rate of one worker, to size num_workers elsewhere.
        module.num_workers = 0
        single, _ = loader_rate(module, max(args.batches // 4, 10), device)

    hr_patch = args.patch_size * args.scale
    rows = [
        f"| loader, {args.workers} workers (prepare: {prepare_seconds:.1f} s for {images} images, "
        f"first batch {startup:.1f} s) | {loader:,.0f} | |",
        f"| loader, one process (no workers) | {single:,.0f} | |",
    ]
    for preset in args.presets:
        rate = train_step_rate(preset, args.scale, args.batch_size, args.patch_size, args.steps, device)
        rows.append(f"| `{preset}` training step (fwd + bwd + Adam) | {rate:,.3g} | {loader / rate:,.0f}x |")

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    body = "\n".join(
        [
            "Loader patches per second against the patches per second a training step consumes, measured in",
            f"the same run: x{args.scale}, LR patch {args.patch_size} (HR {hr_patch}), batch {args.batch_size}, "
            f"data `{train_dir.name}`, training on {device_name} in {precision}.",
            f"Headroom = loader rate ({args.workers} workers) / step rate: above 1x, training never waits for data.",
            "",
            "| what | patches/s | headroom |",
            "| --- | --- | --- |",
            *rows,
            "",
            f"Command: `python bench/data_loader.py --workers {args.workers}"
            + (f" --device {device.type}" if args.device else "")
            + f"` ({datetime.date.today()}, {platform.machine()}, torch {torch.__version__}).",
        ]
    )
    print(body)
    if not args.no_write:
        write_section(f"Data loader throughput ({device.type})", body)


if __name__ == "__main__":
    main()
