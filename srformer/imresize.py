"""MATLAB-compatible bicubic resize (``imresize(A, scale, 'bicubic')``) in pure torch.

Every LR image of the classical SR protocol is made with MATLAB's ``imresize``, so this follows its
algorithm exactly:

* cubic convolution kernel with ``a = -0.5``, 4 taps;
* when downscaling, the kernel is stretched by ``1 / scale`` (antialiasing), so it has ``4 / scale`` taps;
* output pixel ``x`` (1-based) samples input coordinate ``u = x / scale + 0.5 * (1 - 1 / scale)``;
* out-of-range taps are mirrored (MATLAB's ``'symmetric'`` padding: ``... 2 1 | 1 2 3 ... n | n n-1 ...``);
* output size ``ceil(in * scale)``;
* the dimension with the smaller scale is resized first (height first when equal), and uint8 images are
  rounded and clamped to uint8 after each dimension, as MATLAB's ``imresizemex`` returns its input's class.

Weights and source indices are computed once per (length, scale) in float64 and cached; each dimension is
then one gather and one weighted sum, batched over everything else, on CPU or CUDA.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from srformer.pixels import to_uint8

# Output size ceil(in * scale) is computed with this slack, so that for example 255 * (1/3) = 84.99999...
# gives 85, as the exact product does.
_SIZE_TOLERANCE = 1e-9


def cubic(x: Tensor) -> Tensor:
    """Keys' cubic convolution kernel with ``a = -0.5`` (MATLAB's ``cubic``), elementwise."""
    ax = x.abs()
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def output_length(in_length: int, scale: float) -> int:
    """``ceil(in_length * scale)``, robust to floating-point error in ``scale`` (e.g. 1/3)."""
    return max(1, math.ceil(in_length * scale - _SIZE_TOLERANCE))


@lru_cache(maxsize=256)
def contributions(in_length: int, out_length: int, scale: float, antialias: bool = True) -> tuple[Tensor, Tensor]:
    """Weights and source indices of one dimension, float64 on CPU.

    Returns:
        ``weights`` (out_length, taps) float64, each row summing to 1, and ``indices`` (out_length, taps)
        int64 in ``[0, in_length)`` (mirrored at the borders).
    """
    shrink = antialias and scale < 1
    kernel_width = 4.0 / scale if shrink else 4.0
    x = torch.arange(1, out_length + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left.unsqueeze(1) + torch.arange(taps, dtype=torch.float64).unsqueeze(0)  # 1-based
    distance = u.unsqueeze(1) - indices
    weights = scale * cubic(scale * distance) if shrink else cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Mirror: MATLAB indexes aux = [1 .. n, n .. 1] with mod(indices - 1, 2n).
    mirror = torch.cat([torch.arange(in_length), torch.arange(in_length - 1, -1, -1)])
    indices = mirror[torch.remainder(indices.long() - 1, 2 * in_length)]
    # Drop tap columns that are zero for every output pixel (MATLAB does too; saves work).
    used = (weights != 0).any(dim=0)
    return weights[:, used].contiguous(), indices[:, used].contiguous()


def _resize_dim(x: Tensor, dim: int, out_length: int, scale: float, antialias: bool) -> Tensor:
    """Resize ``x`` along ``dim`` (-2 or -1) in x's (floating) dtype."""
    weights, indices = contributions(x.shape[dim], out_length, scale, antialias)
    weights = weights.to(device=x.device, dtype=x.dtype)
    indices = indices.to(device=x.device)
    taps = indices.shape[1]
    gathered = x.index_select(dim, indices.reshape(-1))
    if dim == -2:  # (..., out*taps, W) -> (..., out, taps, W)
        gathered = gathered.unflatten(-2, (out_length, taps))
        return (gathered * weights.unsqueeze(-1)).sum(dim=-2)
    gathered = gathered.unflatten(-1, (out_length, taps))  # (..., H, out, taps)
    return (gathered * weights).sum(dim=-1)


def imresize(
    x: Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> Tensor:
    """Resize the last two dimensions of ``x`` like MATLAB ``imresize(x, scale, 'bicubic')``.

    Args:
        x: (..., H, W), e.g. (B, C, H, W) or (C, H, W); uint8 or floating point, CPU or CUDA.
        scale: resize factor (``0.25`` to downscale x4, ``4`` to upscale x4); output is
            ``ceil(H * scale) x ceil(W * scale)``. Give either ``scale`` or ``size``.
        size: output ``(height, width)``; the per-dimension scale is then ``out / in`` (as in MATLAB).
        antialias: stretch the kernel when downscaling (MATLAB's default ``'Antialiasing', true``).

    Returns:
        (..., H', W') in x's dtype. uint8 input is computed in float64 and rounded and clamped to uint8
        after each dimension (as MATLAB does); float16/bfloat16 are computed in float32.
    """
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale and size")
    if x.dim() < 2:
        raise ValueError(f"imresize needs at least 2 dimensions (..., H, W), got shape {tuple(x.shape)}")
    in_h, in_w = x.shape[-2], x.shape[-1]
    if size is not None:
        out_h, out_w = int(size[0]), int(size[1])
        if out_h < 1 or out_w < 1:
            raise ValueError(f"output size must be positive, got {size}")
        scale_h, scale_w = out_h / in_h, out_w / in_w
    else:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        scale_h = scale_w = float(scale)
        out_h, out_w = output_length(in_h, scale_h), output_length(in_w, scale_w)

    is_uint8 = x.dtype == torch.uint8
    if is_uint8:
        work = x.to(torch.float64)
    elif x.dtype in (torch.float16, torch.bfloat16):
        work = x.float()
    elif x.is_floating_point():
        work = x
    else:
        raise TypeError(f"imresize supports uint8 and floating point tensors, got {x.dtype}")

    # MATLAB resizes the dimension with the smaller scale first (fewer pixels to carry to the second pass).
    passes = [(-2, out_h, scale_h), (-1, out_w, scale_w)]
    if scale_w < scale_h:
        passes.reverse()
    for dim, out_length, dim_scale in passes:
        if work.shape[dim] == out_length and dim_scale == 1:
            continue  # MATLAB skips a dimension whose scale is 1
        work = _resize_dim(work, dim, out_length, dim_scale, antialias)
        if is_uint8:
            work = to_uint8(work, peak=255.0).to(torch.float64)

    if is_uint8:
        return work.to(torch.uint8)
    return work.to(x.dtype)
