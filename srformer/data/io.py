"""Images as uint8 RGB arrays for datasets, on top of :mod:`srformer.imageio` (the one image decoder).

Decoding goes through :func:`srformer.imageio.read_image`, so datasets get the same handling of EXIF
orientation, palette/CMYK/16-bit modes, decompression bombs and broken files as ``infer.py``; images are
written with :func:`srformer.imageio.write_image`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from srformer import imageio
from srformer.pixels import to_uint8_array

IMAGE_SUFFIXES = tuple(sorted(imageio.INPUT_EXTENSIONS))


def is_image_file(path: Path) -> bool:
    """True when the name ends in a known image suffix (case-insensitive) and is not hidden."""
    return path.suffix.lower() in imageio.INPUT_EXTENSIONS and not path.name.startswith(".")


def read_rgb_uint8(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to ``(H, W, 3)`` uint8 RGB.

    Grayscale images get three equal channels; an alpha channel is dropped; 16-bit images are rounded to
    8 bits. Raises :class:`~srformer.errors.ImageError` for a missing, non-image, corrupt or truncated file.
    """
    return to_uint8_array(imageio.read_image(path).rgb)  # float32 k/255 for 8-bit sources: rounding back is exact


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div_(255.0)  # copies: memmaps are read-only
