"""The one scoring path: upscale every image once, round its SR to uint8 once, score it with the protocol.

``srformer evaluate``, ``srformer compare``, the benchmarks and the training validation
all score through here, so the same model on the same images gets the same per-image numbers everywhere:

* :func:`score_sr` scores a batch of SR images against their HR: SR clamped and rounded to uint8 levels
  (:func:`srformer.pixels.to_uint8`), Y-channel PSNR/SSIM with ``border`` pixels cropped
  (:mod:`srformer.metrics`); the training module calls it on its validation batches.
* :func:`score_dataset` / :func:`score_folder` run named :data:`Upscaler` s over an evaluation set one image
  at a time and yield a :class:`ScoredImage` per image (its scores per method, its HR and the methods'
  uint8 SR, from which ``compare`` cuts its crops and ``evaluate`` computes LPIPS).
* The mean over a set is the mean of the per-image values, summed in order (:func:`mean_scores`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from srformer.data.benchmark_degradations import BICUBIC, prepare_all_degraded
from srformer.data.cache import ImageCache
from srformer.data.datasets import EvalDataset, find_pairs
from srformer.errors import SRFormerError
from srformer.metrics import Space, psnr, ssim
from srformer.pixels import to_uint8

Upscaler = Callable[[Tensor], Tensor]
"""LR ``(1, 3, h, w)`` float in [0, 1] -> SR ``(1, 3, s*h, s*w)`` float (any range: it is clamped and rounded
when scored). The scale is bound when the upscaler is built."""


class ScoredSR(NamedTuple):
    """:func:`score_sr`'s result for a batch of B images."""

    sr: Tensor  # (B, 3, H, W) uint8: the SR as scored (and as a saved 8-bit file would hold it)
    psnr: Tensor  # (B,) float64, dB
    ssim: Tensor  # (B,) float64


@dataclass
class ScoredImage:
    """One image of an evaluation set, scored for every method."""

    dataset: str
    name: str
    hr: Tensor  # (1, 3, H, W) float in [0, 1]
    sr: dict[str, Tensor] = field(default_factory=dict)  # method -> (1, 3, H, W) uint8, as scored
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)  # method -> (PSNR dB, SSIM)


def score_sr(sr: Tensor, hr: Tensor, border: int, space: Space = "y") -> ScoredSR:
    """Score SR ``(B, 3, H, W)`` float against HR ``(B, 3, H, W)`` (float in [0, 1] or uint8) per image.

    The SR is rounded to uint8 once and scored on ``space`` (Y by default) with ``border`` pixels (the scale)
    cropped from each side. An image whose SR holds NaN or inf scores NaN: rounding would give it levels
    (:mod:`srformer.pixels`' policy) and a plausible-looking score.
    """
    finite = torch.isfinite(sr).flatten(1).all(dim=1)
    levels = to_uint8(sr)
    psnr_values = psnr(levels, hr, border, space)
    ssim_values = ssim(levels, hr, border, space)
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=psnr_values.device)
    finite = finite.to(psnr_values.device)
    return ScoredSR(levels, torch.where(finite, psnr_values, nan), torch.where(finite, ssim_values, nan))


def check_sr_shape(sr: Tensor, hr: Tensor, method: str, image: str) -> None:
    """Raise one sentence (:class:`SRFormerError`) when ``method`` made an SR of another shape than the HR."""
    if sr.shape != hr.shape:
        raise SRFormerError(f"{method} made {tuple(sr.shape)} from {image}, expected {tuple(hr.shape)}")


def score_dataset(
    upscalers: Mapping[str, Upscaler],
    dataset: EvalDataset,
    device: torch.device,
    dataset_name: str = "",
    space: Space = "y",
) -> Iterator[ScoredImage]:
    """Every image of ``dataset`` through every named upscaler once, scored with ``border = dataset.scale``.

    Yields one :class:`ScoredImage` per image, in the dataset's order; keep what you need of it (the SR
    images are not kept between images).
    """
    for index in range(len(dataset)):
        sample = dataset[index]
        lr = sample["lr"].unsqueeze(0).to(device)
        hr = sample["hr"].unsqueeze(0).to(device)
        image = ScoredImage(dataset_name, sample["name"], hr)
        for method, upscale in upscalers.items():
            sr = upscale(lr)
            check_sr_shape(sr, hr, method, sample["name"])
            scored = score_sr(sr, hr, dataset.scale, space)
            image.sr[method] = scored.sr
            image.scores[method] = (float(scored.psnr[0]), float(scored.ssim[0]))
        yield image


def dataset_name(folder: str | Path) -> str:
    """``Set5`` for ``.../Set5`` and for ``.../Set5/HR``."""
    folder = Path(folder).resolve()
    return folder.parent.name if folder.name == "HR" else folder.name


def benchmark_dataset(folder: str | Path, scale: int, cache: ImageCache, degradation: str = BICUBIC) -> EvalDataset:
    """The (LR, HR) images of a benchmark folder at ``scale``, the LR made by ``degradation`` (cached)."""
    pairs = find_pairs(folder, scale)
    return EvalDataset(prepare_all_degraded(cache, pairs, scale, degradation, what=str(folder)), scale)


def score_folder(
    upscalers: Mapping[str, Upscaler],
    folder: str | Path,
    scale: int,
    cache: ImageCache,
    device: torch.device,
    degradation: str = BICUBIC,
    space: Space = "y",
) -> Iterator[ScoredImage]:
    """:func:`score_dataset` on a benchmark folder at ``scale``: HR cropped to a multiple of the scale, LR
    made by ``degradation`` (MATLAB bicubic by default) and cached in ``cache``."""
    dataset = benchmark_dataset(folder, scale, cache, degradation)
    yield from score_dataset(upscalers, dataset, device, dataset_name(folder), space)


def mean_scores(scores: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """(mean PSNR, mean SSIM) of per-image ``(psnr, ssim)`` pairs: the mean of the per-image values."""
    scores = list(scores)
    if not scores:
        raise SRFormerError("no images were scored (none of them could be read)")
    return sum(p for p, _ in scores) / len(scores), sum(s for _, s in scores) / len(scores)
