"""The one float -> integer-level conversion: what a saved 8-bit (or 16-bit) image holds.

Every place that turns float pixels into levels (scoring, crops, panels, data caches, MATLAB ``imresize``'s
intermediate rounding, the degradation pipeline, and the image writer, :mod:`srformer.imageio`, at 8 and 16
bits) goes through :func:`quantize` (:func:`to_uint8` / :func:`to_uint8_array` are its 8-bit spellings), so an
SR image is scored, shown and saved with the same levels.

Policy: values are clamped to ``[0, peak]`` and scaled to ``[0, 2**bits - 1]``, then rounded to the nearest
level, halves to even (``0.5`` -> 128, as MATLAB's ``im2uint8`` gives too; no other 8-bit level boundary is a
float32 value). The product is computed in float64, where ``x * 255`` and ``x * 65535`` are exact for any
float32 ``x``, so a value just below a boundary never rounds up (float32 arithmetic gets about 1 in 10^5 values
next to a boundary wrong); MPS has no float64 and computes in float32. The float64 work space is at most
:data:`STEP_ELEMENTS` values whatever the image's size: an image of hundreds of megapixels is converted a
piece at a time into its integer result. NaN becomes 0, +inf the top level, -inf 0: a defined level rather
than whatever the cast of NaN happens to give on a platform (the scoring path, :mod:`srformer.scoring`, scores
an SR image that holds NaN or inf as NaN instead of quietly scoring these levels).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

#: Values converted per step: a float64 work space of 512 KiB, however large the image, which stays in the CPU's
#: cache between the steps of the formula (12.6 M values of an array: 0.16 s; steps of 2**20 values: 0.35 s; the
#: writer's former float32 formula on the whole image: 0.26 s; 1 thread, 2 busy cores).
STEP_ELEMENTS = 2**16

#: Integer dtype holding the levels of each supported bit depth.
_DTYPES = {8: (torch.uint8, np.uint8), 16: (torch.uint16, np.uint16)}

ImageT = TypeVar("ImageT", Tensor, np.ndarray)


def quantize(image: ImageT, bits: int = 8, peak: float = 1.0) -> ImageT:
    """Float image on the ``[0, peak]`` scale, any shape, tensor or numpy array -> its levels ``0 .. 2**bits - 1``
    (uint8 for 8 bits, uint16 for 16), same shape, same kind (and device), clamped and rounded.

    ``peak`` is the value that maps to the top level: 1 for images in [0, 1], the top level itself for values
    already on the level scale (``imresize``'s MATLAB-style rounding between its two passes). An image already
    of the levels' dtype is returned as it is.
    """
    if bits not in _DTYPES:
        raise ValueError(f"levels of 8 or 16 bits, not {bits}")
    tensor_dtype, array_dtype = _DTYPES[bits]
    as_array = isinstance(image, np.ndarray)
    if image.dtype == (array_dtype if as_array else tensor_dtype):
        return image
    if not (image.dtype.kind == "f" if as_array else image.is_floating_point()):
        raise TypeError(f"expected a float image or a uint{bits} image, got {image.dtype}")
    scale = (2**bits - 1) / peak
    if as_array:
        levels = np.empty(image.shape, dtype=array_dtype)
        work = np.empty(0)
        for source, target in _pieces(image, levels, image.flags.c_contiguous):
            if work.size < source.size:
                work = np.empty(source.size)  # float64, reused: one piece for the whole image
            piece = work[: source.size].reshape(source.shape)
            np.copyto(piece, source)
            np.copyto(target, _rounded(piece, peak, scale), casting="unsafe")  # whole numbers: exact
        return levels
    image = image.detach()
    levels = torch.empty(image.shape, dtype=tensor_dtype, device=image.device)
    work_dtype = torch.float32 if image.device.type == "mps" else torch.float64
    for source, target in _pieces(image, levels, image.is_contiguous()):
        target.copy_(_rounded(source.to(work_dtype, copy=True), peak, scale))
    return levels


def _rounded(work: ImageT, peak: float, scale: float) -> ImageT:
    """The policy, in place on a float64 (MPS: float32) copy: NaN -> 0, clamp to [0, peak], scale, round half
    to even. numpy's own loops for arrays: on busy cores torch's thread pool made the writer's conversion of
    small pieces a hundred times slower."""
    if isinstance(work, np.ndarray):
        work = np.clip(np.nan_to_num(work, copy=False, nan=0.0), 0.0, peak, out=work)
        return np.rint(np.multiply(work, scale, out=work) if scale != 1.0 else work, out=work)
    work = work.nan_to_num_(nan=0.0).clamp_(0.0, peak)
    return (work.mul_(scale) if scale != 1.0 else work).round_()


def _pieces(image: ImageT, levels: ImageT, contiguous: bool) -> Iterator[tuple[ImageT, ImageT]]:
    """``(piece of image, the same piece of levels)`` of at most about :data:`STEP_ELEMENTS` values each: runs
    of the flattened image when it is contiguous (a view), else runs of whole rows of its first axis."""
    if contiguous or image.ndim == 0:
        image, levels = image.reshape(-1), levels.reshape(-1)
    row = math.prod(image.shape[1:])
    step = max(1, STEP_ELEMENTS // max(row, 1))
    for start in range(0, image.shape[0], step):
        yield image[start : start + step], levels[start : start + step]


def to_uint8(image: Tensor, peak: float = 1.0) -> Tensor:
    """:func:`quantize` to 8 bits: float image on the ``[0, peak]`` scale, any shape -> uint8, same shape."""
    return quantize(image, 8, peak)


def to_uint8_array(image: np.ndarray, peak: float = 1.0) -> np.ndarray:
    """:func:`quantize` to 8 bits for numpy arrays (e.g. ``(H, W, 3)`` float RGB in [0, 1]) -> uint8, same shape."""
    return quantize(image, 8, peak)


def snap_to_uint8_levels(image: Tensor) -> Tensor:
    """Float image in [0, 1], any shape -> float32 holding ``k / 255``: :func:`to_uint8`'s levels as floats,
    what a network sees when it reads the saved 8-bit image back."""
    return to_uint8(image).to(torch.float32).div_(255.0)
