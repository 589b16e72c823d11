"""Scoring an upscaler on benchmark folders with the classical SR protocol, as ``srformer evaluate`` reports it.

For every folder and scale: HR cropped to a multiple of the scale, LR made with the MATLAB bicubic
downscale (or read from the folder's ``LR_bicubic/X{s}``), or with a fixed, seeded degradation of the HR
(:mod:`srformer.data.benchmark_degradations`), SR clamped and rounded to uint8, PSNR/SSIM on Y with ``scale``
border pixels (RGB on request); LPIPS (AlexNet, torchmetrics) when its backbone weights are on the machine.
An upscaler is ``lr -> sr`` (:data:`srformer.scoring.Upscaler`): :func:`srformer.handle.model_upscaler` of a
model or of bicubic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from srformer.data.benchmark_degradations import BICUBIC
from srformer.data.cache import ImageCache
from srformer.metrics import Space
from srformer.scoring import Upscaler, dataset_name, mean_scores, score_folder


@dataclass(frozen=True)
class Result:
    dataset: str
    scale: int
    psnr: float
    ssim: float
    images: int
    degradation: str = BICUBIC
    lpips: float | None = None


def lpips_metric(device: torch.device) -> tuple[nn.Module | None, str]:
    """torchmetrics' LPIPS (AlexNet backbone, images in [0, 1]) when the backbone weights are already in
    torch's hub cache, else ``None`` and one sentence saying why (nothing is downloaded)."""
    from torchvision.models import AlexNet_Weights

    weights = Path(torch.hub.get_dir()) / "checkpoints" / Path(AlexNet_Weights.IMAGENET1K_V1.url).name
    if not weights.is_file():
        return None, f"LPIPS skipped: its AlexNet backbone weights are not on this machine ({weights})."
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        return LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True).to(device), ""
    except Exception as error:  # a broken install must not cost the PSNR/SSIM scores
        return None, f"LPIPS skipped: torchmetrics could not build it ({type(error).__name__}: {error})."


def evaluate_folder(
    upscaler: Upscaler,
    folder: str | Path,
    scale: int,
    cache: ImageCache,
    device: torch.device,
    space: Space = "y",
    degradation: str = BICUBIC,
    lpips: nn.Module | None = None,
) -> Result:
    """Mean PSNR/SSIM (and LPIPS with an ``lpips`` metric) of ``upscaler`` (built for ``scale``) over every
    readable image of ``folder`` at ``scale``, the LR made by ``degradation``
    (:func:`srformer.scoring.score_folder`)."""
    scores: list[tuple[float, float]] = []
    lpips_values: list[float] = []
    for image in score_folder({"the model": upscaler}, folder, scale, cache, device, degradation, space):
        scores.append(image.scores["the model"])
        if lpips is not None:  # on the SR as scored: uint8 levels, as a saved file
            lpips_values.append(float(lpips(image.sr["the model"].float().div(255.0), image.hr)))
    psnr, ssim = mean_scores(scores)
    return Result(
        dataset_name(folder),
        scale,
        psnr,
        ssim,
        len(scores),
        degradation,
        sum(lpips_values) / len(lpips_values) if lpips_values else None,
    )


def format_table(results: list[Result], model: str, space: Space) -> str:
    """A markdown table of the results (an LPIPS column when any result has one)."""
    channel = "Y" if space == "y" else "RGB"
    with_lpips = any(r.lpips is not None for r in results)
    lines = [
        f"| dataset | scale | LR | PSNR ({channel}, dB) | SSIM ({channel}) |" + (" LPIPS |" if with_lpips else "")
        + " images |",
        "| --- | --- | --- | --- | --- |" + (" --- |" if with_lpips else "") + " --- |",
    ]  # fmt: skip
    for r in results:
        lpips = (" - |" if r.lpips is None else f" {r.lpips:.4f} |") if with_lpips else ""
        lines.append(
            f"| {r.dataset} | x{r.scale} | {r.degradation} | {r.psnr:.2f} | {r.ssim:.4f} |{lpips} {r.images} |"
        )
    return f"model: {model}\n" + "\n".join(lines)
