"""infer.py and the files around it: a 16-bit RGB TIFF upscaled with all its bits, and two runs writing the
same output name (the second is told, the first one's file stays whole)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srformer import imageio
from srformer.checkpoint import load_model
from srformer.commands.upscale import main
from srformer.imageio import quantize, read_image
from srformer.inference import upscale_tensor

tifffile = pytest.importorskip("tifffile")
RNG = np.random.default_rng(0)


def run_cli(*args: str | Path) -> int:
    return main([str(a) for a in args] + ["--quiet", "--device", "cpu"])


def test_sixteen_bit_rgb_tiff_upscaled_with_all_its_bits(tmp_path: Path, weights: Path) -> None:
    # A smooth 16-bit image over the whole range, no value a multiple of 257 (no 8-bit value scaled up).
    ramp = np.linspace(0.0, 1.0, 14 * 12).reshape(14, 12)
    pixels = np.stack([ramp, ramp.T[::-1].reshape(14, 12), 1.0 - ramp], axis=2) * 65535
    pixels = np.rint(pixels).astype(np.uint16)
    pixels[pixels % 257 == 0] += 1
    tifffile.imwrite(tmp_path / "deep.tif", pixels, photometric="rgb")
    assert run_cli(tmp_path / "deep.tif", "-o", tmp_path / "o", "--model", weights, "--tile", "0") == 0
    assert run_cli(tmp_path / "deep.tif", "-o", tmp_path / "o", "--model", weights, "--tile", "0", "--ext", "png") == 0

    lr = torch.from_numpy(pixels.astype(np.float32) / 65535).permute(2, 0, 1)[None]
    expected = quantize(upscale_tensor(load_model(weights), lr, tile=None)[0].permute(1, 2, 0).numpy(), 16)
    # What an 8-bit read of the input gives: the test can tell the two apart.
    lr8 = torch.from_numpy(np.rint(pixels / 257.0).astype(np.float32) / 255).permute(2, 0, 1)[None]
    eight = quantize(upscale_tensor(load_model(weights), lr8, tile=None)[0].permute(1, 2, 0).numpy(), 16)
    assert np.abs(eight.astype(int) - expected).max() > 16

    written_tiff = tifffile.imread(tmp_path / "o" / "deep_x2.tif")
    assert written_tiff.dtype == np.uint16 and written_tiff.shape == (28, 24, 3)
    written_png = read_image(tmp_path / "o" / "deep_x2.png")
    assert written_png.bit_depth == 16
    for result in (written_tiff, quantize(written_png.rgb, 16)):
        assert np.abs(result.astype(int) - expected).max() <= 1


def test_a_name_taken_by_another_run_meanwhile_is_a_per_file_error(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Another infer.py publishes the same output name while this one computes it: this run reports that
    file as failed (exit 1), writes its other outputs, and leaves the other run's file as it was."""
    for name in ("a", "b"):
        Image.fromarray(RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    out = tmp_path / "out"
    real_encode = imageio._encode

    def other_run_publishes_first(handle, bands, *args) -> None:
        real_encode(handle, bands, *args)
        if Path(handle.name).name.startswith(".a_x2."):  # our temporary file for a_x2.png is complete
            (out / "a_x2.png").write_bytes(b"the other run's a_x2.png")

    monkeypatch.setattr(imageio, "_encode", other_run_publishes_first)
    assert run_cli(tmp_path / "a.png", tmp_path / "b.png", "-o", out, "--model", weights) == 1
    assert (out / "a_x2.png").read_bytes() == b"the other run's a_x2.png"
    assert Image.open(out / "b_x2.png").size == (10, 12)
    assert sorted(p.name for p in out.iterdir()) == ["a_x2.png", "b_x2.png"]  # no temporary file left
    err = capsys.readouterr().err
    assert "1 written" in err and "1 failed" in err and "a_x2.png already exists" in err and "Traceback" not in err
