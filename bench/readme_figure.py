"""The README figures: crops of LR (nearest) | bicubic | srformer | HR on photos that ship with scikit-image.

    python bench/readme_figure.py --model srformer/weights/srformer_x4.safetensors -o assets/figure_x4.png
    python bench/readme_figure.py --real-photo --at 30,200 -o assets/figure_real_x4.png

The photos (scikit-image's ``chelsea`` and ``camera``, public domain / CC0) are in neither BSD400 nor the
benchmark sets. LR is the MATLAB bicubic downscale; each crop is the most detailed square of the image, with
its Y-PSNR/SSIM under it (the classical protocol, whole image).

``--real-photo`` makes the LR as a user would have it instead: another scikit-image photo (``astronaut``,
NASA, public domain, by default) shrunk with Pillow's LANCZOS to a thumbnail (192 px wide), saved as JPEG at
quality 40 (Pillow's other defaults, 4:2:0 chroma) and decoded back. That JPEG is upscaled x4 by the default
model and by the real-world model (``--model real``); the figure shows LR (nearest) | default | real-world on
the same crop (``--at TOP,LEFT``, 256 output pixels square; ``30,200`` is the astronaut's face). There is no HR
ground truth for such an input, so there are no scores either.
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from srformer import shipped
from srformer.checkpoint import load_model
from srformer.comparison import BICUBIC, Method, captioned_row, crop_uint8, grid_image, score_methods, texture_crop_box
from srformer.data.cache import ImageCache
from srformer.data.photos import _photo, write_skimage_photos
from srformer.handle import matlab_bicubic_upscaler
from srformer.inference import upscale_tensor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", default="srformer/weights/srformer_x4.safetensors", help="(--real-photo uses x4 and real)"
    )
    parser.add_argument("-o", "--output", type=Path, help="default: assets/figure_x4.png (--real-photo: ..._real_x4)")
    parser.add_argument("--crop", type=int, help="crop side in output pixels (default 96; --real-photo: 256)")
    parser.add_argument(
        "--real-photo",
        action="store_true",
        help="LR = a small JPEG (quality 40) of --photo; panels LR (nearest) | default model | real-world model",
    )
    parser.add_argument("--photo", default="astronaut", help="--real-photo: a scikit-image photo (skimage.data)")
    parser.add_argument("--width", type=int, default=192, help="--real-photo: LR width in pixels")
    parser.add_argument("--quality", type=int, default=40, help="--real-photo: JPEG quality of the LR")
    parser.add_argument(
        "--at",
        type=lambda text: tuple(int(v) for v in text.split(",")),
        help="--real-photo: TOP,LEFT of the crop in output pixels (default: the most detailed square)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.real_photo:
        output = args.output or Path("assets/figure_real_x4.png")
        figure = real_photo_figure(args.photo, args.width, args.quality, args.crop or 256, args.at)
    else:
        output = args.output or Path("assets/figure_x4.png")
        figure = benchmark_figure(args.model, args.crop or 96)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.save(output, optimize=True)
    print(f"wrote {output} ({figure.width}x{figure.height}, {output.stat().st_size // 1024} KB)")


def benchmark_figure(model_path: str, crop: int) -> Image.Image:
    """LR (nearest) | bicubic | srformer | HR crops with scores, one row per validation photo."""
    model = load_model(model_path)
    scale = model.scale
    methods = [
        Method("LR (nearest)", lambda lr: F.interpolate(lr, scale_factor=scale, mode="nearest")),
        Method(BICUBIC, matlab_bicubic_upscaler(scale)),
        Method(f"srformer ({Path(model_path).stem})", lambda lr: upscale_tensor(model, lr)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        _, val_dir = write_skimage_photos(tmp)
        rows = score_methods(methods, [val_dir], scale, ImageCache(Path(tmp) / "cache"), model_device(model), crop)
    return stack_rows([grid_image(row, [m.name for m in methods]) for row in rows])


def real_photo_figure(
    photo: str, width: int, quality: int, crop: int, at: tuple[int, int] | None = None
) -> Image.Image:
    """LR (nearest) | default model | real-world model on one crop of a small JPEG of a scikit-image photo."""
    lr = jpeg_thumbnail(_photo(photo), width, quality)
    lr_tensor = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    models = {"default (x4)": shipped.model_path("x4"), "real-world (real)": shipped.model_path("real")}
    outputs = {}
    with torch.inference_mode():
        for label, path in models.items():
            model = load_model(path)
            outputs[label] = upscale_tensor(model, lr_tensor.to(model_device(model))).cpu()
            scale = model.scale
    nearest = F.interpolate(lr_tensor, scale_factor=scale, mode="nearest")
    # the crop where there is most to see, chosen on a neutral upscale so that no model's output picks it
    box = texture_crop_box(matlab_bicubic_upscaler(scale)(lr_tensor), crop) if at is None else (*at, crop)
    height, width_lr = lr.shape[:2]
    tiles = [(f"LR (nearest x{scale}): {width_lr}x{height} JPEG q{quality}", crop_uint8(nearest, box))]
    tiles += [(f"srformer {label}", crop_uint8(out, box)) for label, out in outputs.items()]
    return captioned_row(tiles, zoom=1, caption_height=16)


def jpeg_thumbnail(image: np.ndarray, width: int, quality: int) -> np.ndarray:
    """``image`` (uint8 HxWx3) shrunk to ``width`` with LANCZOS, saved as a JPEG at ``quality`` and decoded
    back: the small compressed photo a user would have."""
    thumb = Image.fromarray(image)
    thumb = thumb.resize((width, round(thumb.height * width / thumb.width)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.array(Image.open(buffer).convert("RGB"))


def stack_rows(rows: list[Image.Image], gap: int = 6) -> Image.Image:
    """Rows of panels one above the other on white."""
    figure = Image.new("RGB", (max(r.width for r in rows), sum(r.height + gap for r in rows) - gap), "white")
    top = 0
    for row in rows:
        figure.paste(row, (0, top))
        top += row.height + gap
    return figure


def model_device(model):
    return next(model.parameters()).device


if __name__ == "__main__":
    main()
