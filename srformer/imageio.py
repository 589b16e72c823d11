"""Reading and writing real-world images for inference.

:func:`read_image` turns whatever a user hands over into float RGB in [0, 1] plus what is needed to write the
result back faithfully: an alpha plane (upscaled separately by the caller), whether the source was grayscale,
its bit depth (8 or 16) and its ICC profile. It applies the EXIF orientation, converts palette, CMYK and other
modes, takes the first frame of animations (with a warning), and refuses images over a pixel limit *before*
decoding them, from the header alone.

:func:`write_image` picks the format from the extension (png, jpg/jpeg, webp, tif/tiff), keeps 16 bits where
the format allows (PNG, TIFF), quantizes with :func:`srformer.pixels.quantize` (the scoring path's levels),
writes through :mod:`srformer.atomic` (a temporary file and a rename) so a crash never leaves a half written
file, and never replaces an existing file unless asked to. :func:`write_pixel_bands` does the same for an
image that arrives in row bands: PNG (a small streaming encoder on zlib) and TIFF (tifffile, in strips)
are written band by band, so an image of any height needs only a band in memory; JPEG and WebP, which
Pillow encodes whole, are assembled once in uint8. Format size limits and a full disk are reported in one
sentence, and leave no file.

Pillow decodes 16-bit RGB(A) PNGs to 8 bits. To keep all 16 bits without another dependency the PNG's image
data is decoded twice by Pillow's own (unfiltering) decoder, through the public ``Image.frombytes``, once taking
the high and once the low byte of every sample. Pillow also reduces 16-bit RGB(A) TIFFs to 8 bits and cannot
open 16-bit gray+alpha or float RGB ones: TIFFs of 16-bit or float samples are read by tifffile.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from srformer.atomic import DestinationExistsError, atomic_file
from srformer.errors import ImageError, SRFormerError
from srformer.pixels import quantize

#: Default limit on width * height of an input: about 16k x 12k, far beyond a photo, well below a bomb.
DEFAULT_MAX_PIXELS = 200_000_000

#: Output formats by extension, as Pillow names them.
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}

#: Extensions picked up when a folder is given as input.
INPUT_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".tga", ".ppm", ".pgm", ".pnm"}
)

_SIXTEEN_BIT_FORMATS = {"PNG", "TIFF"}

#: Largest width or height a format can hold: JPEG's 16-bit size fields, libwebp's 14-bit ones.
MAX_SIDE = {"JPEG": 65_535, "WEBP": 16_383}

#: zlib level of PNG and TIFF output. With the "Up" filter, level 1 wrote a 4 MP upscaled photo 5 times
#: faster than level 6 for a file 23% larger (0.31 against 0.25 of the raw size); level 3: 0.28, 1.8x slower.
DEFAULT_COMPRESSION = 1

#: Typical file size as a share of the raw samples (upscaled photos, default settings): for disk checks.
_TYPICAL_COMPRESSION = {"PNG": 0.5, "TIFF": 0.6, "JPEG": 0.15, "WEBP": 0.1}

#: Bytes per TIFF strip: small enough to stream, large enough for zlib to compress well.
_TIFF_STRIP_BYTES = 2**20


@dataclass
class LoadedImage:
    """A decoded image.

    Attributes:
        rgb: float32 ``(H, W, 3)`` in [0, 1] (grayscale sources repeated over the three channels).
        alpha: float32 ``(H, W)`` in [0, 1], or ``None`` when the source has no transparency.
        grayscale: the source had one colour channel; write the result back as grayscale.
        bit_depth: 8 or 16, bits per sample of the source.
        icc_profile: the embedded ICC profile, or ``None``.
        warnings: things the user should know (first frame of an animation taken, bits dropped...).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    grayscale: bool
    bit_depth: int
    icc_profile: bytes | None
    warnings: list[str] = field(default_factory=list)

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]


@contextlib.contextmanager
def _pillow_bomb_check_disabled() -> Iterator[None]:
    # Our own limit (configurable, checked before decoding) replaces Pillow's fixed global one.
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode ``path``; raise :class:`ImageError` for missing, unreadable, empty or oversized images.

    ``max_pixels`` (``None``: no limit) is checked against the header before any pixel is decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    notes: list[str] = []
    eight_bit_note = None  # said when a deep TIFF falls back to Pillow and Pillow keeps only 8 bits
    if _is_tiff(path):
        deep = _read_deep_tiff(path, max_pixels, notes)
        if isinstance(deep, str):
            eight_bit_note = deep
        elif deep is not None:
            array, orientation, icc_profile = deep
            return _split_channels(_apply_orientation(array, orientation), icc_profile, notes)
    try:
        with _pillow_bomb_check_disabled(), Image.open(path) as img:
            width, height = img.size
            _check_pixel_count(path, width, height, max_pixels)
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                notes.append(f"{path.name} has {frames} frames; only the first one is upscaled")
                img.seek(0)
            icc_profile = img.info.get("icc_profile") or None
            sixteen_bit_layout = _sixteen_bit_png_layout(img)
            if sixteen_bit_layout:  # decoded separately; Pillow's own decoder would drop the low bytes (or fail for LA)
                orientation = img.getexif().get(0x0112, 1)
                array = _decode_sixteen_bit_png(path, sixteen_bit_layout)
            else:
                img.load()
                orientation = img.getexif().get(0x0112, 1)
                array, mode_note = _to_array(img, path.name)
                if mode_note:
                    notes.append(mode_note)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        raise ImageError(f"cannot read {path.name} as an image ({_reason(err)})") from None
    if eight_bit_note and array.dtype == np.uint8:
        notes.append(eight_bit_note)
    array = _apply_orientation(array, orientation)
    return _split_channels(array, icc_profile, notes)


def _check_pixel_count(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    """Refuse an empty image, or one over ``max_pixels`` (``None``: no limit), from its header's size."""
    if width < 1 or height < 1:
        raise ImageError(f"{path.name} has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{path.name} is {width}x{height} = {_pixel_count(width * height)}, over the limit of "
            f"{_pixel_count(max_pixels)} (raise it with --max-pixels if the file is trusted)"
        )


def _is_tiff(path: Path) -> bool:
    """``path`` starts like a TIFF or BigTIFF file, little or big endian."""
    with open(path, "rb") as handle:
        return handle.read(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _read_deep_tiff(
    path: Path, max_pixels: int | None, notes: list[str]
) -> tuple[np.ndarray, int, bytes | None] | str | None:
    """A TIFF of 16-bit or floating-point gray, gray+alpha, RGB or RGBA samples, read by tifffile, which keeps
    what Pillow would reduce to 8 bits (RGB, RGBA) or cannot open (gray+alpha, float RGB).

    Returns ``(pixels, orientation, icc_profile)``: uint16 ``(H, W, C)``, C in {1, 2, 3, 4}, the EXIF
    orientation (1-8) and the embedded ICC profile. ``None``: another kind of TIFF, which Pillow reads as well.
    A string: the note to give if Pillow has to read it with 8 bits (its compression needs imagecodecs).
    Appends a note to ``notes`` for a multi-page file (the first page is read).
    """
    import tifffile

    failures = (OSError, ValueError, KeyError, IndexError, tifffile.TiffFileError)
    try:
        with _tifffile_quiet(), tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            dtype = page.dtype
            deep = dtype is not None and ((dtype.kind == "u" and dtype.itemsize == 2) or dtype.kind == "f")
            colour = page.photometric in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE)
            colour = colour or page.photometric == tifffile.PHOTOMETRIC.RGB
            if not (deep and colour and page.axes in ("YX", "YXS", "SYX")):
                return None
            if page.compression not in tifffile.TIFF.DECOMPRESSORS or page.predictor not in tifffile.TIFF.PREDICTORS:
                return (
                    f"{path.name}: reading its {page.compression.name} compression with all of its bits needs the"
                    " imagecodecs package (pip install imagecodecs); it was read with 8 bits per sample"
                )
            _check_pixel_count(path, page.imagewidth, page.imagelength, max_pixels)
            if len(tif.pages) > 1:
                notes.append(f"{path.name} has {len(tif.pages)} frames; only the first one is upscaled")
            orientation = int(page.tags.valueof(274, 1))
            icc = page.tags.valueof(34675)
            extra = tuple(page.extrasamples)
            photometric, axes = page.photometric, page.axes
            try:
                data = page.asarray()
            except failures as err:
                raise ImageError(f"cannot read {path.name} as an image ({_reason(err)})") from None
    except ImageError:
        raise
    except failures:
        return None  # a structure tifffile does not follow: Pillow reads it, or says what is wrong
    data = data[..., None] if axes == "YX" else np.moveaxis(data, 0, -1) if axes == "SYX" else data
    colours = 3 if photometric == tifffile.PHOTOMETRIC.RGB else 1
    if data.shape[2] < colours:
        raise ImageError(f"cannot read {path.name} as an image (RGB with {data.shape[2]} samples per pixel)")
    has_alpha = data.shape[2] > colours and extra[:1] in ((1,), (2,))  # associated or unassociated alpha
    data = data[..., : colours + has_alpha]
    if data.dtype.kind == "f":  # like Pillow's float images: [0, 1], or [0, 65535] when values go beyond 1
        data = np.nan_to_num(data.astype(np.float64))
        peak = 1.0 if data.max(initial=0.0) <= 1.0 else 65535.0
        data = np.round(np.clip(data / peak, 0.0, 1.0) * 65535).astype(np.uint16)
    else:
        data = data.astype(np.uint16)  # native byte order, and a copy that may be changed in place
    if photometric == tifffile.PHOTOMETRIC.MINISWHITE:
        data[..., :colours] = 65535 - data[..., :colours]
    if has_alpha and extra[0] == 1:  # premultiplied colour: divide by alpha, as Pillow does for "RGBa"
        alpha = data[..., -1:].astype(np.float64)
        unpremultiplied = data[..., :colours] * 65535.0 / np.maximum(alpha, 1.0)
        data[..., :colours] = np.round(np.clip(unpremultiplied, 0, 65535)).astype(np.uint16)
    return np.ascontiguousarray(data), orientation, bytes(icc) if icc is not None else None


@contextlib.contextmanager
def _tifffile_quiet() -> Iterator[None]:
    """tifffile logs what it finds wrong in a file; the caller reports it (or lets Pillow try) instead."""
    logger = logging.getLogger("tifffile")
    previous = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = previous


def _pixel_count(pixels: int) -> str:
    """``"250 megapixels"``, or ``"400 pixels"`` below one megapixel (a lowered limit must not read "0")."""
    return f"{pixels / 1e6:.0f} megapixels" if pixels >= 1_000_000 else f"{pixels} pixels"


def _reason(err: Exception) -> str:
    text = str(err).strip().rstrip(".")
    return text if text else type(err).__name__


def _sixteen_bit_png_layout(img: Image.Image) -> str | None:
    """ "RGB", "RGBA" or "LA" for a 16-bit PNG that Pillow would reduce to 8 bits; else ``None``.

    Pillow keeps 16-bit grayscale ("I;16"), but decodes 16-bit RGB/RGBA to 8 bits and 16-bit LA to 8-bit RGBA.
    The file's layout is in the raw mode of its tile ("RGB;16B", "RGBA;16B", "LA;16B").
    """
    if img.format != "PNG":
        return None
    rawmodes = [tile.args[0] if isinstance(tile.args, tuple) else tile.args for tile in img.tile]
    for raw in rawmodes:
        if isinstance(raw, str) and raw.endswith(";16B") and raw.split(";")[0] in ("RGB", "RGBA", "LA"):
            return raw.split(";")[0]
    return None


def _decode_sixteen_bit_png(path: Path, layout: str) -> np.ndarray:
    """``(H, W, C)`` uint16 of a 16-bit RGB, RGBA or LA PNG.

    RGB/RGBA: two decodes, taking the high bytes ("…;16B") and the low bytes ("…;16L") of every sample.
    LA: its 4 bytes per pixel decode as 8-bit RGBA (Pillow has no "LA;16L" unpacker), i.e. gray high, gray
    low, alpha high, alpha low; the PNG unfiltering is the same since it works on bytes per pixel.
    """
    if layout == "LA":
        (raw,) = _decode_png_as(path, "RGBA", "RGBA")
        raw = raw.astype(np.uint16)
        return np.stack([(raw[..., 0] << 8) | raw[..., 1], (raw[..., 2] << 8) | raw[..., 3]], axis=2)
    high, low = _decode_png_as(path, layout, f"{layout};16B", f"{layout};16L")
    return (high.astype(np.uint16) << 8) | low.astype(np.uint16)


def _decode_png_as(path: Path, mode: str, *rawmodes: str) -> list[np.ndarray]:
    """Decode ``path``'s image data once per raw mode into an image of ``mode`` (same bytes per pixel as the
    file's pixels, see the callers): Pillow's public ``frombytes`` with its PNG ("zip") decoder unfilters
    (and de-interlaces), the raw mode unpacks."""
    width, height, interlace, data = _png_image_data(path)
    return [np.asarray(Image.frombytes(mode, (width, height), data, "zip", raw, interlace)) for raw in rawmodes]


def _png_image_data(path: Path) -> tuple[int, int, int, bytes]:
    """``(width, height, interlace, compressed image data)`` of a PNG: its IHDR fields and IDAT chunks joined."""
    with open(path, "rb") as handle:
        if handle.read(8) != b"\x89PNG\r\n\x1a\n":
            raise ValueError("not a PNG file")
        header, idat = b"", []
        while True:
            head = handle.read(8)
            if len(head) < 8:
                break
            length, kind = struct.unpack(">I4s", head)
            body = handle.read(length)
            handle.seek(4, os.SEEK_CUR)  # CRC: a corrupt chunk shows up as undecodable data
            if len(body) < length:
                raise ValueError("truncated PNG chunk")
            if kind == b"IHDR":
                header = body
            elif kind == b"IDAT":
                idat.append(body)
            elif kind == b"IEND":
                break
    if len(header) < 13 or not idat:
        raise ValueError("PNG without a header or image data")
    width, height = struct.unpack(">II", header[:8])
    return width, height, header[12], b"".join(idat)


def _to_array(img: Image.Image, name: str) -> tuple[np.ndarray, str | None]:
    """``(H, W, C)`` uint8 or uint16 array with C in {1, 2, 3, 4} (gray, gray+alpha, RGB, RGBA)."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(img, dtype=np.uint16)[..., None], None
    if mode == "I":  # 32-bit integer grayscale: most often 16-bit data (TIFF, some PNG decoders)
        data = np.asarray(img, dtype=np.int64)
        return np.clip(data, 0, 65535).astype(np.uint16)[..., None], None
    if mode == "F":
        data = np.asarray(img, dtype=np.float32)
        peak = 1.0 if data.max(initial=0.0) <= 1.0 else 65535.0
        return np.round(np.clip(data / peak, 0, 1) * 65535).astype(np.uint16)[..., None], None
    if mode in ("1", "L"):
        return np.asarray(img.convert("L"))[..., None], None
    if mode in ("LA", "La"):
        return np.asarray(img.convert("LA")), None
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        palette_mode = img.palette.mode if img.palette is not None else "RGB"
        if palette_mode.startswith("L") and not has_alpha:
            return np.asarray(img.convert("L"))[..., None], None
        return np.asarray(img.convert("RGBA" if has_alpha else "RGB")), None
    if mode in ("RGBA", "RGBa"):
        return np.asarray(img.convert("RGBA")), None
    if mode == "RGB":
        return np.asarray(img), None
    if mode == "CMYK":
        # Without the source ICC profile Pillow's conversion is the naive one; say so instead of hiding it.
        note = f"{name} is CMYK; converted to RGB without colour management" if img.info.get("icc_profile") else None
        return np.asarray(img.convert("RGB")), note
    try:
        return np.asarray(img.convert("RGB")), None
    except ValueError as err:
        raise ImageError(f"{name} has pixel mode {mode}, which cannot be converted to RGB ({err})") from None


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip an ``(H, W, C)`` array so that it displays upright (EXIF tag 0x0112, values 1-8)."""
    transforms = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda a: np.rot90(a, k=1),
    }
    transform = transforms.get(orientation)
    return np.ascontiguousarray(transform(array)) if transform else array


def _split_channels(array: np.ndarray, icc_profile: bytes | None, notes: list[str]) -> LoadedImage:
    bit_depth = 16 if array.dtype == np.uint16 else 8
    data = array.astype(np.float32) / (65535.0 if bit_depth == 16 else 255.0)
    channels = data.shape[2]
    grayscale = channels in (1, 2)
    color = data[..., :1] if grayscale else data[..., :3]
    alpha = data[..., -1] if channels in (2, 4) else None
    if alpha is not None and bool(np.all(alpha >= 1.0)):
        alpha = None  # an opaque alpha channel carries nothing; saves upscaling it
    rgb = np.repeat(color, 3, axis=2) if grayscale else color
    return LoadedImage(np.ascontiguousarray(rgb), alpha, grayscale, bit_depth, icc_profile, notes)


def output_format(path: str | os.PathLike) -> str:
    """Pillow format name for ``path``'s extension; :class:`ImageError` for unsupported ones."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ImageError(f"cannot write {Path(path).name}: use one of the extensions {', '.join(sorted(FORMATS))}")
    return FORMATS[suffix]


def check_output_size(path: str | os.PathLike, width: int, height: int) -> None:
    """Raise :class:`ImageError` when a ``width`` x ``height`` image cannot be stored in ``path``'s format."""
    fmt = output_format(path)
    limit = MAX_SIDE.get(fmt)
    if limit is not None and max(width, height) > limit:
        raise ImageError(
            f"{Path(path).name} would be {width}x{height} pixels, but {fmt} holds at most {limit} pixels per side;"
            " write PNG or TIFF instead (--ext png)"
        )


def peek_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(width, height)`` of an image as displayed (EXIF orientation applied), from its header alone.

    ``None`` when the file cannot be read as an image: reading it properly reports that later.
    """
    # A TIFF from its stored size: newer Pillow versions report a TIFF's size with its orientation applied
    size = _peek_tiff(Path(path))
    if size is None:
        try:
            with _pillow_bomb_check_disabled(), Image.open(path) as img:
                size = (*img.size, img.getexif().get(0x0112, 1))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
            return None
    width, height, orientation = size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _peek_tiff(path: Path) -> tuple[int, int, int] | None:
    """``(width, height, orientation)`` of a TIFF's first page from its header, or ``None``."""
    import tifffile

    try:
        if not _is_tiff(path):
            return None
        with _tifffile_quiet(), tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            return page.imagewidth, page.imagelength, int(page.tags.valueof(274, 1))
    except (OSError, ValueError, KeyError, IndexError, tifffile.TiffFileError):
        return None


@dataclass(frozen=True)
class OutputLayout:
    """What an output file stores per pixel, once its format's limits are applied.

    Attributes:
        fmt: Pillow format name ("PNG", "JPEG", "WEBP", "TIFF").
        grayscale: one colour sample per pixel instead of three.
        alpha: an alpha sample follows the colour.
        bit_depth: 8 or 16 bits per sample.
        notes: what the format could not keep (16 bits, alpha), for the user.
    """

    fmt: str
    grayscale: bool
    alpha: bool
    bit_depth: int
    notes: tuple[str, ...] = ()

    @property
    def channels(self) -> int:
        return (1 if self.grayscale else 3) + self.alpha

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        return np.uint16 if self.bit_depth == 16 else np.uint8

    def estimated_file_bytes(self, width: int, height: int) -> int:
        """A typical file size: the raw samples times a compression ratio measured on upscaled photos."""
        raw = width * height * self.channels * (self.bit_depth // 8)
        return int(raw * _TYPICAL_COMPRESSION[self.fmt])


def output_layout(path: str | os.PathLike, grayscale: bool, alpha: bool, bit_depth: int) -> OutputLayout:
    """The layout ``path``'s format can hold for an image with these properties, and notes on what is lost."""
    path = Path(path)
    fmt = output_format(path)
    notes: list[str] = []
    if bit_depth == 16 and fmt not in _SIXTEEN_BIT_FORMATS:
        notes.append(f"{path.name}: {fmt} holds 8 bits per sample; the 16-bit result was reduced to 8 bits")
        bit_depth = 8
    if alpha and fmt == "JPEG":
        notes.append(f"{path.name}: JPEG has no transparency; the alpha channel was dropped")
        alpha = False
    return OutputLayout(fmt, grayscale, alpha, bit_depth, tuple(notes))


def to_pixels(rgb: np.ndarray, alpha: np.ndarray | None, layout: OutputLayout) -> np.ndarray:
    """Float ``rgb`` ``(h, W, 3)`` and ``alpha`` ``(h, W)`` in [0, 1] -> ``(h, W, layout.channels)`` samples.

    Grayscale layouts keep the mean of the three channels; ``alpha`` is dropped when the layout has none.
    """
    color = rgb.mean(axis=2, keepdims=True) if layout.grayscale else rgb
    planes = [color] if alpha is None or not layout.alpha else [color, alpha[..., None]]
    return quantize(planes[0] if len(planes) == 1 else np.concatenate(planes, axis=2), layout.bit_depth)


def write_image(
    path: str | os.PathLike,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    grayscale: bool = False,
    bit_depth: int = 8,
    icc_profile: bytes | None = None,
    quality: int = 95,
    overwrite: bool = False,
    compression: int = DEFAULT_COMPRESSION,
) -> list[str]:
    """Write ``rgb`` ``(H, W, 3)``, float in [0, 1] or uint8 levels (and float ``alpha`` ``(H, W)`` in [0, 1])
    to ``path``, atomically; missing folders are created.

    Returns notes for the user (bits or alpha the format cannot hold). Raises :class:`ImageError` when
    ``path`` exists and ``overwrite`` is false, or when writing fails; a failed write leaves no file behind.
    """
    layout = output_layout(path, grayscale, alpha is not None, bit_depth)
    if rgb.dtype == np.uint8:  # k / 255 in float32 quantizes back to k, at 8 and at 16 bits (257 k)
        rgb = rgb.astype(np.float32) / np.float32(255)
    height, width = rgb.shape[:2]
    pixels = to_pixels(rgb, alpha, layout)
    write_pixel_bands(path, [pixels], width, height, layout, icc_profile, quality, overwrite, compression)
    return list(layout.notes)


def write_pixel_bands(
    path: str | os.PathLike,
    bands: Iterable[np.ndarray],
    width: int,
    height: int,
    layout: OutputLayout,
    icc_profile: bytes | None = None,
    quality: int = 95,
    overwrite: bool = False,
    compression: int = DEFAULT_COMPRESSION,
    text: Mapping[str, str] | None = None,
) -> None:
    """Write an image given as row bands ``(rows, width, layout.channels)`` of ``layout.dtype``, top to bottom.

    PNG and TIFF are encoded band by band as they arrive, so only a band is in memory; JPEG and WebP
    encoders need the whole image, which is assembled in uint8 (memory-mapped next to ``path`` when it is
    larger than the free memory). ``bands`` may compute its rows lazily: this drives it. ``compression`` is
    the zlib level of PNG and TIFF (0-9); ``text``: key -> value notes kept in a PNG (iTXt chunks, UTF-8),
    ignored by the other formats. The file appears at ``path`` only when complete (temporary file,
    fsync, rename); it is never replaced unless ``overwrite``. Raises :class:`ImageError`, or
    :class:`DiskFullError` when the disk fills up.
    """
    path = Path(path)
    check_output_size(path, width, height)
    try:
        with atomic_file(path, overwrite=overwrite) as handle:
            _encode(handle, bands, width, height, layout, icc_profile, quality, compression, path.parent, text)
    except DestinationExistsError:
        raise ImageError(f"{path} already exists (pass --overwrite to replace it)") from None
    except (OSError, ValueError) as err:  # e.g. a file where a folder should be, a read-only or full disk
        raise _write_error(path, err) from None


class DiskFullError(SRFormerError):
    """The disk of the output folder is (or would be) full. Not a per-image failure: nothing after it fits."""


def check_free_space(path: str | os.PathLike, needed: int) -> None:
    """Raise :class:`DiskFullError` when the disk holding ``path``'s folder has less than ``needed`` bytes free."""
    folder = Path(path).parent
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DiskFullError(
            f"{Path(path).name} needs about {_size(needed)} but the disk holding {folder} has {_size(free)} free;"
            " free some space or choose another output folder"
        )


def _size(count: int) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def _write_error(path: Path, err: Exception) -> SRFormerError:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(
            f"the disk holding {path.parent} is full; {path.name} was not written, and no part of it was left"
        )
    return ImageError(f"cannot write {path}: {_reason(err)}")


def _encode(
    handle: BinaryIO,
    bands: Iterable[np.ndarray],
    width: int,
    height: int,
    layout: OutputLayout,
    icc_profile: bytes | None,
    quality: int,
    compression: int,
    folder: Path,
    text: Mapping[str, str] | None = None,
) -> None:
    """Encode row bands ``(rows, width, C)`` (C: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) as ``layout.fmt``."""
    rows = _counted_rows(bands, width, height, layout.channels)
    if layout.fmt == "PNG":
        _write_png(handle, rows, width, height, layout, icc_profile, compression, text)
    elif layout.fmt == "TIFF":
        _write_tiff(handle, rows, width, height, layout, icc_profile, compression)
    else:
        _write_with_pillow(handle, rows, width, height, layout, icc_profile, quality, folder)


def _counted_rows(bands: Iterable[np.ndarray], width: int, height: int, channels: int) -> Iterator[np.ndarray]:
    """``bands`` checked: each ``(rows, width, channels)``, ``height`` rows in all (a mismatch is a bug)."""
    done = 0
    for band in bands:
        if band.ndim != 3 or band.shape[1:] != (width, channels):
            raise ValueError(f"a band of shape {band.shape} in a {width}-wide image of {channels} channels")
        done += band.shape[0]
        if done > height:
            raise ValueError(f"more than the {height} rows of the image")
        yield band
    if done != height:
        raise ValueError(f"{done} rows of an image {height} rows high")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _write_png(
    handle: BinaryIO,
    bands: Iterable[np.ndarray],
    width: int,
    height: int,
    layout: OutputLayout,
    icc_profile: bytes | None,
    compression: int,
    text: Mapping[str, str] | None = None,
) -> None:
    """A PNG of any layout, streamed: each band is filtered, compressed and written as it arrives.

    Every row uses the "Up" filter (byte-wise difference to the row above), which compresses upscaled photos
    almost as well as Pillow's per-row adaptive choice and costs one vectorised subtraction.
    """
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[layout.channels]
    header = struct.pack(">IIBBBBB", width, height, layout.bit_depth, color_type, 0, 0, 0)
    handle.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header))
    if icc_profile:
        handle.write(_png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc_profile)))
    for key, value in (text or {}).items():  # iTXt: keyword, no compression, no language, UTF-8 text
        handle.write(_png_chunk(b"iTXt", key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode()))
    compressor = zlib.compressobj(compression)
    row_bytes = width * layout.channels * layout.bit_depth // 8
    above = np.zeros(row_bytes, dtype=np.uint8)  # the row above the first one counts as zeros
    for band in bands:
        samples = band.astype(">u2") if layout.bit_depth == 16 else band
        rows = np.ascontiguousarray(samples).reshape(len(band), -1).view(np.uint8)
        scanlines = np.empty((len(band), 1 + row_bytes), dtype=np.uint8)
        scanlines[:, 0] = 2  # filter type "Up"
        np.subtract(rows[:1], above, out=scanlines[:1, 1:])
        np.subtract(rows[1:], rows[:-1], out=scanlines[1:, 1:])
        above = rows[-1].copy()
        compressed = compressor.compress(scanlines)
        if compressed:
            handle.write(_png_chunk(b"IDAT", compressed))
    handle.write(_png_chunk(b"IDAT", compressor.flush()) + _png_chunk(b"IEND", b""))


def _write_tiff(
    handle: BinaryIO,
    bands: Iterable[np.ndarray],
    width: int,
    height: int,
    layout: OutputLayout,
    icc_profile: bytes | None,
    compression: int,
) -> None:
    """A deflate-compressed TIFF written strip by strip, BigTIFF beyond classic TIFF's 4 GiB.

    tifffile lays out the file; the strips are compressed here (zlib, as TIFF's deflate wants) and handed to
    it as bytes, the one form in which it writes them as they come instead of gathering the whole image.
    """
    import tifffile

    row_bytes = width * layout.channels * layout.bit_depth // 8
    rows_per_strip = max(1, _TIFF_STRIP_BYTES // row_bytes)
    little_endian = np.dtype(layout.dtype).newbyteorder("<")
    strips = (
        zlib.compress(np.ascontiguousarray(strip, dtype=little_endian), compression)
        for strip in _rebanded(bands, rows_per_strip)
    )
    with tifffile.TiffWriter(handle, bigtiff=height * row_bytes > 2**31, byteorder="<") as tiff:
        tiff.write(
            strips,
            shape=(height, width, layout.channels),
            dtype=little_endian,
            photometric="minisblack" if layout.grayscale else "rgb",
            extrasamples=["unassalpha"] if layout.alpha else None,
            rowsperstrip=rows_per_strip,
            compression="zlib",
            iccprofile=icc_profile,
        )


def _rebanded(bands: Iterable[np.ndarray], rows: int) -> Iterator[np.ndarray]:
    """The rows of ``bands`` regrouped into bands of exactly ``rows`` rows (the last one may have fewer)."""
    pending: list[np.ndarray] = []
    count = 0
    for band in bands:
        start = 0
        while start < len(band):
            take = min(rows - count, len(band) - start)
            pending.append(band[start : start + take])
            count, start = count + take, start + take
            if count == rows:
                yield pending[0] if len(pending) == 1 else np.concatenate(pending)
                pending, count = [], 0
    if pending:
        yield np.concatenate(pending)


def _write_with_pillow(
    handle: BinaryIO,
    bands: Iterable[np.ndarray],
    width: int,
    height: int,
    layout: OutputLayout,
    icc_profile: bytes | None,
    quality: int,
    folder: Path,
) -> None:
    """JPEG or WebP: the whole image assembled once, in a layout Pillow encodes without copying it again.

    Pillow keeps RGB images as 4 bytes per pixel, so the canvas is RGBX (gray+alpha becomes RGBA); Pillow
    then maps the canvas itself instead of holding a second copy.
    """
    mode = {1: "L", 2: "RGBA", 3: "RGBX", 4: "RGBA"}[layout.channels]
    with _canvas((height, width, len(mode)), folder) as canvas:
        top = 0
        for band in bands:
            rows = canvas[top : top + len(band)]
            top += len(band)
            if layout.channels in (1, 4):
                rows[...] = band
                continue
            rows[..., :3] = band[..., :1] if layout.grayscale else band[..., :3]
            rows[..., 3] = band[..., 1] if layout.alpha else 255
        image = Image.frombuffer(mode, (width, height), canvas, "raw", mode, 0, 1)
        options: dict[str, object] = {"quality": quality}
        if icc_profile:
            options["icc_profile"] = icc_profile
        image.save(handle, format=layout.fmt, **options)


@contextlib.contextmanager
def _canvas(shape: tuple[int, int, int], folder: Path) -> Iterator[np.ndarray]:
    """An uncleared uint8 array of ``shape``: in memory, or memory-mapped in a temporary file in ``folder``
    (removed at the end) when it would take more than half of the free memory."""
    import torch

    from srformer.inference import available_memory

    nbytes = math.prod(shape)
    if nbytes <= available_memory(torch.device("cpu")) // 2:
        yield np.empty(shape, dtype=np.uint8)
        return
    with tempfile.TemporaryFile(dir=folder) as backing:
        backing.truncate(nbytes)
        yield np.memmap(backing, dtype=np.uint8, mode="r+", shape=shape)
