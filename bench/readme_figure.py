"""The README figure: crops of LR (nearest) | bicubic | srformer | HR on photos that ship with scikit-image.

    python bench/readme_figure.py --model srformer/weights/srformer_x4.safetensors -o assets/figure_x4.png

The photos (scikit-image's ``chelsea`` and ``camera``, public domain / CC0) are in neither BSD400 nor the
benchmark sets. LR is the MATLAB bicubic downscale; each crop is the most detailed square of the image, with
its Y-PSNR/SSIM under it (the classical protocol, whole image).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch.nn.functional as F
from PIL import Image

from srformer.checkpoint import load_model
from srformer.compare import BICUBIC, Method, evaluate, grid_image
from srformer.data.cache import ImageCache
from srformer.data.photos import write_skimage_photos
from srformer.evaluate import bicubic_upscaler
from srformer.inference import upscale_tensor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="srformer/weights/srformer_x4.safetensors")
    parser.add_argument("-o", "--output", type=Path, default=Path("assets/figure_x4.png"))
    parser.add_argument("--crop", type=int, default=96, help="HR crop side in pixels")
    args = parser.parse_args()

    model = load_model(args.model)
    scale = model.scale
    methods = [
        Method("LR (nearest)", lambda lr: F.interpolate(lr, scale_factor=scale, mode="nearest")),
        Method(BICUBIC, lambda lr: bicubic_upscaler(lr, scale)),
        Method(f"srformer ({Path(args.model).stem})", lambda lr: upscale_tensor(model, lr)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        _, val_dir = write_skimage_photos(tmp)
        rows = evaluate(methods, [val_dir], scale, ImageCache(Path(tmp) / "cache"), model_device(model), args.crop)
    grids = [grid_image(row, [m.name for m in methods]) for row in rows]
    figure = Image.new("RGB", (max(g.width for g in grids), sum(g.height + 6 for g in grids) - 6), "white")
    top = 0
    for grid in grids:
        figure.paste(grid, (0, top))
        top += grid.height + 6
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.output)
    print(f"wrote {args.output} ({figure.width}x{figure.height})")


def model_device(model):
    return next(model.parameters()).device


if __name__ == "__main__":
    main()
