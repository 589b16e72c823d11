"""Comparing models side by side, as ``srformer compare`` reports it: protocol scores, cost, crops and W&B runs.

Every model, and MATLAB bicubic as the baseline, is scored on every benchmark folder with the project's
protocol (:mod:`srformer.evaluation`); :func:`markdown_table` puts PSNR/SSIM per dataset next to parameters,
FLOPs per output pixel and throughput; :func:`per_image_table` and :func:`per_image_csv` give each image's
scores; :func:`grid_image` draws one grid of crops per image (bicubic | model 1 | ... | HR; the crop is the
image's most textured region, where methods differ most); :func:`log_wandb` logs one W&B run per method, all
in one group, each with the same crop keys, so W&B's run comparison lines them up.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor, nn

from srformer.data.benchmark_degradations import BICUBIC as BICUBIC_LR
from srformer.data.cache import ImageCache
from srformer.errors import SRFormerError
from srformer.handle import BICUBIC, ModelHandle, matlab_bicubic_upscaler, model_upscaler, open_model
from srformer.pixels import to_uint8
from srformer.profiling import count_parameters, flops_per_output_pixel, seconds_per_call
from srformer.scoring import Upscaler, dataset_name, mean_scores, score_folder
from srformer.tracking import artifact_reference


@dataclass
class Method:
    """A model (or bicubic) under comparison, with its cost figures and per-dataset scores (per image, in the
    datasets' order). ``name`` is unique among the compared methods."""

    name: str
    upscale: Upscaler  # built for the compared scale
    params: int | None = None
    flops_per_px: float | None = None
    mpix_per_s: float | None = None
    psnr: dict[str, list[float]] = field(default_factory=dict)
    ssim: dict[str, list[float]] = field(default_factory=dict)
    model: str | None = None  # the loaded model's descriptor name ("srformer tiny x4", "SwinIR x4"); None: bicubic
    handle: ModelHandle | None = None  # the model; None: bicubic
    given: str | None = None  # the reference as the user wrote it (a path, a shipped name, a W&B artifact)


@dataclass
class ImageRow:
    """One image of one dataset: crops (uint8 ``(h, w, 3)``) and scores per method."""

    dataset: str
    name: str
    hr_crop: np.ndarray
    crops: dict[str, np.ndarray] = field(default_factory=dict)
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)


def model_label(path: str, taken: set[str]) -> str:
    """Short unique name of a model: the file stem, the run folder's name for ``best``/``last``, or for a W&B
    artifact reference its ``name:alias``."""
    reference = artifact_reference(path)
    if reference is not None:
        label = reference.rsplit("/", 1)[-1]
    else:
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
    """The ``box`` (top, left, side) of ``image`` ``(1, 3, H, W)`` (float in [0, 1] or uint8) -> ``(side, side, 3)``
    uint8 array."""
    top, left, side = box
    patch = to_uint8(image[0, :, top : top + side, left : left + side])
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


def score_methods(
    methods: list[Method],
    folders: list[Path],
    scale: int,
    cache: ImageCache,
    device: torch.device,
    crop_size: int,
    degradation: str = BICUBIC_LR,
) -> list[ImageRow]:
    """Score every method on every image of every folder (LR made by ``degradation``) through
    :func:`srformer.scoring.score_folder`; fills each method's per-image ``psnr``/``ssim`` and returns each
    image's crops (the HR's most textured ``crop_size`` square, the same box for every method) and scores."""
    names = [method.name for method in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    upscalers = {method.name: method.upscale for method in methods}
    rows: list[ImageRow] = []
    for folder in folders:
        dataset = dataset_name(folder)
        for method in methods:
            method.psnr[dataset], method.ssim[dataset] = [], []
        for image in score_folder(upscalers, folder, scale, cache, device, degradation):
            box = texture_crop_box(image.hr, crop_size)
            row = ImageRow(dataset, image.name, crop_uint8(image.hr, box))
            for method in methods:
                psnr, ssim = image.scores[method.name]
                method.psnr[dataset].append(psnr)
                method.ssim[dataset].append(ssim)
                row.crops[method.name] = crop_uint8(image.sr[method.name], box)
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
        means = [mean_scores(zip(method.psnr[d], method.ssim[d], strict=True)) for d in datasets]
        cells += [f"{psnr:.2f} / {ssim:.4f}" for psnr, ssim in means]
        cells.append(method.model or "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_image_table(rows: list[ImageRow], method_names: list[str]) -> str:
    """A markdown row per image: each method's PSNR / SSIM, the method ahead on PSNR, and how far ahead of the
    next (dB): where one checkpoint wins and loses, which a dataset's mean hides."""
    header = ["dataset", "image", *method_names, "ahead (dB)"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for row in rows:
        cells = [row.dataset, row.name] + [f"{row.scores[m][0]:.2f} / {row.scores[m][1]:.4f}" for m in method_names]
        ranked = sorted(method_names, key=lambda m: row.scores[m][0], reverse=True)
        lead = row.scores[ranked[0]][0] - row.scores[ranked[1]][0] if len(ranked) > 1 else 0.0
        cells.append(f"{ranked[0]} +{lead:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_image_csv(rows: list[ImageRow], method_names: list[str]) -> str:
    """``dataset,image,method,psnr_y,ssim_y``, a line per image and method (full precision), for spreadsheets."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["dataset", "image", "method", "psnr_y", "ssim_y"])
    for row in rows:
        writer.writerows([row.dataset, row.name, m, *row.scores[m]] for m in method_names)
    return text.getvalue()


def method_config(method: Method, scale: int) -> dict[str, Any]:
    """What ``method`` is, for its run's config: architecture, scale, cost, and its source (path or artifact
    version)."""
    handle = method.handle
    if handle is None or handle.descriptor is None:
        return {"name": method.name, "architecture": "bicubic (MATLAB)", "scale": scale, "params": 0}
    descriptor = handle.descriptor
    return {
        "name": method.name,
        "model": method.model,
        "architecture": descriptor.architecture,
        "preset": descriptor.preset,
        "scale": descriptor.scale,
        "params": method.params,
        "flops_per_px": method.flops_per_px,
        "source": method.given,
        "file": str(descriptor.path),
        "artifact": None if handle.artifact is None else handle.source,
    }


def run_summary(method: Method, datasets: list[str]) -> dict[str, float]:
    """``{dataset}/psnr_y`` and ``{dataset}/ssim_y`` (means over the dataset's images), ``psnr_y`` and ``ssim_y``
    (means of the datasets' means, as papers report several benchmarks) and ``mpix_per_s`` when measured."""
    summary: dict[str, float] = {}
    means = [mean_scores(zip(method.psnr[dataset], method.ssim[dataset], strict=True)) for dataset in datasets]
    for dataset, (psnr, ssim) in zip(datasets, means, strict=True):
        summary[f"{dataset}/psnr_y"], summary[f"{dataset}/ssim_y"] = psnr, ssim
    summary["psnr_y"], summary["ssim_y"] = mean_scores(means)
    if method.mpix_per_s is not None:
        summary["mpix_per_s"] = method.mpix_per_s
    return summary


def comparison_table(rows: list[ImageRow], methods: list[Method]) -> Any:
    """A ``wandb.Table`` with a row per image and method: scores, the method's crop and the HR crop."""
    import wandb

    table = wandb.Table(columns=["dataset", "image", "method", "psnr_y", "ssim_y", "crop", "hr_crop"])
    for row in rows:
        hr_crop = wandb.Image(row.hr_crop)
        for method in methods:
            psnr, ssim = row.scores[method.name]
            table.add_data(row.dataset, row.name, method.name, psnr, ssim, wandb.Image(row.crops[method.name]), hr_crop)
    return table


def log_wandb(
    rows: list[ImageRow],
    methods: list[Method],
    datasets: list[str],
    config: dict,
    mode: str,
    project: str,
    group: str,
    out: Path,
    entity: str | None = None,
) -> list[str]:
    """One W&B run per method (bicubic first), named by its label, all in ``group`` with job type ``compare``,
    so that W&B's run comparison lines them up; returns the run folders (none when ``mode`` is disabled).

    Each run has ``config`` plus ``method`` (:func:`method_config`), the summary of :func:`run_summary`, and,
    under the same keys in every run, each image's crop (the same box for every method) as
    ``crops/{dataset}/{image}`` and the HR crop as ``hr/{dataset}/{image}``. A run whose model came from a
    W&B artifact declares it as its input (``use_artifact``: the lineage graph links the training run). The
    bicubic run also holds ``comparison`` (:func:`comparison_table`), every method in one table, handy offline.
    """
    if mode == "disabled":
        return []
    import wandb

    run_dirs = []
    for method in methods:
        try:  # an absolute dir: wandb resolves a relative one against the folder of the process's first run
            run = wandb.init(
                project=project, entity=entity, group=group, name=method.name, job_type="compare", mode=mode,
                dir=str(out.resolve()), config={**config, "method": method_config(method, config["scale"])},
                reinit="finish_previous",
            )  # fmt: skip
        except wandb.errors.Error as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise SRFormerError(f"W&B run could not start ({reason}); the scores and grids above are complete") from err
        try:
            if method.handle is not None and method.handle.artifact is not None:
                run.use_artifact(method.handle.artifact)
            run.summary.update(run_summary(method, datasets))
            media: dict[str, Any] = {}
            for row in rows:
                psnr, ssim = row.scores[method.name]
                key = f"{row.dataset}/{Path(row.name).stem}"
                caption = f"{method.name}: {psnr:.2f} dB / {ssim:.4f}"
                media[f"crops/{key}"] = wandb.Image(row.crops[method.name], caption=caption)
                media[f"hr/{key}"] = wandb.Image(row.hr_crop, caption="HR")
            if method.name == BICUBIC:
                media["comparison"] = comparison_table(rows, methods)
            run.log(media)
            run_dirs.append(run.dir)
        finally:
            run.finish()
    return run_dirs


def build_methods(
    models: list[str],
    scale: int,
    device: torch.device,
    tile: int | None,
    cost_side: int,
    repeats: int,
    wandb_mode: str = "offline",
) -> list[Method]:
    """Bicubic, then every model :func:`srformer.handle.open_model` opens (ours, community checkpoints such as
    SwinIR's ``.pth``, shipped names, W&B artifact references, downloaded unless ``wandb_mode`` is offline),
    each labelled by :func:`model_label`, with its cost measured."""
    methods = [Method(BICUBIC, matlab_bicubic_upscaler(scale))]
    taken: set[str] = set()
    for given in models:
        if str(given).strip().lower() == BICUBIC:
            continue  # named on the command line too: it is the baseline, already the first method
        handle = open_model(given, scale=scale, device=device, wandb_mode=wandb_mode)
        name = model_label(given if handle.artifact is not None else str(handle.path), taken)
        params, flops, speed = measure_cost(handle.module, scale, device, cost_side, repeats)
        upscale = model_upscaler(handle, tile)
        methods.append(Method(name, upscale, params, flops, speed, model=handle.name, handle=handle, given=given))
    return methods
