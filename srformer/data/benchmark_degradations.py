"""Fixed, seeded degradations that make the LR images of degraded benchmarks, cached like the bicubic LR.

Each is a deterministic function of the HR image, the scale and the image's name, so every machine makes
the same LR files (used by ``srformer evaluate --degradation``, ``srformer compare`` and
validation sets named in the data module's ``degradations``):

* ``D1``: gaussian blur sigma 1.0 on the HR cropped to a multiple of the scale (scipy
  ``gaussian_filter(mode="mirror", truncate=3.0)`` per channel, in float64), MATLAB bicubic 1/scale
  (float64, rounded and clipped to uint8 once at the end), gaussian noise sigma 5 on the 0-255 scale
  (rounded, clipped; seeded by the image name), JPEG quality 50 (Pillow's defaults);
* ``jpeg30``: MATLAB bicubic 1/scale at uint8, then JPEG quality 30 (Pillow's defaults);
* ``noise10``: MATLAB bicubic 1/scale at uint8, then gaussian noise sigma 10 (rounded, clipped; seeded
  by the image name).
* ``noise20``: the same with sigma 20, the noise of low-light photos.

``bicubic`` is the classical LR itself (no extra file).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import kornia
import numpy as np
import torch
from PIL import Image

from srformer.data.cache import ImageCache, _save_atomic, downscale_uint8
from srformer.data.datasets import CachedPair, ImagePair
from srformer.errors import DataError, ImageError
from srformer.imresize import imresize
from srformer.pixels import to_uint8, to_uint8_array

BICUBIC = "bicubic"
# Bump when a recipe below changes, to invalidate cached LR files.
RECIPE_VERSION = 1


def gaussian_blur_mirror(image: np.ndarray, sigma: float, truncate: float = 3.0) -> np.ndarray:
    """scipy ``gaussian_filter(image[..., c], sigma, mode="mirror", truncate=truncate)`` for each channel.

    scipy's ``mirror`` reflects without repeating the edge pixel (torch's and kornia's ``reflect``); its
    kernel has radius ``int(truncate * sigma + 0.5)`` and is the sampled gaussian normalized to sum 1,
    which is :func:`kornia.filters.gaussian_blur2d`'s kernel for that size.

    Args: image (H, W, C) uint8 or float. Returns (H, W, C) float64 on the input's 0-255 scale.
    """
    radius = int(truncate * sigma + 0.5)
    chw = torch.from_numpy(np.asarray(image, dtype=np.float64)).permute(2, 0, 1).unsqueeze(0)
    blurred = kornia.filters.gaussian_blur2d(
        chw, (2 * radius + 1, 2 * radius + 1), (sigma, sigma), border_type="reflect", separable=True
    )
    return blurred[0].permute(1, 2, 0).numpy()


def _mod_crop(hr: np.ndarray, scale: int) -> np.ndarray:
    h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
    if h == 0 or w == 0:
        raise ImageError(f"image of {hr.shape[0]}x{hr.shape[1]} pixels is smaller than the scale {scale}")
    return hr[:h, :w]


def _name_rng(name: str) -> np.random.Generator:
    """A generator seeded by the file stem (crc32: stable across machines and Python runs)."""
    return np.random.default_rng(zlib.crc32(Path(name).stem.encode("utf-8")))


def add_gaussian_noise_uint8(image: np.ndarray, sigma: float, name: str) -> np.ndarray:
    """(H, W, 3) uint8 + gaussian noise of ``sigma`` (0-255 scale) seeded by ``name``, rounded and clipped."""
    noise = _name_rng(name).normal(0.0, sigma, size=image.shape)
    return to_uint8_array(image.astype(np.float64) + noise, peak=255.0)


def pillow_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3) uint8 through Pillow's JPEG encoder (default settings) at ``quality`` and back."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB")).copy()


def degrade_d1(hr: np.ndarray, scale: int, name: str) -> np.ndarray:
    """``D1``: blur sigma 1.0 -> MATLAB bicubic 1/scale -> noise sigma 5 -> JPEG 50. (H, W, 3) uint8 ->
    (H // s, W // s, 3) uint8."""
    blurred = gaussian_blur_mirror(_mod_crop(hr, scale), sigma=1.0)
    small = imresize(torch.from_numpy(blurred).permute(2, 0, 1), scale=1.0 / scale)
    lr = to_uint8(small, peak=255.0).permute(1, 2, 0).numpy()
    return pillow_jpeg(add_gaussian_noise_uint8(lr, 5.0, name), 50)


def degrade_jpeg30(hr: np.ndarray, scale: int, name: str) -> np.ndarray:
    """``jpeg30``: MATLAB bicubic 1/scale at uint8 -> JPEG quality 30."""
    return pillow_jpeg(downscale_uint8(hr, scale), 30)


def degrade_noise10(hr: np.ndarray, scale: int, name: str) -> np.ndarray:
    """``noise10``: MATLAB bicubic 1/scale at uint8 -> gaussian noise sigma 10 seeded by the name."""
    return add_gaussian_noise_uint8(downscale_uint8(hr, scale), 10.0, name)


def degrade_noise20(hr: np.ndarray, scale: int, name: str) -> np.ndarray:
    """``noise20``: MATLAB bicubic 1/scale at uint8 -> gaussian noise sigma 20 seeded by the name."""
    return add_gaussian_noise_uint8(downscale_uint8(hr, scale), 20.0, name)


BenchmarkDegradation = Callable[[np.ndarray, int, str], np.ndarray]
"""(HR (H, W, 3) uint8, scale, image file name) -> LR (H // scale, W // scale, 3) uint8."""

BENCHMARK_DEGRADATIONS: dict[str, BenchmarkDegradation] = {
    "D1": degrade_d1,
    "jpeg30": degrade_jpeg30,
    "noise10": degrade_noise10,
    "noise20": degrade_noise20,
}


def degradation_names() -> list[str]:
    """Every name ``--degradation`` accepts, ``bicubic`` first."""
    return [BICUBIC, *BENCHMARK_DEGRADATIONS]


def check_degradation(name: str) -> str:
    """``name`` if it is a benchmark degradation, else :class:`DataError` listing the known ones."""
    if name != BICUBIC and name not in BENCHMARK_DEGRADATIONS:
        raise DataError(f"unknown degradation {name!r}; choose one of {', '.join(degradation_names())}")
    return name


def prepare_degraded(cache: ImageCache, pair: ImagePair, scale: int, degradation: str) -> CachedPair:
    """:meth:`ImageCache.prepare`, with the LR made (once, then cached) by ``degradation`` from the HR.

    The degraded LR lives next to the decoded HR as ``<hr key>.<degradation>_x<scale>.npy``.
    """
    cached = cache.prepare(pair, scale)
    if check_degradation(degradation) == BICUBIC:
        return cached
    lr_npy = cached.hr_npy.with_name(f"{cached.hr_npy.stem}.{degradation}_v{RECIPE_VERSION}_x{scale}.npy")
    if not lr_npy.exists():
        hr = np.load(cached.hr_npy, mmap_mode="r")
        _save_atomic(lr_npy, BENCHMARK_DEGRADATIONS[degradation](np.asarray(hr), scale, pair.hr.name))
    return CachedPair(cached.name, cached.hr_npy, lr_npy, cached.hr_shape, cached.lr_shape)


def prepare_all_degraded(
    cache: ImageCache, pairs: Iterable[ImagePair], scale: int, degradation: str, what: str
) -> list[CachedPair]:
    """:meth:`ImageCache.prepare_all` (unreadable images skipped and reported), then each pair's LR made
    by ``degradation``."""
    pairs = list(pairs)
    prepared = cache.prepare_all(pairs, scale, what)
    if check_degradation(degradation) == BICUBIC:
        return prepared
    by_name = {pair.hr.name: pair for pair in pairs}
    return [prepare_degraded(cache, by_name[item.name], scale, degradation) for item in prepared]
