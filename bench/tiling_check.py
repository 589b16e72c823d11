"""Tiled against untiled upscaling on a benchmark set, with the classical protocol (issue: no seams, <= 0.01 dB).

python bench/tiling_check.py --model srformer/weights/srformer_x4.safetensors --data ../shared/data/benchmark/B100 --tile 64
"""

from __future__ import annotations

import argparse

import numpy as np

from srformer.checkpoint import load_model
from srformer.data.cache import ImageCache, default_cache_dir
from srformer.data.datasets import EvalDataset, find_pairs
from srformer.inference import upscale_tensor
from srformer.metrics import psnr_y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="srformer/weights/srformer_x4.safetensors")
    parser.add_argument("--data", default="../shared/data/benchmark/B100")
    parser.add_argument("--tile", type=int, default=64, help="LR tile side (small tiles stress the blending)")
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    args = parser.parse_args()

    model = load_model(args.model)
    scale = model.scale
    items = ImageCache(default_cache_dir()).prepare_all(find_pairs(args.data, scale), scale, what=args.data)
    images = EvalDataset(items[: args.limit], scale)
    untiled, tiled = [], []
    for index in range(len(images)):
        sample = images[index]
        lr, hr = sample["lr"][None], sample["hr"][None]
        untiled.append(float(psnr_y(upscale_tensor(model, lr, tile=None), hr, scale)[0]))
        tiled.append(float(psnr_y(upscale_tensor(model, lr, tile=args.tile), hr, scale)[0]))
    diff = np.array(tiled) - np.array(untiled)
    print(
        f"{len(images)} images, x{scale}, LR tile {args.tile}: untiled {np.mean(untiled):.4f} dB, "
        f"tiled {np.mean(tiled):.4f} dB, mean difference {diff.mean():+.5f} dB, "
        f"largest per-image |difference| {np.abs(diff).max():.5f} dB"
    )


if __name__ == "__main__":
    main()
