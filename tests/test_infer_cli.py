"""infer.py end to end on generated images: formats, odd and tiny sizes, bad files, never overwriting."""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from srformer import imageio, shipped
from srformer.checkpoint import load_model
from srformer.commands.upscale import main
from srformer.imageio import quantize, read_image, write_image
from srformer.inference import upscale_tensor
from srformer.upscaling import bicubic_rows, torch_bicubic_upscale

REPO = Path(__file__).resolve().parent.parent
RNG = np.random.default_rng(0)


def run_cli(*args: str | Path) -> int:
    return main([str(a) for a in args] + ["--quiet"])


def _rgb(height: int, width: int) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_rgb_odd_size_and_output_folder_created(tmp_path: Path, weights: Path) -> None:
    Image.fromarray(_rgb(13, 19)).save(tmp_path / "odd.png")
    out = tmp_path / "new" / "folder"
    assert run_cli(tmp_path / "odd.png", "-o", out, "--model", weights) == 0
    result = Image.open(out / "odd_x2.png")
    assert result.size == (38, 26) and result.mode == "RGB"


@pytest.mark.parametrize("size", [(1, 1), (3, 5)])
def test_tiny_images(tmp_path: Path, weights: Path, size: tuple[int, int]) -> None:
    Image.fromarray(_rgb(*size)).save(tmp_path / "t.png")
    assert run_cli(tmp_path / "t.png", "-o", tmp_path / "out", "--model", weights) == 0
    assert Image.open(tmp_path / "out" / "t_x2.png").size == (2 * size[1], 2 * size[0])


def test_alpha_upscaled_separately_and_reattached(tmp_path: Path, weights: Path) -> None:
    pixels = np.concatenate([_rgb(10, 12), np.zeros((10, 12, 1), np.uint8)], axis=2)
    pixels[:, 6:, 3] = 255  # left half transparent, right half opaque
    Image.fromarray(pixels, "RGBA").save(tmp_path / "a.png")
    assert run_cli(tmp_path / "a.png", "-o", tmp_path, "--model", weights) == 0
    result = np.asarray(Image.open(tmp_path / "a_x2.png"))
    assert result.shape == (20, 24, 4)
    assert result[:, :8, 3].max() == 0 and result[:, 16:, 3].min() == 255  # away from the edge: exact
    assert 0 < result[:, 12, 3].mean() < 255 or 0 < result[:, 11, 3].mean() < 255  # bicubic transition


def test_gray_in_gray_out(tmp_path: Path, weights: Path) -> None:
    Image.fromarray(RNG.integers(0, 256, (9, 7), dtype=np.uint8), "L").save(tmp_path / "g.png")
    assert run_cli(tmp_path / "g.png", "-o", tmp_path / "o", "--model", weights) == 0
    result = Image.open(tmp_path / "o" / "g_x2.png")
    assert result.mode == "L" and result.size == (14, 18)


def test_sixteen_bit_in_sixteen_bit_out(tmp_path: Path, weights: Path) -> None:
    smooth = np.linspace(0, 65535, 16 * 12).reshape(16, 12).astype(np.uint16)
    Image.fromarray(smooth).save(tmp_path / "g16.png")
    assert run_cli(tmp_path / "g16.png", "-o", tmp_path / "o", "--model", weights) == 0
    result = np.asarray(Image.open(tmp_path / "o" / "g16_x2.png"))
    assert result.dtype == np.uint16 and result.shape == (32, 24)
    assert np.any(result % 257 != 0)  # real 16-bit values, not 8-bit ones scaled up


def test_exif_rotated_and_palette_inputs(tmp_path: Path, weights: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: 8 x 14 stored, 14 x 8 shown
    Image.fromarray(_rgb(8, 14)).save(tmp_path / "rot.jpg", exif=exif)
    Image.fromarray(_rgb(6, 10)).convert("P").save(tmp_path / "pal.gif")
    assert run_cli(tmp_path / "rot.jpg", tmp_path / "pal.gif", "-o", tmp_path / "o", "--model", weights) == 0
    assert Image.open(tmp_path / "o" / "rot_x2.jpg").size == (16, 28)
    assert Image.open(tmp_path / "o" / "pal_x2.png").size == (20, 12)  # GIF output falls back to PNG


def test_folder_with_corrupt_file_continues_and_reports(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_rgb(6, 6)).save(folder / "a.png")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    Image.fromarray(_rgb(5, 7)).save(folder / "c.jpg")
    assert run_cli(folder, "-o", tmp_path / "out", "--model", weights) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_x2.png", "c_x2.jpg"]
    err = capsys.readouterr().err
    assert "2 written" in err and "1 failed" in err and "b.png" in err and "Traceback" not in err


def test_never_overwrites_unless_asked(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    Image.fromarray(_rgb(6, 6)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_x2.png").write_bytes(b"keep me")
    assert run_cli(tmp_path / "a.png", "-o", out, "--model", weights) == 1
    assert (out / "a_x2.png").read_bytes() == b"keep me"
    assert "exists" in capsys.readouterr().err
    assert run_cli(tmp_path / "a.png", "-o", out, "--model", weights, "--skip-existing") == 0
    assert (out / "a_x2.png").read_bytes() == b"keep me"
    assert run_cli(tmp_path / "a.png", "-o", out, "--model", weights, "--overwrite") == 0
    assert Image.open(out / "a_x2.png").size == (12, 12)


def test_input_is_never_an_output(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    Image.fromarray(_rgb(6, 6)).save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    code = run_cli(tmp_path / "a.png", "-o", tmp_path, "--suffix", "", "--overwrite", "--model", weights)
    assert code == 2 and "would overwrite an input" in capsys.readouterr().err
    assert (tmp_path / "a.png").read_bytes() == before


def test_glob_suffix_ext_compare_and_tiling(tmp_path: Path, weights: Path) -> None:
    for name in ("p1.png", "p2.png", "skip.jpg"):
        Image.fromarray(_rgb(20, 25)).save(tmp_path / name)
    args = [str(tmp_path / "p*.png"), "-o", tmp_path / "o", "--model", weights, "--suffix", "_sr", "--ext", "webp"]
    assert run_cli(*args, "--compare") == 0
    names = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert names == ["p1_sr.webp", "p1_sr_compare.webp", "p2_sr.webp", "p2_sr_compare.webp"]
    assert Image.open(tmp_path / "o" / "p1_sr_compare.webp").size == (2 * 50 + 8, 40)
    # Tiled (3 x 4 tiles of 32 with overlap 16) equals untiled on a photo, up to rounding.
    Image.fromarray(data.chelsea()[::4, ::4][:64, :80]).save(tmp_path / "cat.png")
    tiling = ["--tile", "32", "--tile-overlap", "16"]
    assert run_cli(tmp_path / "cat.png", "-o", tmp_path / "t", "--model", weights, *tiling) == 0
    assert run_cli(tmp_path / "cat.png", "-o", tmp_path / "u", "--model", weights, "--tile", "0") == 0
    tiled = np.asarray(Image.open(tmp_path / "t" / "cat_x2.png")).astype(int)
    whole = np.asarray(Image.open(tmp_path / "u" / "cat_x2.png")).astype(int)
    assert np.abs(tiled - whole).max() <= 2 and np.abs(tiled - whole).mean() < 0.1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.png"], "input not found"),
        (["*.nothing"], "no file matches"),
        (["a.png", "--model", "nowhere.safetensors"], "model file not found"),
        (["a.png", "--precision", "fp16", "--device", "cpu"], "fp16 is not supported on the CPU"),
        (["a.png", "--tile", "big"], "--tile must be 'auto' or a number"),
    ],
)
def test_user_errors_are_one_sentence(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, args, message
) -> None:
    monkeypatch.chdir(tmp_path)
    Image.fromarray(_rgb(4, 4)).save(tmp_path / "a.png")
    full = [*args, "-o", "out"] + ([] if "--model" in args else ["--model", str(weights)])
    assert run_cli(*full) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_default_model_missing_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path / "assets")
    Image.fromarray(_rgb(4, 4)).save(tmp_path / "a.png")
    for model in (["--model", "x4"], []):  # named, and chosen by --model auto (the default)
        assert run_cli(tmp_path / "a.png", "-o", tmp_path / "o", *model) == 2
        err = capsys.readouterr().err
        assert "the shipped model" in err and "is not installed" in err and "--model" in err and err.count("\n") == 1


def test_scale_picks_the_shipped_model_of_that_scale(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    for suffix in (".safetensors", ".json"):  # the x2 test model installed as the shipped x2 model
        (assets / f"srformer_x2{suffix}").write_bytes(weights.with_suffix(suffix).read_bytes())
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", assets)
    Image.fromarray(_rgb(6, 7)).save(tmp_path / "a.png")
    assert run_cli(tmp_path / "a.png", "-o", tmp_path / "o", "--scale", "2") == 0
    assert Image.open(tmp_path / "o" / "a_x2.png").size == (14, 12)
    assert run_cli(tmp_path / "a.png", "-o", tmp_path / "o3", "--scale", "3") == 2
    err = capsys.readouterr().err
    assert "'x3' is not installed" in err and "--model" in err and err.count("\n") == 1


def test_script_entry_point_without_traceback(tmp_path: Path, weights: Path) -> None:
    Image.fromarray(_rgb(5, 5)).save(tmp_path / "a.png")
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "infer.py"),
            str(tmp_path / "a.png"),
            "-o",
            str(tmp_path / "o"),
            "--model",
            str(weights),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "o" / "a_x2.png").size == (10, 10)
    assert "Mpx/s" in done.stderr
    missing = subprocess.run(
        [sys.executable, str(REPO / "infer.py"), str(tmp_path / "nope.png"), "-o", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "Traceback" not in missing.stderr


def test_streamed_output_is_the_tiled_result(tmp_path: Path, weights: Path) -> None:
    """Band by band (many rows of tiles, alpha and 16 bits included), the file holds exactly the tiled result."""
    pixels = RNG.integers(0, 65536, (40, 30, 4), dtype=np.uint16)
    pixels[..., 3] = np.linspace(0, 65535, 30, dtype=np.uint16)  # a smooth alpha ramp
    write_image(tmp_path / "a.png", pixels[..., :3] / 65535, pixels[..., 3] / 65535, bit_depth=16)
    assert run_cli(tmp_path / "a.png", "-o", tmp_path / "o", "--model", weights, "--tile", "16") == 0
    image = read_image(tmp_path / "a.png")
    model = load_model(weights)
    lr = torch.from_numpy(image.rgb).permute(2, 0, 1)[None]
    expected = upscale_tensor(model, lr, tile=16)[0].permute(1, 2, 0).numpy()
    expected_alpha = torch_bicubic_upscale(torch.from_numpy(image.alpha)[None, None], 2)[0, 0].numpy()
    result = read_image(tmp_path / "o" / "a_x2.png")
    assert result.bit_depth == 16 and result.rgb.shape == (80, 60, 3)
    np.testing.assert_array_equal(quantize(result.rgb, 16), quantize(expected, 16))
    np.testing.assert_array_equal(quantize(result.alpha, 16), quantize(expected_alpha, 16))


@pytest.mark.parametrize("top_bottom", [(0, 5), (3, 17), (9, 40), (38, 40)])
def test_bicubic_rows_equal_the_whole_upscale(top_bottom: tuple[int, int]) -> None:
    x = torch.rand(1, 2, 10, 7)
    top, bottom = top_bottom
    whole = torch_bicubic_upscale(x, 4)[..., top:bottom, :]
    torch.testing.assert_close(bicubic_rows(x, 4, top, bottom), whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("ext", "width"), [("jpg", 32_768), ("webp", 8_192)])
def test_output_over_the_format_limit_refused_before_compute(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, ext, width
) -> None:
    Image.new("RGB", (width, 1)).save(tmp_path / "wide.png")
    monkeypatch.setattr("srformer.upscaling.upscale_bands", _no_compute)
    assert run_cli(tmp_path / "wide.png", "-o", tmp_path / "o", "--model", weights, "--ext", ext) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: wide_x2.") and "pixels per side" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


def _no_compute(*args, **kwargs):
    raise AssertionError("computed an image that cannot be written")


def test_too_little_disk_refused_before_compute(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.fromarray(_rgb(20, 20)).save(tmp_path / "a.png")
    monkeypatch.setattr("srformer.upscaling.upscale_bands", _no_compute)
    monkeypatch.setattr(imageio.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9, 100))
    assert run_cli(tmp_path / "a.png", "-o", tmp_path / "o", "--model", weights) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: a_x2.png needs about") and "free" in err and err.count("\n") == 1
    assert list((tmp_path / "o").iterdir()) == []


def test_disk_full_while_writing_stops_with_one_sentence_and_no_file(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a.png", "b.png"):
        Image.fromarray(_rgb(20, 20)).save(tmp_path / name)
    real_write_png = imageio._write_png

    def fill_the_disk(handle, bands, *args):
        real_write_png(handle, bands, *args)  # the whole image computed and written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(imageio, "_write_png", fill_the_disk)
    assert run_cli(tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "o", "--model", weights) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the disk holding") and "is full; a_x2.png was not written" in err
    assert err.count("\n") == 1 and list((tmp_path / "o").iterdir()) == []  # b.png not tried: it cannot fit


def test_progress_shows_tiles_speed_and_time_left(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    Image.fromarray(_rgb(40, 40)).save(tmp_path / "a.png")
    assert main([str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--model", str(weights), "--tile", "16"]) == 0
    err = capsys.readouterr().err
    assert "tiles" in err and "Mpx/s" in err and "left" in err
