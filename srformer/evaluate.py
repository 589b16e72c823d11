"""Score a model (or bicubic upscaling) on benchmark folders with the classical SR protocol.

    python -m srformer.evaluate --model bicubic --data ../shared/data/benchmark/Set5 --scale 2 3 4
    python -m srformer.evaluate --model logs/.../checkpoints/best.safetensors --data DIR [DIR ...] --json
    python -m srformer.evaluate --model srformer/weights/srformer_x4.safetensors --data DIR --degradation D1 --lpips
    python -m srformer.evaluate --model SwinIR-light_x4.pth --data DIR --scale 4   # a community checkpoint

For every folder and scale: HR cropped to a multiple of the scale, LR made with the MATLAB bicubic
downscale (or read from the folder's ``LR_bicubic/X{s}``), SR clamped and rounded to uint8, PSNR/SSIM on Y
with ``scale`` border pixels (``--space rgb`` for RGB). ``--degradation D1|jpeg30|noise10`` makes the LR
with a fixed, seeded degradation of the HR instead (:mod:`srformer.data.benchmark_degradations`; cached
like the bicubic LR). ``--lpips`` adds LPIPS (AlexNet, torchmetrics) when its backbone weights are on the
machine. Prints a table, or with ``--json`` one JSON object per dataset and scale:
``{"dataset", "scale", "psnr", "ssim", "images", "degradation"}`` (and ``"lpips"`` when measured).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from srformer.data.benchmark_degradations import BICUBIC, check_degradation, degradation_names
from srformer.data.cache import ImageCache, default_cache_dir
from srformer.errors import CheckpointError, SRFormerError, exit_on_user_error, resolve_device
from srformer.imresize import imresize
from srformer.metrics import Space
from srformer.pixels import to_uint8
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


def matlab_bicubic_upscaler(scale: int) -> Upscaler:
    """MATLAB bicubic upscaling by ``scale`` of the uint8 LR image, as the published bicubic baselines do
    (:func:`srformer.imresize.imresize`; not torch's bicubic, whose kernel and borders differ)."""

    def upscale(lr: Tensor) -> Tensor:
        return imresize(to_uint8(lr), scale=scale).float().div(255.0)

    return upscale


def model_upscaler(model: nn.Module, tta: bool = False) -> Upscaler:
    """Runs ``model`` on the whole LR image through ``srformer.inference.upscale_tensor`` (no tiles).

    ``tta``: average the 8 flips/rotations (x8 self-ensemble, the "+" rows of EDSR/SwinIR tables).
    """
    from srformer.inference import upscale_tensor  # the inference code loads only when a model is evaluated

    @torch.no_grad()
    def upscale(lr: Tensor) -> Tensor:
        return upscale_tensor(model, lr, tta=tta)

    return upscale


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


def _load_upscaler(
    model_arg: str, scales: list[int] | None, device: torch.device, tta: bool = False
) -> tuple[Callable[[int], Upscaler], list[int], str]:
    """``(upscaler for a scale, scales, label)``; any model file :func:`srformer.checkpoint.load_any` reads
    (ours or a community checkpoint such as SwinIR's ``.pth``), its scale and label from its descriptor."""
    if model_arg == "bicubic":
        if tta:
            raise SRFormerError("--tta is for models; bicubic upscaling is the same for every flip and rotation")
        return matlab_bicubic_upscaler, scales or [4], "bicubic"
    from srformer.checkpoint import load_any  # the model code loads only when a model is evaluated

    loaded = load_any(model_arg, device=device)
    descriptor = loaded.descriptor
    if scales and any(s != descriptor.scale for s in scales):
        raise CheckpointError(
            f"{model_arg} is a x{descriptor.scale} model; it cannot be evaluated at x{scales} ({descriptor.name})"
        )
    upscaler = model_upscaler(loaded.model, tta)
    return lambda scale: upscaler, [descriptor.scale], f"{descriptor.name} ({model_arg})"


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


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m srformer.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model",
        required=True,
        help="'bicubic', a .safetensors / .ckpt / run folder, or a community checkpoint (SwinIR .pth, ...)",
    )
    parser.add_argument("--data", nargs="+", required=True, help="benchmark folders (HR images, or HR/ + LR_bicubic/)")
    parser.add_argument("--scale", nargs="+", type=int, help="scales (default: the model's; 4 for bicubic)")
    parser.add_argument("--space", choices=["y", "rgb"], default="y", help="score the Y channel (default) or RGB")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--cache-dir", default=None, help="decoded-image cache (default: ~/.cache/srformer)")
    parser.add_argument("--no-cache", action="store_true", help="use a temporary cache, removed afterwards")
    parser.add_argument("--json", action="store_true", help="one JSON object per dataset and scale on stdout")
    parser.add_argument("--tta", action="store_true", help="x8 self-ensemble (flips/rotations), 8 times slower")
    parser.add_argument(
        "--degradation",
        default=BICUBIC,
        help=f"how the LR is made from the HR: {', '.join(degradation_names())} (default: bicubic)",
    )
    parser.add_argument("--lpips", action="store_true", help="also LPIPS (AlexNet), if its weights are present")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    if any(s < 1 for s in args.scale or []):
        raise SRFormerError(f"scales must be positive integers, got {args.scale}")
    check_degradation(args.degradation)
    upscaler_for, scales, label = _load_upscaler(args.model, args.scale, device, args.tta)
    lpips = None
    if args.lpips:
        lpips, reason = lpips_metric(device)
        if lpips is None:
            print(reason, file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="srformer-eval-") as tmp:
        cache_root = Path(tmp) if args.no_cache else Path(args.cache_dir or default_cache_dir() / "decoded")
        cache = ImageCache(cache_root)
        results = []
        for folder in args.data:
            for scale in scales:
                result = evaluate_folder(
                    upscaler_for(scale), folder, scale, cache, device, args.space, args.degradation, lpips
                )
                results.append(result)
                if args.json:
                    print(json.dumps({k: v for k, v in asdict(result).items() if v is not None}), flush=True)
    if not args.json:
        print(format_table(results, label + (" (x8 self-ensemble)" if args.tta else ""), args.space))
    return 0


if __name__ == "__main__":
    sys.exit(main())
