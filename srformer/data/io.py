"""Images as uint8 RGB arrays for datasets, on top of :mod:`srformer.imageio` (the one image decoder).

Decoding goes through :func:`srformer.imageio.read_image`, so datasets get the same handling of EXIF
orientation, palette/CMYK/16-bit modes, decompression bombs and broken files as ``infer.py``.
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


def write_image(path: str | os.PathLike, image: np.ndarray | torch.Tensor) -> Path:
    """Write ``(H, W, 3)`` uint8 or ``(3, H, W)`` float in [0, 1] (clamped, rounded) atomically, replacing
    an existing file (datasets and caches rewrite their own files)."""
    if isinstance(image, torch.Tensor):
        if image.dim() != 3:
            raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(image.shape)}")
        rgb = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    else:
        rgb = np.asarray(image, dtype=np.float32) / 255.0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.write_image(path, rgb, overwrite=True)
    return path


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div_(255.0)  # copies: memmaps are read-only
