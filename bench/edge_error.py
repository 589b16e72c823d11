"""Where a model's error lies: Y error near the HR image's edges against the rest, per image, models side by side.

    python bench/heldout_photos.py /tmp/heldout
    python bench/edge_error.py x4 bench/campaign/default-2/light_240m.safetensors --data /tmp/heldout --scale 4

Tells a different edge prior (the error near edges changes while flat areas hold, as on `brick`'s soft mortar
lines between the campaign's checkpoints) from lost texture or a brightness bias (the flat areas' error, and
the mean error). Scoring is the protocol's (:mod:`srformer.scoring`: LR by MATLAB bicubic, SR rounded to uint8,
Y, ``scale`` border pixels cropped). "Near an edge": within 3 pixels of a HR pixel whose Y Sobel magnitude
(kornia, on 0-255 levels) exceeds ``--threshold``. RMS figures are in Y levels (0-255 scale).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import kornia
import torch
import torch.nn.functional as F

from srformer.data.cache import ImageCache
from srformer.handle import matlab_bicubic_upscaler, model_upscaler, open_model
from srformer.metrics import to_y
from srformer.scoring import score_folder

DILATION = 7  # "within 3 pixels": a 7x7 max filter over the thresholded magnitude


def edge_mask(hr_y: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, 1, H, W) Y on the 0-255 scale -> (B, 1, H, W) bool: pixels within 3 of a strong HR gradient."""
    magnitude = kornia.filters.sobel(hr_y.float(), normalized=False)
    strong = (magnitude > threshold).float()
    return F.max_pool2d(strong, DILATION, stride=1, padding=DILATION // 2) > 0


def error_split(sr: torch.Tensor, hr: torch.Tensor, border: int, threshold: float) -> dict[str, float]:
    """RMS Y error near edges and elsewhere, the mean error and the edge fraction of one (1, 3, H, W) pair."""
    sr_y, hr_y = to_y(sr), to_y(hr)
    if border:
        sr_y, hr_y = sr_y[..., border:-border, border:-border], hr_y[..., border:-border, border:-border]
    near = edge_mask(hr_y, threshold)
    error = sr_y - hr_y
    return {
        "edge rms": float(error[near].pow(2).mean().sqrt()) if near.any() else float("nan"),
        "flat rms": float(error[~near].pow(2).mean().sqrt()) if (~near).any() else float("nan"),
        "mean": float(error.mean()),
        "edge share": float(near.float().mean()),
    }


def label(given: str) -> str:
    """A shipped name as given; a file as ``folder/stem`` (the campaign's points share their stems)."""
    path = Path(given)
    return f"{path.parent.name}/{path.stem}" if path.exists() else given


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="shipped names or weight files (bicubic is always the first)")
    parser.add_argument("--data", nargs="+", required=True, help="folders of HR images")
    parser.add_argument("--scale", type=int, required=True)
    parser.add_argument("--threshold", type=float, default=60.0, help="Sobel magnitude of an edge (Y levels)")
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    upscalers = {"bicubic": matlab_bicubic_upscaler(args.scale)}
    for given in args.models:
        upscalers[label(given)] = model_upscaler(open_model(given, scale=args.scale, device=device))
    print("Each cell: Y-PSNR (dB), RMS error near edges / elsewhere, mean error (Y levels).\n")
    print("| image | near edges | " + " | ".join(upscalers) + " |")
    print("|---|---:|" + "---:|" * len(upscalers))
    with tempfile.TemporaryDirectory() as cache_root:
        for folder in args.data:
            for image in score_folder(upscalers, folder, args.scale, ImageCache(cache_root), device):
                cells, share = [], 0.0
                for method, levels in image.sr.items():
                    split = error_split(levels, image.hr, args.scale, args.threshold)
                    share = split["edge share"]
                    cells.append(
                        f"{image.scores[method][0]:.2f}, {split['edge rms']:.2f} / {split['flat rms']:.2f},"
                        f" {split['mean']:+.2f}"
                    )
                print(f"| {image.dataset}/{image.name} | {share:.2f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
