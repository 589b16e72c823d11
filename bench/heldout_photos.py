"""Write scikit-image's bundled natural photos into a folder, a held-out set for x4 models (none of them is in the
training or benchmark sets), to score with the classical protocol:

    python bench/heldout_photos.py /tmp/heldout
    srformer compare x4 x4_small x4_tiny --data /tmp/heldout --scale 4 -o /tmp/heldout_cmp --wandb-mode disabled

15 images, 172x448 to 660x550: photos (astronaut, chelsea, coffee, rocket), gray photos (camera, moon, coins,
clock), textures (brick, grass, gravel), scanned text (page, text), microscopy (cell, immunohistochemistry).
Synthetic images (checkerboard, colorwheel, logo) and the binary horse are left out; so are the two large
astronomy and retina images (slow on a CPU, and mostly flat).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "moon", "coins", "clock", "brick", "grass",
          "gravel", "page", "text", "cell", "immunohistochemistry")  # fmt: skip


def as_uint8(image: np.ndarray) -> np.ndarray:
    """scikit-image's arrays as 8-bit gray or RGB (``cell`` is float; RGBA loses its alpha)."""
    if image.dtype != np.uint8:
        image = np.round(image.astype(np.float64) / image.max() * 255).astype(np.uint8)
    return image[..., :3] if image.ndim == 3 else image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        Image.fromarray(as_uint8(getattr(data, name)())).save(args.folder / f"{name}.png")
    print(f"wrote {len(PHOTOS)} images to {args.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
