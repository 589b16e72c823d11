"""``--model auto``: pick the shipped model that suits an input photo, from the photo alone.

A photo that has been through heavy JPEG compression, or that carries visible sensor noise, is upscaled
better by the real-world model (trained on blurred, noisy, JPEG-compressed LR); a clean image by the
classical model of its scale (trained on bicubic LR). :func:`choose_model` applies the rule

* a JPEG whose quantization tables say quality <= :data:`JPEG_QUALITY_THRESHOLD` -> the real-world model;
* an image whose estimated noise sigma is > :data:`NOISE_SIGMA_THRESHOLD` -> the real-world model;
* anything else -> the classical model of that scale (:data:`srformer.shipped.DEFAULT_BY_SCALE`).

The real-world model exists at x4 only; at other scales the classical model is used and the reason says so.

Two measurements, both standard:

* :func:`jpeg_quality`: the libjpeg (IJG) quality whose scaled standard tables are nearest to the file's
  quantization tables (exact for files written by libjpeg, Pillow included; as ImageMagick's ``identify``
  estimates it).
* :func:`noise_sigma`: Donoho and Johnstone's robust wavelet estimate, ``median(|HH|) / 0.6745`` of the finest
  diagonal db2 sub-band, per channel, averaged (scikit-image's ``estimate_sigma``, in numpy, so neither
  scikit-image nor PyWavelets is needed at run time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from srformer import shipped
from srformer.errors import CheckpointError, ImageError
from srformer.imageio import LoadedImage, read_image

#: A JPEG at this quality or below goes to the real-world model (the rule of issue 24).
JPEG_QUALITY_THRESHOLD = 90

#: An estimated noise sigma (0-255 units) above this goes to the real-world model. Measured, not guessed
#: (``bench/auto_model.py``: tuned on Set14 x4 LR, B100 held out; docs/BENCHMARKS.md, "Choosing the model per
#: image"): the estimator reads texture as noise, and clean LR of textured photos (Set14's comic, baboon, zebra)
#: estimates up to 9.9, as much as noise of sigma 5 on a smooth one. Tuned again for the real-world model of
#: 2026-12-06 (``light``, 12 CPU hours), which beats the classical model at sigma 5 too (Set14 +0.14 dB, B100
#: +0.24): every threshold from 5.3 to 6.0 came within 0.005 dB (summed) of auto's 0.05 dB target on Set14's
#: conditions; 5.6 was the middle. Tuned again for the one of 2026-12-07 (the same model 4 CPU hours on): 4.7 to
#: 6.0, middle 5.3; and for the next (4 more CPU hours, shipped the same day): 4.6 to 6.0, middle 5.3 again. (For
#: the real model before them: 8.3, the middle of 6.8-9.9.)
NOISE_SIGMA_THRESHOLD = 5.3

#: Shipped name of the real-world model, and its only scale.
REAL_WORLD_MODEL = "real"
REAL_WORLD_SCALE = 4

# The IJG standard tables (ITU-T T.81 Annex K), natural (row-major) order, as Pillow's ``quantization`` gives.
_IJG_LUMINANCE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ]
).ravel()
_IJG_CHROMINANCE = np.array(
    [
        [17, 18, 24, 47, 99, 99, 99, 99],
        [18, 21, 26, 66, 99, 99, 99, 99],
        [24, 26, 56, 99, 99, 99, 99, 99],
        [47, 66, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
    ]
).ravel()

# db2 decomposition high-pass filter (PyWavelets' ``Wavelet("db2").dec_hi``).
_DB2_HIGH_PASS = np.array([-0.48296291314453416, 0.8365163037378079, -0.2241438680420134, -0.12940952255126037])

# 75th percentile of the standard normal: the MAD of gaussian noise is 0.6745 sigma.
_NORMAL_Q75 = 0.6744897501960817

ImageSource = str | os.PathLike[str] | LoadedImage | np.ndarray | Image.Image


@dataclass(frozen=True)
class Choice:
    """The model picked for one input, and why.

    Attributes:
        reference: a shipped model name (:mod:`srformer.shipped`): ``"real"`` or the classical default of the scale.
        reason: one sentence saying what was measured and what it led to.
        jpeg_quality: the estimated JPEG quality (1-100), ``None`` for an input that is not a JPEG file.
        noise_sigma: the estimated noise sigma in 0-255 units, ``None`` when the JPEG quality already decided.
    """

    reference: str
    reason: str
    jpeg_quality: float | None
    noise_sigma: float | None


def ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    """A standard table scaled as libjpeg's ``jpeg_set_quality(quality, force_baseline=TRUE)`` does: (64,) int."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


# (100, 64) each: the tables libjpeg writes at qualities 1..100.
_LUMINANCE_BY_QUALITY = np.stack([ijg_table(_IJG_LUMINANCE, q) for q in range(1, 101)])
_CHROMINANCE_BY_QUALITY = np.stack([ijg_table(_IJG_CHROMINANCE, q) for q in range(1, 101)])


def quality_from_tables(tables: dict[int, list[int]] | list[list[int]]) -> float | None:
    """The libjpeg quality (1-100) whose standard tables are nearest to ``tables`` (64 values each, natural order).

    Table 0 is compared with the luminance table, the others with the chrominance one; "nearest" is the least
    sum of squared log ratios, so a table off by a factor is as far at quality 20 as at 80. Tables libjpeg wrote
    match one quality exactly; other encoders' tables get the quality of the nearest standard ones.
    ``None`` when there is no 64-entry table.
    """
    values = list(tables.values()) if isinstance(tables, dict) else list(tables)
    values = [np.asarray(t, dtype=np.float64) for t in values if len(t) == 64]
    if not values:
        return None
    error = np.zeros(len(_LUMINANCE_BY_QUALITY))
    for index, table in enumerate(values):
        candidates = _LUMINANCE_BY_QUALITY if index == 0 else _CHROMINANCE_BY_QUALITY
        log_ratio = np.log(np.maximum(table, 1.0))[None, :] - np.log(candidates)
        error += (log_ratio**2).sum(axis=1)
    return float(np.argmin(error) + 1)  # ties (none among the standard tables) go to the lower quality


def jpeg_quality(source: str | os.PathLike[str] | Image.Image) -> float | None:
    """The estimated JPEG quality (1-100) of a file or an opened Pillow image; ``None`` for anything not a JPEG.

    Only the header is read. Raises :class:`ImageError` for a path that is missing or not an image.
    """
    if isinstance(source, Image.Image):
        return _quality_of(source)
    path = Path(source)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            return _quality_of(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        raise ImageError(f"cannot read {path.name} as an image ({err})") from None


def _quality_of(img: Image.Image) -> float | None:
    # MPO (camera multi-picture files) are JPEGs too and expose the same tables.
    tables = getattr(img, "quantization", None)
    if img.format not in ("JPEG", "MPO") or not tables:
        return None
    return quality_from_tables(tables)


def _db2_high_pass(x: np.ndarray, axis: int) -> np.ndarray:
    """The db2 detail coefficients of ``x`` along ``axis``, as PyWavelets' ``dwt`` gives them in its default
    ``symmetric`` mode (edge-repeating mirror): length ``(n + 3) // 2`` along ``axis``."""
    taps = len(_DB2_HIGH_PASS)
    x = np.moveaxis(x, axis, 0)
    padded = np.pad(x, [(taps - 1, taps - 1)] + [(0, 0)] * (x.ndim - 1), mode="symmetric")
    length = (x.shape[0] + taps - 1) // 2
    out = np.zeros((length,) + x.shape[1:], dtype=np.float64)
    for j, tap in enumerate(_DB2_HIGH_PASS):
        # Coefficient k is the full convolution at (unpadded) sample 2k + 1: strided views, no index arrays.
        start = taps - j
        out += tap * padded[start : start + 2 * length : 2]
    return np.moveaxis(out, 0, axis)


def _channel_sigma(channel: np.ndarray) -> float:
    """Donoho's MAD estimate on the diagonal (HH) sub-band of one ``(H, W)`` float64 channel."""
    diagonal = _db2_high_pass(_db2_high_pass(channel, 0), 1)
    # Flat areas (clipped, padded) carry no noise: left out, as skimage leaves out exact zeros. db2's taps sum
    # to zero only up to rounding, so "zero" is anything below 1e-9 levels.
    diagonal = diagonal[np.abs(diagonal) > 1e-9]
    if diagonal.size == 0:
        return 0.0
    return float(np.median(np.abs(diagonal)) / _NORMAL_Q75)


def noise_sigma(rgb: np.ndarray) -> float:
    """Estimated standard deviation of additive gaussian noise, in 0-255 units.

    Args:
        rgb: ``(H, W, C)`` or ``(H, W)``: float in [0, 1] (what :func:`srformer.imageio.read_image` gives),
            uint8, or uint16 (scaled by 255/65535). With C = 2 or 4 the last channel (alpha) is left out.

    Returns the per-channel estimate (``skimage.restoration.estimate_sigma(..., channel_axis=-1,
    average_sigmas=True)``) averaged over the colour channels. Texture reads partly as noise: a clean photo
    rarely estimates 0.
    """
    array = np.asarray(rgb)
    if array.dtype == np.uint8:
        unit = 1.0
    elif array.dtype == np.uint16:
        unit = 255.0 / 65535.0
    elif np.issubdtype(array.dtype, np.floating):
        unit = 255.0
    else:
        raise TypeError(f"expected a float, uint8 or uint16 image, got {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {array.shape}")
    channels = array.shape[2] - 1 if array.shape[2] in (2, 4) else array.shape[2]
    sigmas = [_channel_sigma(array[:, :, c].astype(np.float64) * unit) for c in range(channels)]
    return float(np.mean(sigmas))


def _pixels_of(source: LoadedImage | np.ndarray | Image.Image) -> np.ndarray:
    """An already loaded image -> an array :func:`noise_sigma` takes."""
    if isinstance(source, LoadedImage):
        return source.rgb
    if isinstance(source, Image.Image):
        if source.mode.startswith("I;16"):
            return np.asarray(source).astype(np.uint16)
        return np.asarray(source if source.mode in ("L", "RGB") else source.convert("RGB"))
    return np.asarray(source)


def _kind_of(source: ImageSource) -> str:
    """How the reason names the input: its format ("PNG", "TIFF", "JPEG") or "image"."""
    if isinstance(source, Image.Image):
        return source.format or "image"
    if isinstance(source, (str, os.PathLike)):
        suffix = Path(source).suffix.lower().lstrip(".")
        return {"jpg": "JPEG", "jpeg": "JPEG", "tif": "TIFF", "tiff": "TIFF"}.get(suffix, suffix.upper() or "image")
    return "image"


def classical_model(scale: int) -> str:
    """The shipped classical model of ``scale``; :class:`CheckpointError` (one sentence) when none is shipped."""
    if scale not in shipped.DEFAULT_BY_SCALE:
        scales = ", ".join(f"x{s}" for s in sorted(shipped.DEFAULT_BY_SCALE))
        raise CheckpointError(f"--model auto has no shipped x{scale} model (shipped scales: {scales})")
    return shipped.DEFAULT_BY_SCALE[scale]


def choose_model(
    source: ImageSource,
    scale: int = 4,
    *,
    image: LoadedImage | None = None,
    noise_threshold: float = NOISE_SIGMA_THRESHOLD,
) -> Choice:
    """Pick the shipped model for one input (see the module docstring for the rule).

    Args:
        source: a path (its JPEG tables read from the file, its pixels with :func:`srformer.imageio.read_image`),
            or an already loaded image (:class:`~srformer.imageio.LoadedImage`, an array as :func:`noise_sigma`
            takes, or a Pillow image, whose JPEG tables are used when it was opened from a JPEG).
        scale: the upscaling factor; the real-world model exists at x4 only.
        image: the decoded pixels of the path ``source``, when the caller has them already (saves decoding twice).
        noise_threshold: the noise sigma (0-255 units) above which the real-world model is chosen.

    Raises :class:`ImageError` for an unreadable path, :class:`CheckpointError` for a scale with no shipped model.
    """
    classical = classical_model(scale)
    is_path = isinstance(source, (str, os.PathLike))
    quality = jpeg_quality(source) if is_path or isinstance(source, Image.Image) else None
    kind = _kind_of(source)
    sigma = None
    if quality is not None and quality <= JPEG_QUALITY_THRESHOLD:
        finding = f"JPEG quality ~{quality:.0f} (<= {JPEG_QUALITY_THRESHOLD})"
        degraded = True
    else:
        pixels = image if image is not None else (read_image(source) if is_path else source)
        sigma = noise_sigma(_pixels_of(pixels))
        degraded = sigma > noise_threshold
        if degraded:
            finding = f"estimated noise sigma {sigma:.1f} (> {noise_threshold:g})"
        elif quality is not None:
            finding = f"JPEG quality ~{quality:.0f} (> {JPEG_QUALITY_THRESHOLD}), noise sigma {sigma:.1f}"
        else:
            finding = f"clean {kind} (noise sigma {sigma:.1f})"
    if not degraded:
        return Choice(classical, f"{finding}: classical model", quality, sigma)
    if scale != REAL_WORLD_SCALE:
        reason = f"{finding}, but the real-world model is x{REAL_WORLD_SCALE} only: classical x{scale} model"
        return Choice(classical, reason, quality, sigma)
    return Choice(REAL_WORLD_MODEL, f"{finding}: real-world model", quality, sigma)
