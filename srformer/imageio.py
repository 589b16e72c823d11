"""Reading and writing real-world images for inference.

:func:`read_image` turns whatever a user hands over into float RGB in [0, 1] plus what is needed to write the
result back faithfully: an alpha plane (upscaled separately by the caller), whether the source was grayscale,
its bit depth (8 or 16) and its ICC profile. It applies the EXIF orientation, converts palette, CMYK and other
modes, takes the first frame of animations (with a warning), and refuses images over a pixel limit *before*
decoding them, from the header alone.

:func:`write_image` picks the format from the extension (png, jpg/jpeg, webp, tif/tiff), keeps 16 bits where
the format allows (PNG, TIFF), writes through a temporary file and a rename so a crash never leaves a half
written file, and never replaces an existing file unless asked to.

Pillow decodes 16-bit RGB(A) PNGs to 8 bits. To keep all 16 bits without another dependency the PNG is decoded
twice by Pillow's own (unfiltering) decoder, once taking the high and once the low byte of every sample.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from srformer.errors import ImageError

#: Default limit on width * height of an input: about 16k x 12k, far beyond a photo, well below a bomb.
DEFAULT_MAX_PIXELS = 200_000_000

#: Output formats by extension, as Pillow names them.
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}

#: Extensions picked up when a folder is given as input.
INPUT_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".tga", ".ppm", ".pgm", ".pnm"}
)

_SIXTEEN_BIT_FORMATS = {"PNG", "TIFF"}


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
    try:
        with _pillow_bomb_check_disabled(), Image.open(path) as img:
            width, height = img.size
            if width < 1 or height < 1:
                raise ImageError(f"{path.name} has no pixels ({width}x{height})")
            if max_pixels is not None and width * height > max_pixels:
                raise ImageError(
                    f"{path.name} is {width}x{height} = {_pixel_count(width * height)}, over the limit of "
                    f"{_pixel_count(max_pixels)} (raise it with --max-pixels if the file is trusted)"
                )
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
    array = _apply_orientation(array, orientation)
    return _split_channels(array, icc_profile, notes)


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
    """Decode ``path`` once per raw mode into an image of ``mode``; the PNG decoder unfilters, the raw mode unpacks."""
    arrays = []
    for rawmode in rawmodes:
        with Image.open(path) as img:
            img._mode = mode  # same bytes per pixel as the file's mode (see the callers)
            img.tile = [
                tile._replace(args=(rawmode, *tile.args[1:]))
                if isinstance(tile.args, tuple)
                else tile._replace(args=rawmode)
                for tile in img.tile
            ]
            img.load()
            arrays.append(np.asarray(img))
    return arrays


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


def quantize(data: np.ndarray, bit_depth: int) -> np.ndarray:
    """float in [0, 1] -> uint8 or uint16 (rounded, clipped)."""
    peak, dtype = (65535.0, np.uint16) if bit_depth == 16 else (255.0, np.uint8)
    return np.round(np.clip(data, 0.0, 1.0) * peak).astype(dtype)


def write_image(
    path: str | os.PathLike,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    grayscale: bool = False,
    bit_depth: int = 8,
    icc_profile: bytes | None = None,
    quality: int = 95,
    overwrite: bool = False,
) -> list[str]:
    """Write float ``rgb`` ``(H, W, 3)`` (and ``alpha`` ``(H, W)``) in [0, 1] to ``path``, atomically.

    Returns notes for the user (bits or alpha the format cannot hold). Raises :class:`ImageError` when
    ``path`` exists and ``overwrite`` is false, or when writing fails; a failed write leaves no file behind.
    """
    path = Path(path)
    fmt = output_format(path)
    notes: list[str] = []
    if bit_depth == 16 and fmt not in _SIXTEEN_BIT_FORMATS:
        notes.append(f"{path.name}: {fmt} holds 8 bits per sample; the 16-bit result was reduced to 8 bits")
        bit_depth = 8
    if alpha is not None and fmt == "JPEG":
        notes.append(f"{path.name}: JPEG has no transparency; the alpha channel was dropped")
        alpha = None
    color = rgb.mean(axis=2, keepdims=True) if grayscale else rgb
    planes = [color] if alpha is None else [color, alpha[..., None]]
    pixels = quantize(np.concatenate(planes, axis=2), bit_depth)
    if not overwrite and path.exists():
        raise ImageError(f"{path} already exists (pass --overwrite to replace it)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".tmp", dir=path.parent)
    except OSError as err:  # e.g. a file where a folder should be, a read-only or full disk
        raise ImageError(f"cannot write {path}: {_reason(err)}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            _encode(handle, pixels, fmt, icc_profile, quality)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the file the user's usual mode
        _publish(tmp, path, overwrite)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, ImageError):
            raise
        if isinstance(err, (OSError, ValueError)):
            raise ImageError(f"cannot write {path}: {_reason(err)}") from None
        raise
    return notes


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished temporary file into place; without ``overwrite`` never replace an existing file."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic "create if absent": fails if another process wrote path meanwhile
    except FileExistsError:
        raise ImageError(f"{path} already exists (pass --overwrite to replace it)") from None
    except OSError:  # file systems without hard links
        if path.exists():
            raise ImageError(f"{path} already exists (pass --overwrite to replace it)") from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def _encode(handle, pixels: np.ndarray, fmt: str, icc_profile: bytes | None, quality: int) -> None:
    """Encode ``(H, W, C)`` uint8/uint16 pixels (C: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) in ``fmt``."""
    channels = pixels.shape[2]
    if pixels.dtype == np.uint16:
        if fmt == "PNG" and channels > 1:
            handle.write(_png_sixteen_bit(pixels, icc_profile))
            return
        if fmt == "TIFF" and channels > 1:
            _tiff_sixteen_bit(handle, pixels, icc_profile)
            return
        image = Image.fromarray(pixels[..., 0])  # 16-bit grayscale: Pillow's "I;16"
    else:
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
        image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode=mode)
    options: dict[str, object] = {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = quality
    if fmt == "TIFF":
        options["compression"] = "tiff_deflate"
    image.save(handle, format=fmt, **options)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_sixteen_bit(pixels: np.ndarray, icc_profile: bytes | None) -> bytes:
    """A 16-bit gray+alpha, RGB or RGBA PNG (Pillow writes none of these), rows with the "Up" filter."""
    height, width, channels = pixels.shape
    color_type = {2: 4, 3: 2, 4: 6}[channels]
    rows = pixels.astype(">u2").reshape(height, width * channels).view(np.uint8)
    # "Up" filter (type 2): byte-wise difference to the previous row, which compresses photos well.
    filtered = rows.copy()
    filtered[1:] = rows[1:] - rows[:-1]
    scanlines = np.concatenate([np.full((height, 1), 2, dtype=np.uint8), filtered], axis=1)
    chunks = [_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0))]
    if icc_profile:
        chunks.append(_png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc_profile)))
    chunks.append(_png_chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 6)))
    chunks.append(_png_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def _tiff_sixteen_bit(handle, pixels: np.ndarray, icc_profile: bytes | None) -> None:
    try:
        import tifffile
    except ImportError:
        raise ImageError("writing 16-bit colour TIFF needs the tifffile package (pip install tifffile)") from None
    extratags = [(34675, 7, len(icc_profile), icc_profile, True)] if icc_profile else []
    photometric = "minisblack" if pixels.shape[2] == 2 else "rgb"
    extrasamples = ["unassalpha"] if pixels.shape[2] in (2, 4) else None
    buffer = io.BytesIO()  # tifffile wants a named file or a buffer, not a raw descriptor
    tifffile.imwrite(
        buffer, pixels, photometric=photometric, compression="zlib", extrasamples=extrasamples, extratags=extratags
    )
    handle.write(buffer.getvalue())
