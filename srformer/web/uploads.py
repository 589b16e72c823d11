"""Checking an uploaded file before it takes a place in the queue: one sentence for every way it can be bad.

The file is refused, in this order: when empty; when it is not one of the image formats
:data:`UPLOAD_FORMATS` (Pillow identifies the format from the bytes, never from the client's file name, and
only these decoders run: no EPS/Ghostscript or other exotic ones); when its header says it has more pixels than
the server's limit (before any pixel is decoded: a decompression bomb costs nothing); and when it cannot be
decoded whole by the reader ``srformer upscale`` uses (a truncated PNG or JPEG, a corrupt one).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from srformer.errors import ImageError, SRFormerError
from srformer.imageio import read_image

#: Formats accepted, as Pillow names them -> the extension the upload is stored with (which decides the
#: result's format, as the input's extension does for ``srformer upscale``).
UPLOAD_FORMATS = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "MPO": ".jpg",  # the JPEG variant many cameras and phones write (opened by the JPEG decoder)
    "WEBP": ".webp",
    "TIFF": ".tif",
    "BMP": ".bmp",
    "GIF": ".gif",
    "PPM": ".ppm",
}


class UploadError(SRFormerError):
    """An upload the server refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UploadInfo:
    """A checked upload: its format's extension and its size in pixels."""

    suffix: str
    width: int
    height: int


def megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} MP"


def check_upload(path: Path, max_pixels: int) -> UploadInfo:
    """Check the uploaded file ``path`` (see the module docstring); raises :class:`UploadError`."""
    if path.stat().st_size == 0:
        raise UploadError("the uploaded file is empty; choose an image file")
    Image.init()  # registers every plugin, so that ``formats`` below can name them
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit is checked below
            with Image.open(path, formats=[name for name in UPLOAD_FORMATS if name != "MPO"]) as image:
                fmt, (width, height) = image.format, image.size
    except Image.DecompressionBombError:
        raise UploadError(f"the image has more pixels than the limit of {megapixels(max_pixels)}", 413) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        if "truncated" in str(err).lower():  # a known format, cut off within its headers
            raise UploadError("the uploaded image is truncated (its headers end early)") from None
        kinds = ", ".join(sorted({suffix.lstrip(".").upper() for suffix in UPLOAD_FORMATS.values()}))
        raise UploadError(f"the uploaded file is not an image this server reads ({kinds})", 415) from None
    if width < 1 or height < 1:
        raise UploadError(f"the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise UploadError(
            f"the image is {width}x{height} = {megapixels(width * height)}, over this server's limit of"
            f" {megapixels(max_pixels)}",
            413,
        )
    suffix = UPLOAD_FORMATS[fmt]
    try:
        read_image(path, max_pixels=max_pixels)
    except ImageError as err:
        reason = str(err).replace(path.name, "the uploaded file")
        raise UploadError(f"{reason}; the file may be truncated or corrupt") from None
    return UploadInfo(suffix, width, height)
