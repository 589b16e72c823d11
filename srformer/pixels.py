"""The one float -> uint8 conversion: what a saved 8-bit image holds.

Every place that turns float pixels into 8-bit levels (scoring, crops, panels, data caches, MATLAB
``imresize``'s intermediate rounding, the degradation pipeline) goes through :func:`to_uint8`, so an SR image
is scored, shown and saved with the same levels.

Policy: values are clamped to ``[0, peak]`` and scaled to ``[0, 255]``, then rounded to the nearest level,
halves to even (``0.5`` -> 128, as MATLAB's ``im2uint8`` gives too; no other level boundary is a float32
value). The product is computed in float64, where ``x * 255`` is exact for any float32 ``x``, so a value just
below a boundary never rounds up (float32 arithmetic gets about 1 in 10^5 values next to a boundary wrong);
MPS has no float64 and computes in float32. NaN becomes 0, +inf 255, -inf 0: a defined level rather than
whatever the cast of NaN happens to give on a platform (the scoring path, :mod:`srformer.scoring`, scores an
SR image that holds NaN or inf as NaN instead of quietly scoring these levels).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def to_uint8(image: Tensor, peak: float = 1.0) -> Tensor:
    """Float image on the ``[0, peak]`` scale, any shape -> uint8 of the same shape, clamped and rounded.

    ``peak`` is the value that maps to 255: 1 for images in [0, 1], 255 for values already on the 0-255
    scale (``imresize``'s MATLAB-style rounding between its two passes). A uint8 image is returned as it is.
    """
    if image.dtype == torch.uint8:
        return image
    if not image.is_floating_point():
        raise TypeError(f"expected a float image or a uint8 image, got {image.dtype}")
    work_dtype = torch.float32 if image.device.type == "mps" else torch.float64
    work = torch.nan_to_num(image.to(work_dtype), nan=0.0).clamp_(0.0, peak)
    if peak != 255.0:
        work = work.mul_(255.0 / peak)
    return work.round_().to(torch.uint8)


def to_uint8_array(image: np.ndarray, peak: float = 1.0) -> np.ndarray:
    """:func:`to_uint8` for numpy arrays (e.g. ``(H, W, 3)`` float RGB in [0, 1]) -> uint8 array, same shape."""
    return to_uint8(torch.from_numpy(np.array(image, copy=True)), peak).numpy()


def snap_to_uint8_levels(image: Tensor) -> Tensor:
    """Float image in [0, 1], any shape -> float32 holding ``k / 255``: :func:`to_uint8`'s levels as floats,
    what a network sees when it reads the saved 8-bit image back."""
    return to_uint8(image).to(torch.float32).div_(255.0)
