"""PSNR and SSIM as the classical SR protocol computes them.

* Both images are taken at uint8 levels: float inputs in [0, 1] are clamped and rounded to ``k / 255``
  (what a saved image holds; :func:`srformer.pixels.to_uint8`), uint8 inputs are used as they are; the two
  give identical results.
* By default on the Y channel of BT.601 studio-range YCbCr (MATLAB ``rgb2ycbcr``):
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` with R, G, B in [0, 255], kept unrounded
  (as SwinIR/BasicSR do); ``space="rgb"`` scores the three channels instead.
* ``border`` pixels (the scale, by convention) are cropped from each side before scoring.
* SSIM: 11x11 gaussian window with sigma 1.5, valid positions only, ``C1 = (0.01 * 255)^2``,
  ``C2 = (0.03 * 255)^2``; on RGB the mean of the per-channel SSIMs.
* Everything is computed in float64; the mean over a set is the mean of the per-image values
  (:mod:`srformer.scoring` runs the images and takes the means for every entry point).

Grayscale images are read as RGB with three equal channels, so their Y is ``16 + 219 / 255 * gray``: the
convention of SwinIR/BasicSR (``cv2.imread(..., IMREAD_COLOR)``), under which the transformer SR papers
report their numbers. The MATLAB scripts behind the published *bicubic* tables instead use a
single-channel file's gray level itself as Y, which scores such an image 20 log10(255 / 219) = 1.32 dB
lower (Set14's ``bridge.png``: the published Set14 bicubic values are 0.09 dB below ours for that reason;
see docs/BENCHMARKS.md).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from srformer.pixels import to_uint8

Space = Literal["y", "rgb"]

_Y_WEIGHTS = (65.481, 128.553, 24.966)


def _levels(x: Tensor) -> Tensor:
    """(B, C, H, W) float in [0, 1] or uint8 -> float64 on the 0..255 scale holding :func:`to_uint8`'s levels."""
    return to_uint8(x).to(torch.float64)


def to_y(x: Tensor) -> Tensor:
    """RGB (B, 3, H, W), float in [0, 1] or uint8 -> Y (B, 1, H, W) float64 in [16, 235] (on the 0..255 scale).

    The input is quantized to uint8 levels first; Y itself is not rounded.
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"to_y expects RGB images (B, 3, H, W), got shape {tuple(x.shape)}")
    rgb = _levels(x)
    weights = torch.tensor(_Y_WEIGHTS, dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
    return (rgb * weights).sum(dim=1, keepdim=True) / 255.0 + 16.0


def _prepare(sr: Tensor, hr: Tensor, border: int, space: Space) -> tuple[Tensor, Tensor]:
    """Both images at uint8 levels in ``space``, float64, (B, C, H - 2 border, W - 2 border)."""
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr shapes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    if sr.dim() != 4:
        raise ValueError(f"expected (B, C, H, W) images, got shape {tuple(sr.shape)}")
    if border < 0 or 2 * border >= min(sr.shape[-2:]):
        raise ValueError(f"border {border} leaves nothing of a {sr.shape[-2]}x{sr.shape[-1]} image")
    if space == "y":
        sr, hr = to_y(sr), to_y(hr)
    elif space == "rgb":
        sr, hr = _levels(sr), _levels(hr)
    else:
        raise ValueError(f"space must be 'y' or 'rgb', got {space!r}")
    if border:
        sr = sr[..., border:-border, border:-border]
        hr = hr[..., border:-border, border:-border]
    return sr, hr


def psnr(sr: Tensor, hr: Tensor, border: int, space: Space = "y") -> Tensor:
    """PSNR in dB per image, (B,) float64; ``inf`` for identical images.

    Args:
        sr, hr: (B, 3, H, W), float in [0, 1] or uint8.
        border: pixels cropped from each side (the scale, by convention).
        space: ``"y"`` (the protocol) or ``"rgb"``.
    """
    sr, hr = _prepare(sr, hr, border, space)
    mse = (sr - hr).square().flatten(1).mean(dim=1)
    return 10.0 * torch.log10(255.0**2 / mse)


def _gaussian_1d(size: int = 11, sigma: float = 1.5, device: torch.device | None = None) -> Tensor:
    """(size,) float64, normalized to sum 1 (``cv2.getGaussianKernel(11, 1.5)``); the 2-D window is its
    outer product."""
    coords = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_per_channel(x: Tensor, y: Tensor) -> Tensor:
    """SSIM of (B, C, H, W) float64 images on the 0..255 scale -> (B, C), valid-convolution means."""
    c1 = (0.01 * 255) ** 2
    c2 = (0.03 * 255) ** 2
    b, c, h, w = x.shape
    # The five local statistics of every channel in one separable (11x1 then 1x11) blur.
    stack = torch.stack([x, y, x * x, y * y, x * y], dim=2).reshape(b, c * 5, h, w)
    g = _gaussian_1d(device=x.device)
    stack = F.conv2d(stack, g.view(1, 1, 11, 1).expand(c * 5, 1, 11, 1), groups=c * 5)
    stack = F.conv2d(stack, g.view(1, 1, 1, 11).expand(c * 5, 1, 1, 11), groups=c * 5)
    mu_x, mu_y, xx, yy, xy = stack.reshape(b, c, 5, h - 10, w - 10).unbind(dim=2)
    sigma_xx = xx - mu_x**2
    sigma_yy = yy - mu_y**2
    sigma_xy = xy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sigma_xx + sigma_yy + c2))
    return ssim_map.flatten(2).mean(dim=2)


def ssim(sr: Tensor, hr: Tensor, border: int, space: Space = "y") -> Tensor:
    """SSIM per image, (B,) float64; 1 for identical images. Same arguments as :func:`psnr`.

    Images must be at least 11x11 after the border crop.
    """
    sr, hr = _prepare(sr, hr, border, space)
    if min(sr.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after the border crop, got {tuple(sr.shape[-2:])}")
    return _ssim_per_channel(sr, hr).mean(dim=1)


def psnr_y(sr: Tensor, hr: Tensor, border: int) -> Tensor:
    """Y-channel PSNR per image (B,): :func:`psnr` with ``space="y"``."""
    return psnr(sr, hr, border, space="y")


def ssim_y(sr: Tensor, hr: Tensor, border: int) -> Tensor:
    """Y-channel SSIM per image (B,): :func:`ssim` with ``space="y"``."""
    return ssim(sr, hr, border, space="y")
