"""Score a model (or bicubic upscaling) on benchmark folders with the classical SR protocol.

    python -m srformer.evaluate --model bicubic --data ../shared/data/benchmark/Set5 --scale 2 3 4
    python -m srformer.evaluate --model logs/.../checkpoints/best.safetensors --data DIR [DIR ...] --json

For every folder and scale: HR cropped to a multiple of the scale, LR made with the MATLAB bicubic
downscale (or read from the folder's ``LR_bicubic/X{s}``), SR clamped and rounded to uint8, PSNR/SSIM on Y
with ``scale`` border pixels (``--space rgb`` for RGB). Prints a table, or with ``--json`` one JSON object
per dataset and scale: ``{"dataset", "scale", "psnr", "ssim", "images"}``.
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

from srformer.data.cache import ImageCache, default_cache_dir
from srformer.data.datasets import EvalDataset, find_pairs
from srformer.errors import CheckpointError, SRFormerError
from srformer.imresize import imresize
from srformer.metrics import PSNRY, SSIMY, Space

Upscaler = Callable[[Tensor, int], Tensor]
"""(1, 3, h, w) float in [0, 1], scale -> (1, 3, h*s, w*s) float (clamped and rounded afterwards)."""


@dataclass(frozen=True)
class Result:
    dataset: str
    scale: int
    psnr: float
    ssim: float
    images: int


def bicubic_upscaler(lr: Tensor, scale: int) -> Tensor:
    """MATLAB bicubic upscaling of the uint8 LR image, as the published bicubic baselines do."""
    lr_uint8 = lr.mul(255.0).round().to(torch.uint8)
    return imresize(lr_uint8, scale=scale).float().div(255.0)


def model_upscaler(model: nn.Module, tta: bool = False) -> Upscaler:
    """Runs ``model`` on the whole LR image through ``srformer.inference.upscale_tensor`` (no tiles).

    ``tta``: average the 8 flips/rotations (x8 self-ensemble, the "+" rows of EDSR/SwinIR tables).
    """
    from srformer.inference import upscale_tensor  # the inference code loads only when a model is evaluated

    @torch.no_grad()
    def upscale(lr: Tensor, scale: int) -> Tensor:
        return upscale_tensor(model, lr, tta=tta)

    return upscale


def dataset_name(folder: Path) -> str:
    """``Set5`` for ``.../Set5`` and for ``.../Set5/HR``."""
    folder = folder.resolve()
    return folder.parent.name if folder.name == "HR" else folder.name


def evaluate_folder(
    upscaler: Upscaler,
    folder: str | Path,
    scale: int,
    cache: ImageCache,
    device: torch.device,
    space: Space = "y",
) -> Result:
    """Mean PSNR/SSIM of ``upscaler`` over every readable image of ``folder`` at ``scale``."""
    folder = Path(folder)
    items = cache.prepare_all(find_pairs(folder, scale), scale, what=str(folder))
    dataset = EvalDataset(items, scale)
    psnr_metric = PSNRY(border=scale, space=space).to(device)
    ssim_metric = SSIMY(border=scale, space=space).to(device)
    for index in range(len(dataset)):
        sample = dataset[index]
        lr = sample["lr"].unsqueeze(0).to(device)
        hr = sample["hr"].unsqueeze(0).to(device)
        sr = upscaler(lr, scale)
        if sr.shape != hr.shape:
            raise SRFormerError(f"the model made {tuple(sr.shape)} from {sample['name']}, expected {tuple(hr.shape)}")
        psnr_metric.update(sr, hr)
        ssim_metric.update(sr, hr)
    return Result(dataset_name(folder), scale, float(psnr_metric.compute()), float(ssim_metric.compute()), len(dataset))


def _load_upscaler(
    model_arg: str, scales: list[int] | None, device: torch.device, tta: bool = False
) -> tuple[Upscaler, list[int]]:
    if model_arg == "bicubic":
        if tta:
            raise SRFormerError("--tta is for models; bicubic upscaling is the same for every flip and rotation")
        return bicubic_upscaler, scales or [4]
    from srformer.checkpoint import load_model  # the model code loads only when a model is evaluated

    model = load_model(model_arg, device=device)
    if scales and any(s != model.scale for s in scales):
        raise CheckpointError(f"{model_arg} is a x{model.scale} model; it cannot be evaluated at x{scales}")
    return model_upscaler(model, tta), [model.scale]


def format_table(results: list[Result], model: str, space: Space) -> str:
    """A markdown table of the results."""
    channel = "Y" if space == "y" else "RGB"
    lines = [
        f"| dataset | scale | PSNR ({channel}, dB) | SSIM ({channel}) | images |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {r.dataset} | x{r.scale} | {r.psnr:.2f} | {r.ssim:.4f} | {r.images} |" for r in results]
    return f"model: {model}\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m srformer.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="'bicubic', or a .safetensors / .ckpt / run folder")
    parser.add_argument("--data", nargs="+", required=True, help="benchmark folders (HR images, or HR/ + LR_bicubic/)")
    parser.add_argument("--scale", nargs="+", type=int, help="scales (default: the model's; 4 for bicubic)")
    parser.add_argument("--space", choices=["y", "rgb"], default="y", help="score the Y channel (default) or RGB")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--cache-dir", default=None, help="decoded-image cache (default: ~/.cache/srformer)")
    parser.add_argument("--no-cache", action="store_true", help="use a temporary cache, removed afterwards")
    parser.add_argument("--json", action="store_true", help="one JSON object per dataset and scale on stdout")
    parser.add_argument("--tta", action="store_true", help="x8 self-ensemble (flips/rotations), 8 times slower")
    args = parser.parse_args(argv)

    try:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if any(s < 1 for s in args.scale or []):
            raise SRFormerError(f"scales must be positive integers, got {args.scale}")
        upscaler, scales = _load_upscaler(args.model, args.scale, device, args.tta)
        with tempfile.TemporaryDirectory(prefix="srformer-eval-") as tmp:
            cache_root = Path(tmp) if args.no_cache else Path(args.cache_dir or default_cache_dir() / "decoded")
            cache = ImageCache(cache_root)
            results = []
            for folder in args.data:
                for scale in scales:
                    result = evaluate_folder(upscaler, folder, scale, cache, device, args.space)
                    results.append(result)
                    if args.json:
                        print(json.dumps(asdict(result)), flush=True)
    except SRFormerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.json:
        print(format_table(results, args.model + (" (x8 self-ensemble)" if args.tta else ""), args.space))
    return 0


if __name__ == "__main__":
    sys.exit(main())
