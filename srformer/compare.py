"""Compare checkpoints side by side: ``python -m srformer.compare MODEL [MODEL ...] --data DIR [DIR ...] --scale S``.

Every model, and MATLAB bicubic as the baseline, is scored on every benchmark folder with the project's
protocol (:mod:`srformer.evaluate`: HR cropped to a multiple of the scale, MATLAB bicubic LR at uint8 levels,
SR clamped and rounded, Y-channel PSNR/SSIM with ``scale`` border pixels). Prints a markdown table with PSNR/SSIM
per dataset, parameters, FLOPs per output pixel and CPU/GPU throughput; writes one PNG grid of crops per image
(bicubic | model 1 | ... | HR; the crop is the image's most textured region, where methods differ most);
logs one wandb run (offline unless ``--wandb-mode online``) with the metrics and crops in a ``wandb.Table``.
``--degradation D1|jpeg30|noise10`` makes the LR with that fixed benchmark degradation instead of bicubic,
as ``srformer.evaluate`` does.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor, nn

from srformer.checkpoint import load_any
from srformer.data.benchmark_degradations import BICUBIC as BICUBIC_LR
from srformer.data.benchmark_degradations import check_degradation, degradation_names
from srformer.data.cache import ImageCache, default_cache_dir
from srformer.errors import SRFormerError, exit_on_user_error
from srformer.evaluate import benchmark_dataset, bicubic_upscaler, dataset_name
from srformer.inference import upscale_tensor
from srformer.metrics import psnr_y, ssim_y
from srformer.profiling import count_parameters, flops_per_output_pixel, seconds_per_call

BICUBIC = "bicubic"
Upscaler = Callable[[Tensor], Tensor]


@dataclass
class Method:
    """A model (or bicubic) under comparison, with its cost figures and per-dataset scores."""

    name: str
    upscale: Upscaler
    params: int | None = None
    flops_per_px: float | None = None
    mpix_per_s: float | None = None
    psnr: dict[str, list[float]] = field(default_factory=dict)
    ssim: dict[str, list[float]] = field(default_factory=dict)
    model: str | None = None  # the loaded model's descriptor name ("srformer tiny x4", "SwinIR x4"); None: bicubic


@dataclass
class ImageRow:
    """One image of one dataset: crops (uint8 ``(h, w, 3)``) and scores per method."""

    dataset: str
    name: str
    hr_crop: np.ndarray
    crops: dict[str, np.ndarray] = field(default_factory=dict)
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)


def model_label(path: str, taken: set[str]) -> str:
    """Short unique name of a model path: the file stem, or the run folder's name for ``best``/``last``."""
    resolved = Path(path)
    label = resolved.name if resolved.is_dir() else resolved.stem
    if label in ("best", "last") and resolved.parent.name:
        parent = resolved.parent.parent if resolved.parent.name == "checkpoints" else resolved.parent
        label = f"{parent.name}/{label}"
    unique, index = label, 2
    while unique in taken or unique == BICUBIC:
        unique, index = f"{label}#{index}", index + 1
    taken.add(unique)
    return unique


def measure_cost(
    model: nn.Module, scale: int, device: torch.device, side: int, repeats: int
) -> tuple[int, float, float]:
    """(parameters, FLOPs per output pixel, output megapixels per second) on a random ``side x side`` input."""
    x = torch.rand(1, 3, side, side, device=device)
    with torch.inference_mode():
        flops = flops_per_output_pixel(model, x, scale)
        seconds = seconds_per_call(lambda: model(x), repeats=repeats)
    return count_parameters(model), flops, side * side * scale**2 / seconds / 1e6


def texture_crop_box(hr: Tensor, size: int) -> tuple[int, int, int]:
    """(top, left, side) of the ``size`` square of ``hr`` ``(1, 3, H, W)`` with the most high-frequency energy."""
    height, width = hr.shape[-2:]
    side = min(size, height, width)
    gray = hr.mean(dim=1, keepdim=True)
    laplacian = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=hr.device).view(1, 1, 3, 3)
    energy = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), laplacian).square()
    stride = max(side // 4, 1)
    pooled = F.avg_pool2d(energy, kernel_size=side, stride=stride)
    index = int(pooled.flatten().argmax())
    row, col = divmod(index, pooled.shape[-1])
    return row * stride, col * stride, side


def crop_uint8(image: Tensor, box: tuple[int, int, int]) -> np.ndarray:
    top, left, side = box
    patch = image[0, :, top : top + side, left : left + side].clamp(0, 1).mul(255).round().byte()
    return patch.permute(1, 2, 0).cpu().numpy()


def captioned_row(tiles: list[tuple[str, np.ndarray]], zoom: int = 2, caption_height: int = 28) -> Image.Image:
    """``(caption, crop)`` tiles side by side on white, each crop ``(h, h, 3)`` uint8 enlarged ``zoom`` times
    (nearest, so pixels stay pixels) with its caption (lines split at ``\\n``) below it."""
    side = tiles[0][1].shape[0] * zoom
    gap = 4
    row = Image.new("RGB", (len(tiles) * (side + gap) - gap, side + caption_height), "white")
    draw = ImageDraw.Draw(row)
    for index, (caption, crop) in enumerate(tiles):
        x = index * (side + gap)
        row.paste(Image.fromarray(crop).resize((side, side), Image.Resampling.NEAREST), (x, 0))
        draw.multiline_text((x + 2, side + 1), caption, fill="black", spacing=1)
    return row


def grid_image(row: ImageRow, method_names: list[str], zoom: int = 2) -> Image.Image:
    """Crops side by side (the methods, then HR), enlarged ``zoom`` times (nearest), each captioned with its
    name and scores."""
    tiles = [
        (f"{name}\n{row.scores[name][0]:.2f} dB / {row.scores[name][1]:.4f}", row.crops[name]) for name in method_names
    ]
    return captioned_row([*tiles, ("HR", row.hr_crop)], zoom)


def evaluate(
    methods: list[Method],
    folders: list[Path],
    scale: int,
    cache: ImageCache,
    device: torch.device,
    crop_size: int,
    degradation: str = BICUBIC_LR,
) -> list[ImageRow]:
    """Score every method on every image of every folder (LR made by ``degradation``); returns per-image
    crops and scores."""
    rows: list[ImageRow] = []
    for folder in folders:
        dataset = dataset_name(folder)
        images = benchmark_dataset(folder, scale, cache, degradation)
        for method in methods:
            method.psnr[dataset], method.ssim[dataset] = [], []
        for index in range(len(images)):
            sample = images[index]
            lr = sample["lr"].unsqueeze(0).to(device)
            hr = sample["hr"].unsqueeze(0).to(device)
            box = texture_crop_box(hr, crop_size)
            row = ImageRow(dataset, sample["name"], crop_uint8(hr, box))
            for method in methods:
                sr = method.upscale(lr)
                if sr.shape != hr.shape:
                    raise SRFormerError(
                        f"{method.name} made {tuple(sr.shape)} from {sample['name']}, expected {tuple(hr.shape)}"
                    )
                psnr, ssim = float(psnr_y(sr, hr, scale)[0]), float(ssim_y(sr, hr, scale)[0])
                method.psnr[dataset].append(psnr)
                method.ssim[dataset].append(ssim)
                row.crops[method.name] = crop_uint8(sr, box)
                row.scores[method.name] = (psnr, ssim)
            rows.append(row)
    return rows


def markdown_table(methods: list[Method], datasets: list[str], scale: int, device: torch.device) -> str:
    header = (
        ["method", "params", "FLOPs / px", f"{device.type.upper()} Mpx/s"]
        + [f"{d} x{scale} PSNR / SSIM" for d in datasets]
        + ["model"]
    )
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for method in methods:
        cells = [
            method.name,
            "-" if method.params is None else f"{method.params / 1e6:.3f}M",
            "-" if method.flops_per_px is None else f"{method.flops_per_px / 1e3:.1f}K",
            "-" if method.mpix_per_s is None else f"{method.mpix_per_s:.3f}",
        ]
        cells += [f"{np.mean(method.psnr[d]):.2f} / {np.mean(method.ssim[d]):.4f}" for d in datasets]
        cells.append(method.model or "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def log_wandb(
    rows: list[ImageRow], methods: list[Method], datasets: list[str], config: dict, mode: str, project: str, out: Path
) -> str | None:
    """One wandb run: ``comparison`` table (a row per image and method, with its crop) and ``summary`` table."""
    if mode == "disabled":
        return None
    import wandb

    run = wandb.init(
        project=project, mode=mode, dir=str(out), config=config, job_type="compare", reinit="finish_previous"
    )
    try:
        table = wandb.Table(columns=["dataset", "image", "method", "psnr_y", "ssim_y", "crop", "hr_crop"])
        for row in rows:
            hr_crop = wandb.Image(row.hr_crop)
            for method in methods:
                psnr, ssim = row.scores[method.name]
                table.add_data(
                    row.dataset, row.name, method.name, psnr, ssim, wandb.Image(row.crops[method.name]), hr_crop
                )
        summary = wandb.Table(columns=["method", "dataset", "psnr_y", "ssim_y", "params", "flops_per_px", "mpix_per_s"])
        for method in methods:
            for dataset in datasets:
                summary.add_data(
                    method.name, dataset, float(np.mean(method.psnr[dataset])), float(np.mean(method.ssim[dataset])),
                    method.params, method.flops_per_px, method.mpix_per_s,
                )  # fmt: skip
        run.log({"comparison": table, "summary": summary})
        return run.dir
    finally:
        run.finish()


def _model_upscaler(model: nn.Module, tile: int | None, size_multiple: int) -> Upscaler:
    """``model`` on whole images (or ``tile``-sided tiles aligned to its descriptor's ``size_multiple``)."""
    return lambda lr: upscale_tensor(model, lr, tile=tile, size_multiple=size_multiple)


def build_methods(
    model_paths: list[str], scale: int, device: torch.device, tile: int | None, cost_side: int, repeats: int
) -> list[Method]:
    """Bicubic, then every model file :func:`srformer.checkpoint.load_any` reads (ours, or community checkpoints
    such as SwinIR's ``.pth``), each labelled by its path and its descriptor's name."""
    methods = [Method(BICUBIC, lambda lr: bicubic_upscaler(lr, scale))]
    taken: set[str] = set()
    for path in model_paths:
        loaded = load_any(path, device=device, scale=scale)
        model, descriptor = loaded.model, loaded.descriptor
        name = model_label(str(descriptor.path), taken)
        params, flops, speed = measure_cost(model, scale, device, cost_side, repeats)
        upscale = _model_upscaler(model, tile, descriptor.size_multiple)
        methods.append(Method(name, upscale, params, flops, speed, model=descriptor.name))
    return methods


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m srformer.compare", description=__doc__.split("\n")[0])
    parser.add_argument(
        "models",
        nargs="+",
        help="weights (.safetensors), Lightning .ckpt files, run folders or community checkpoints (SwinIR .pth, ...)",
    )
    parser.add_argument("--data", nargs="+", required=True, type=Path, help="benchmark folders (HR images)")
    parser.add_argument("--scale", type=int, required=True, help="upscaling factor; every model must have it")
    parser.add_argument("-o", "--output", type=Path, default=Path("compare"), help="folder for grids and the wandb run")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--tile", type=int, default=0, help="tile side for the models (0: whole images)")
    parser.add_argument("--crop", type=int, default=96, help="side of the HR crops in the grids (pixels)")
    parser.add_argument("--cost-size", type=int, default=128, help="input side for FLOPs and throughput")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs for throughput (median)")
    parser.add_argument("--wandb-mode", choices=["offline", "online", "disabled"], default="offline")
    parser.add_argument("--wandb-project", default="srformer-compare")
    parser.add_argument("--cache-dir", default=None, help="decoded-image cache (default: ~/.cache/srformer)")
    parser.add_argument("--no-cache", action="store_true", help="use a temporary cache, removed afterwards")
    parser.add_argument(
        "--degradation",
        default=BICUBIC_LR,
        help=f"how the LR is made from the HR: {', '.join(degradation_names())} (default: bicubic)",
    )
    args = parser.parse_args(argv)
    check_degradation(args.degradation)
    if args.scale < 1:
        raise SRFormerError(f"--scale must be a positive integer, got {args.scale}")
    for folder in args.data:
        if not folder.is_dir():
            raise SRFormerError(f"data folder not found: {folder}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    methods = build_methods(args.models, args.scale, device, args.tile or None, args.cost_size, args.repeats)
    with tempfile.TemporaryDirectory(prefix="srformer-compare-") as tmp:
        cache = ImageCache(Path(tmp) if args.no_cache else Path(args.cache_dir or default_cache_dir() / "decoded"))
        rows = evaluate(methods, args.data, args.scale, cache, device, args.crop, args.degradation)
    datasets = list(dict.fromkeys(row.dataset for row in rows))
    table = markdown_table(methods, datasets, args.scale, device)
    print(f"LR: {args.degradation}\n{table}")
    names = [m.name for m in methods]
    for row in rows:
        path = args.output / "grids" / row.dataset / f"{Path(row.name).stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        grid_image(row, names).save(path)
    config = {
        "models": args.models,
        "data": [str(d) for d in args.data],
        "scale": args.scale,
        "degradation": args.degradation,
        "table": table,
    }
    run_dir = log_wandb(rows, methods, datasets, config, args.wandb_mode, args.wandb_project, args.output)
    print(f"\ngrids: {args.output / 'grids'}" + (f"; wandb run: {run_dir}" if run_dir else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
