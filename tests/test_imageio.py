"""Reading and writing real-world images: modes, bit depths, orientation, profiles, limits, atomic writes."""

from __future__ import annotations

import errno
import io
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from srformer import imageio
from srformer.errors import ImageError
from srformer.imageio import read_image, write_image

RNG = np.random.default_rng(0)


def _png16_reference(pixels: np.ndarray) -> bytes:
    """An independent minimal 16-bit RGB PNG encoder (filter type 0), for reading tests."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_rgba_keeps_alpha_and_round_trips(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, (7, 9, 4), dtype=np.uint8)
    pixels[0, 0, 3] = 0
    Image.fromarray(pixels, "RGBA").save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.alpha is not None and not image.grayscale and image.bit_depth == 8
    np.testing.assert_array_equal(imageio.quantize(image.rgb, 8), pixels[..., :3])
    np.testing.assert_array_equal(imageio.quantize(image.alpha, 8), pixels[..., 3])
    write_image(tmp_path / "b.png", image.rgb, image.alpha)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png")), pixels)


def test_opaque_alpha_is_dropped(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, (4, 5, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    Image.fromarray(pixels, "RGBA").save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png").alpha is None


def test_grayscale_in_grayscale_out(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
    Image.fromarray(pixels, "L").save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    assert image.grayscale and image.rgb.shape == (6, 5, 3)
    np.testing.assert_array_equal(imageio.quantize(image.rgb[..., 1], 8), pixels)
    write_image(tmp_path / "out.png", image.rgb, grayscale=True)
    written = Image.open(tmp_path / "out.png")
    assert written.mode == "L"
    np.testing.assert_array_equal(np.asarray(written), pixels)


def test_sixteen_bit_gray_keeps_all_bits(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 65536, (5, 8), dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "g16.png")
    image = read_image(tmp_path / "g16.png")
    assert image.bit_depth == 16 and image.grayscale
    np.testing.assert_array_equal(imageio.quantize(image.rgb[..., 0], 16), pixels)
    write_image(tmp_path / "o.png", image.rgb, grayscale=True, bit_depth=16)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.png")).astype(np.uint16), pixels)


def test_sixteen_bit_rgb_png_read_exactly(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    (tmp_path / "c16.png").write_bytes(_png16_reference(pixels))
    image = read_image(tmp_path / "c16.png")
    assert image.bit_depth == 16 and not image.grayscale
    np.testing.assert_array_equal(imageio.quantize(image.rgb, 16), pixels)


def test_sixteen_bit_rgba_png_written_exactly(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 65536, (5, 6, 4), dtype=np.uint16)
    rgb, alpha = pixels[..., :3] / 65535.0, pixels[..., 3] / 65535.0
    write_image(tmp_path / "o.png", rgb, alpha, bit_depth=16)
    # Independent check: Pillow decodes 16-bit RGBA to 8 bits by taking the high byte of each sample.
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.png")), (pixels >> 8).astype(np.uint8))
    back = read_image(tmp_path / "o.png")
    np.testing.assert_array_equal(imageio.quantize(back.rgb, 16), pixels[..., :3])
    np.testing.assert_array_equal(imageio.quantize(back.alpha, 16), pixels[..., 3])


def test_sixteen_bit_tiff_and_eight_bit_fallback(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    pixels = RNG.integers(0, 65536, (4, 6, 3), dtype=np.uint16)
    write_image(tmp_path / "o.tiff", pixels / 65535.0, bit_depth=16)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "o.tiff"), pixels)
    notes = write_image(tmp_path / "o.jpg", pixels / 65535.0, bit_depth=16)
    assert any("8 bits" in n for n in notes)


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    palette = Image.fromarray(rgb).convert("P")
    palette.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(imageio.quantize(image.rgb, 8), np.asarray(palette.convert("RGB")))
    assert image.alpha is None
    palette.save(tmp_path / "pt.png", transparency=palette.getpixel((0, 0)))
    alpha = read_image(tmp_path / "pt.png").alpha
    assert alpha is not None and alpha[0, 0] == 0.0 and alpha.max() == 1.0


def test_cmyk_converted_to_rgb(tmp_path: Path) -> None:
    cmyk = Image.fromarray(RNG.integers(0, 256, (6, 6, 4), dtype=np.uint8), "CMYK")
    cmyk.save(tmp_path / "c.tiff")
    image = read_image(tmp_path / "c.tiff")
    np.testing.assert_array_equal(imageio.quantize(image.rgb, 8), np.asarray(cmyk.convert("RGB")))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    pixels = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(tmp_path / "e.png", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "e.png")).convert("RGB"))
    image = read_image(tmp_path / "e.png")
    np.testing.assert_array_equal(imageio.quantize(image.rgb, 8), expected)
    if orientation >= 5:
        assert image.rgb.shape[:2] == (7, 5)


def test_animated_image_first_frame_with_warning(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (6, 4), color) for color in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    image = read_image(tmp_path / "anim.gif")
    assert any("2 frames" in note for note in image.warnings)
    np.testing.assert_allclose(image.rgb[0, 0], [1.0, 0.0, 0.0], atol=1 / 255)


def test_icc_profile_kept(tmp_path: Path) -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    pixels = RNG.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "i.png", icc_profile=profile)
    image = read_image(tmp_path / "i.png")
    assert image.icc_profile == profile
    for name, bits in (("o.png", 8), ("o.jpg", 8), ("o.webp", 8), ("o16.png", 16)):
        write_image(tmp_path / name, image.rgb, bit_depth=bits, icc_profile=image.icc_profile)
        assert Image.open(tmp_path / name).info.get("icc_profile") == profile, name


def test_pixel_limit_checked_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("RGB", (100, 80)).save(tmp_path / "big.png")

    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("decoded an image over the limit")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    with pytest.raises(ImageError, match="over the limit"):
        read_image(tmp_path / "big.png", max_pixels=7999)


def test_pillow_global_limit_restored(tmp_path: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    Image.new("RGB", (3, 3)).save(tmp_path / "s.png")
    read_image(tmp_path / "s.png", max_pixels=None)
    assert before == Image.MAX_IMAGE_PIXELS


def _truncated(pixels: np.ndarray) -> bytes:
    data = _png16_reference(pixels)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "content",
    [b"", b"not an image at all", _truncated(RNG.integers(0, 65536, (32, 32, 3), dtype=np.uint16))],
    ids=["empty", "text", "truncated"],
)
def test_corrupt_files_raise_image_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(ImageError, match="bad.png"):
        read_image(tmp_path / "bad.png")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not found"):
        read_image(tmp_path / "nope.png")


def test_write_never_overwrites_without_permission(tmp_path: Path) -> None:
    target = tmp_path / "o.png"
    target.write_bytes(b"precious")
    with pytest.raises(ImageError, match="already exists"):
        write_image(target, np.zeros((2, 2, 3)))
    assert target.read_bytes() == b"precious"
    write_image(target, np.zeros((2, 2, 3)), overwrite=True)
    assert Image.open(target).size == (2, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]  # no temporary files left


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(handle: io.BufferedWriter, *args: object) -> None:
        handle.write(b"half an image")
        raise OSError("disk full")

    monkeypatch.setattr(imageio, "_encode", crash)
    with pytest.raises(ImageError, match="disk full"):
        write_image(tmp_path / "sub" / "o.png", np.zeros((2, 2, 3)))
    assert list((tmp_path / "sub").iterdir()) == []


def test_output_format_from_extension(tmp_path: Path) -> None:
    rgb = RNG.random((6, 6, 3))
    for ext, fmt in ((".png", "PNG"), (".jpg", "JPEG"), (".jpeg", "JPEG"), (".webp", "WEBP"), (".tif", "TIFF")):
        write_image(tmp_path / f"o{ext}", rgb)
        assert Image.open(tmp_path / f"o{ext}").format == fmt
    with pytest.raises(ImageError, match="extensions"):
        write_image(tmp_path / "o.xyz", rgb)
    notes = write_image(tmp_path / "a.jpg", rgb, alpha=np.ones((6, 6)) * 0.5)
    assert any("alpha" in n for n in notes)


def test_sixteen_bit_gray_alpha_png_round_trip(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 65536, (5, 6, 2), dtype=np.uint16)
    gray = np.repeat(pixels[..., :1] / 65535.0, 3, axis=2)
    write_image(tmp_path / "la.png", gray, pixels[..., 1] / 65535.0, grayscale=True, bit_depth=16)
    # Independent check: Pillow reads 16-bit LA as 8-bit RGBA from the high bytes.
    eight = np.asarray(Image.open(tmp_path / "la.png"))
    np.testing.assert_array_equal(eight[..., 0], (pixels[..., 0] >> 8).astype(np.uint8))
    np.testing.assert_array_equal(eight[..., 3], (pixels[..., 1] >> 8).astype(np.uint8))
    image = read_image(tmp_path / "la.png")
    assert image.grayscale and image.bit_depth == 16
    np.testing.assert_array_equal(imageio.quantize(image.rgb[..., 0], 16), pixels[..., 0])
    np.testing.assert_array_equal(imageio.quantize(image.alpha, 16), pixels[..., 1])


def test_written_files_get_the_usual_permissions(tmp_path):
    """Atomic writes go through a 0600 temporary file; the result must have the umask's usual mode."""
    import os

    mask = os.umask(0o022)
    try:
        out = tmp_path / "x.png"
        write_image(out, np.zeros((4, 5, 3), dtype=np.float32))
    finally:
        os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o644


def _bands(pixels: np.ndarray, heights: list[int]) -> list[np.ndarray]:
    """``pixels`` cut into row bands of the given heights (the rest in a last band)."""
    edges = np.cumsum([0, *heights, len(pixels) - sum(heights)])
    return [pixels[top:bottom] for top, bottom in zip(edges, edges[1:], strict=False) if bottom > top]


@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_banded_png_round_trips(tmp_path: Path, channels: int, bit_depth: int) -> None:
    dtype = np.uint16 if bit_depth == 16 else np.uint8
    pixels = RNG.integers(0, np.iinfo(dtype).max + 1, (11, 7, channels), dtype=dtype)
    layout = imageio.OutputLayout("PNG", grayscale=channels < 3, alpha=channels in (2, 4), bit_depth=bit_depth)
    imageio.write_pixel_bands(tmp_path / "b.png", _bands(pixels, [1, 4, 3]), 7, 11, layout)
    if bit_depth == 8:  # Pillow decodes every 8-bit layout exactly
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png")).reshape(pixels.shape), pixels)
    elif channels == 1:  # Pillow keeps 16-bit gray
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png")).astype(np.uint16), pixels[..., 0])
    else:  # Pillow decodes the high bytes (16-bit LA as RGBA), read_image all 16 bits
        eight = np.asarray(Image.open(tmp_path / "b.png"))
        np.testing.assert_array_equal(eight[..., [0, 3]] if channels == 2 else eight, (pixels >> 8).astype(np.uint8))
        back = read_image(tmp_path / "b.png")
        colour = channels - 1 if channels in (2, 4) else channels
        np.testing.assert_array_equal(imageio.quantize(back.rgb[..., :colour], 16), pixels[..., :colour])
        if channels in (2, 4):
            np.testing.assert_array_equal(imageio.quantize(back.alpha, 16), pixels[..., -1])


@pytest.mark.parametrize(("channels", "bit_depth"), [(3, 8), (4, 16), (2, 8), (1, 16)])
def test_banded_tiff_round_trips_over_many_strips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, channels: int, bit_depth: int
) -> None:
    tifffile = pytest.importorskip("tifffile")
    monkeypatch.setattr(imageio, "_TIFF_STRIP_BYTES", 64)  # strips of a row or two: bands are regrouped
    dtype = np.uint16 if bit_depth == 16 else np.uint8
    pixels = RNG.integers(0, np.iinfo(dtype).max + 1, (13, 9, channels), dtype=dtype)
    layout = imageio.OutputLayout("TIFF", grayscale=channels < 3, alpha=channels in (2, 4), bit_depth=bit_depth)
    imageio.write_pixel_bands(tmp_path / "b.tif", _bands(pixels, [5, 1, 4]), 9, 13, layout)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "b.tif").reshape(pixels.shape), pixels)
    if bit_depth == 8:
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.tif")).reshape(pixels.shape), pixels)


def test_rebanded_regroups_rows_exactly() -> None:
    rows = np.arange(23)[:, None, None]
    regrouped = list(imageio._rebanded(_bands(rows, [1, 7, 2, 9]), 5))
    assert [len(band) for band in regrouped] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate(regrouped), rows)


@pytest.mark.parametrize(("name", "width", "limit"), [("o.jpg", 65_536, 65_535), ("o.webp", 16_384, 16_383)])
def test_format_size_limits_are_one_sentence(tmp_path: Path, name: str, width: int, limit: int) -> None:
    with pytest.raises(ImageError, match=rf"at most {limit} pixels per side; write PNG or TIFF"):
        imageio.check_output_size(tmp_path / name, width, 2)
    imageio.check_output_size(tmp_path / name, limit, limit)
    imageio.check_output_size(tmp_path / "o.png", 10 * width, 2)  # PNG has no such limit
    layout = imageio.output_layout(tmp_path / name, False, False, 8)
    with pytest.raises(ImageError, match="pixels per side"):
        imageio.write_pixel_bands(tmp_path / name, iter(()), width, 2, layout)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["o.png", "o.tif", "o.jpg"])
def test_disk_full_while_writing_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    def disk_full(handle: io.BufferedWriter, *args: object) -> None:
        handle.write(b"half an image")
        raise OSError(errno.ENOSPC, "No space left on device")

    for writer in ("_write_png", "_write_tiff", "_write_with_pillow"):
        monkeypatch.setattr(imageio, writer, disk_full)
    with pytest.raises(imageio.DiskFullError, match="is full; o.* was not written"):
        write_image(tmp_path / name, np.zeros((4, 4, 3)))
    assert list(tmp_path.iterdir()) == []


def test_free_space_checked_against_the_estimate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = imageio.output_layout(tmp_path / "o.png", False, False, 8)
    needed = layout.estimated_file_bytes(8000, 6000)
    assert 0.2 * 8000 * 6000 * 3 < needed < 8000 * 6000 * 3
    monkeypatch.setattr(imageio.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**12, 10**12, 10**6))
    with pytest.raises(imageio.DiskFullError, match=r"o.png needs about 69 MiB but the disk holding .* has 1 MiB free"):
        imageio.check_free_space(tmp_path / "o.png", needed)


def test_large_jpeg_canvas_is_memory_mapped_and_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pixels = RNG.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    layout = imageio.output_layout(tmp_path / "o.jpg", False, False, 8)
    imageio.write_pixel_bands(tmp_path / "in_memory.jpg", _bands(pixels, [3, 8]), 24, 16, layout)
    monkeypatch.setattr("srformer.inference.available_memory", lambda device: 100)  # "no memory left"
    imageio.write_pixel_bands(tmp_path / "mapped.jpg", _bands(pixels, [3, 8]), 24, 16, layout)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in_memory.jpg", "mapped.jpg"]
    assert (tmp_path / "mapped.jpg").read_bytes() == (tmp_path / "in_memory.jpg").read_bytes()


def test_wrong_band_sizes_are_refused(tmp_path: Path) -> None:
    layout = imageio.output_layout(tmp_path / "o.png", False, False, 8)
    with pytest.raises(ImageError, match="rows of an image 4 rows high"):
        imageio.write_pixel_bands(tmp_path / "o.png", [np.zeros((3, 5, 3), np.uint8)], 5, 4, layout)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- 16-bit and float TIFF input
def _full_range(shape: tuple[int, ...]) -> np.ndarray:
    """uint16 samples over the whole range, none a multiple of 257 (an 8-bit value scaled up would be)."""
    pixels = RNG.integers(0, 65536, shape, dtype=np.uint16)
    pixels[pixels % 257 == 0] += 1
    return pixels


@pytest.mark.parametrize(
    ("shape", "options"),
    [
        ((6, 7, 3), {"photometric": "rgb"}),
        ((6, 7, 3), {"photometric": "rgb", "byteorder": ">", "compression": "zlib", "predictor": True}),
        ((3, 6, 7), {"photometric": "rgb", "planarconfig": "separate"}),
        ((6, 7, 4), {"photometric": "rgb", "extrasamples": ["unassalpha"]}),
        ((6, 7, 2), {"photometric": "minisblack", "extrasamples": ["unassalpha"]}),  # Pillow cannot open it
        ((6, 7), {"photometric": "minisblack"}),
    ],
    ids=["rgb", "rgb-big-endian-deflate", "rgb-planar", "rgba", "gray-alpha", "gray"],
)
def test_sixteen_bit_tiff_keeps_all_bits(tmp_path: Path, shape: tuple[int, ...], options: dict) -> None:
    tifffile = pytest.importorskip("tifffile")
    pixels = _full_range(shape)
    tifffile.imwrite(tmp_path / "in.tif", pixels, **options)
    if options.get("planarconfig") == "separate":
        pixels = np.moveaxis(pixels, 0, -1)
    pixels = pixels.reshape(6, 7, -1)
    image = read_image(tmp_path / "in.tif")
    colours = 3 if options["photometric"] == "rgb" else 1
    assert image.bit_depth == 16 and image.grayscale == (colours == 1) and image.warnings == []
    np.testing.assert_array_equal(imageio.quantize(image.rgb[..., :colours], 16), pixels[..., :colours])
    if pixels.shape[2] > colours:
        np.testing.assert_array_equal(imageio.quantize(image.alpha, 16), pixels[..., -1])
    else:
        assert image.alpha is None


def test_sixteen_bit_tiff_orientation_profile_and_pages(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    pixels = _full_range((2, 5, 8, 3))  # two pages; the first one, shown rotated (EXIF orientation 6)
    orientation = (274, "H", 1, 6, True)
    tifffile.imwrite(tmp_path / "r.tif", pixels, photometric="rgb", iccprofile=profile, extratags=[orientation])
    image = read_image(tmp_path / "r.tif")
    assert image.bit_depth == 16 and image.icc_profile == profile
    np.testing.assert_array_equal(imageio.quantize(image.rgb, 16), np.rot90(pixels[0], k=-1))
    assert image.warnings == ["r.tif has 2 frames; only the first one is upscaled"]
    assert imageio.peek_size(tmp_path / "r.tif") == (5, 8)
    with pytest.raises(ImageError, match="over the limit of 39 pixels"):
        read_image(tmp_path / "r.tif", max_pixels=39)


def test_float_tiff_read_with_sixteen_bits(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    rgb = RNG.random((5, 6, 3), dtype=np.float32)
    tifffile.imwrite(tmp_path / "f.tif", rgb, photometric="rgb")  # float RGB: Pillow cannot open it
    image = read_image(tmp_path / "f.tif")
    assert image.bit_depth == 16
    np.testing.assert_allclose(image.rgb, rgb, atol=0.5 / 65535)


def test_gray_alpha_tiff_size_peeked_from_its_header(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "la.tif", _full_range((4, 9, 2)), photometric="minisblack", extrasamples=[2])
    assert imageio.peek_size(tmp_path / "la.tif") == (9, 4)  # Pillow cannot open it; tifffile reads the header


# ------------------------------------------------------------------------------------- 16-bit PNG input
def test_sixteen_bit_png_decoding_uses_pillows_public_api_only() -> None:
    """The 16-bit RGB(A)/LA decoder once set Pillow's private ``Image._mode`` (and rewrote ``img.tile``)."""
    import inspect

    source = inspect.getsource(imageio)
    assert "._mode" not in source and ".tile =" not in source


def _adam7_png16(pixels: np.ndarray, color_type: int) -> bytes:
    """An independent 16-bit PNG encoder with Adam7 interlacing (filter type 0 everywhere)."""
    height, width, _ = pixels.shape
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = pixels[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\x00" + row.astype(">u2").tobytes() for row in sub)
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + imageio._png_chunk(b"IHDR", header)
        + imageio._png_chunk(b"IDAT", zlib.compress(raw))
        + imageio._png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(("channels", "color_type"), [(3, 2), (4, 6), (2, 4)])
def test_interlaced_sixteen_bit_png_read_exactly(tmp_path: Path, channels: int, color_type: int) -> None:
    pixels = _full_range((11, 13, channels))
    (tmp_path / "i.png").write_bytes(_adam7_png16(pixels, color_type))
    image = read_image(tmp_path / "i.png")
    colours = 1 if channels == 2 else 3
    assert image.bit_depth == 16
    np.testing.assert_array_equal(imageio.quantize(image.rgb[..., :colours], 16), pixels[..., :colours])
    if channels in (2, 4):
        np.testing.assert_array_equal(imageio.quantize(image.alpha, 16), pixels[..., -1])


# --------------------------------------------------------------------------- two writers of one file name
def test_publishing_never_replaces_a_file_another_process_just_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other process publishes in the last moment before our rename, on a file system without hard links
    (FAT, some network shares): exactly one of the two keeps the name, the other is told."""
    import os

    target = tmp_path / "o.png"
    other_published = []
    real_replace = os.replace

    def other_process_then_replace(src: object, dst: object) -> None:
        try:  # the other process, following the same protocol: take the name only if it is free
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            target.write_bytes(b"the other process's image")
            other_published.append(True)
        except FileExistsError:
            other_published.append(False)
        real_replace(src, dst)

    def no_hard_links(src: object, dst: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(imageio.os, "link", no_hard_links)
    monkeypatch.setattr(imageio.os, "replace", other_process_then_replace)
    try:
        write_image(target, np.zeros((2, 3, 3)))
        we_published = True
    except ImageError as err:
        assert "already exists" in str(err)
        we_published = False
    assert other_published == [not we_published]  # never both
    if not we_published:
        assert target.read_bytes() == b"the other process's image"
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"]  # no temporary file left


# --------------------------------------------------------------------------- the writer's levels are the scores'
@pytest.mark.parametrize("bits", [8, 16])
def test_written_levels_are_the_scoring_levels(tmp_path: Path, bits: int) -> None:
    """An image of values next to level boundaries is saved with exactly the levels the scoring path gives it."""
    import torch
    from test_pixels import around_boundaries

    from srformer.pixels import quantize, to_uint8

    values, _ = around_boundaries(bits)
    values = np.resize(values, 3 * 64 * 61).reshape(64, 61, 3)
    write_image(tmp_path / "o.png", values, bit_depth=bits)
    if bits == 8:
        written = np.asarray(Image.open(tmp_path / "o.png"))
        np.testing.assert_array_equal(written, to_uint8(torch.from_numpy(values)).numpy())
    else:
        written = quantize(read_image(tmp_path / "o.png").rgb, 16)  # k / 65535 in float32 gives k back
        np.testing.assert_array_equal(written, quantize(torch.from_numpy(values), 16).numpy())
