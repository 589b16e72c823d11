"""``--model auto``: JPEG quality from quantization tables, wavelet noise estimate, and the choice per input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from srformer import autoselect, shipped
from srformer.autoselect import Choice, choose_model, ijg_table, jpeg_quality, noise_sigma
from srformer.errors import CheckpointError, ImageError
from srformer.imageio import read_image

pywt = pytest.importorskip("pywt", reason="skimage.restoration.estimate_sigma needs PyWavelets (a dev extra)")
from skimage.restoration import estimate_sigma  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee")


def _photo(name: str = "astronaut") -> np.ndarray:
    return getattr(skimage.data, name)()


def _jpeg(pixels: np.ndarray, **options: object) -> Image.Image:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", **options)
    buffer.seek(0)
    return Image.open(buffer)


def _noisy(pixels: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, pixels.shape)
    return np.clip(np.round(pixels + noise), 0, 255).astype(np.uint8)


# --- jpeg_quality ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("quality", range(10, 101))
def test_jpeg_quality_is_exact_for_pillow_files(quality: int) -> None:
    assert jpeg_quality(_jpeg(_photo()[:64, :64], quality=quality)) == quality


@pytest.mark.parametrize("options", [{"subsampling": 0}, {"subsampling": 2}, {"optimize": True}, {"progressive": True}])
@pytest.mark.parametrize("quality", [30, 50, 70, 90, 95])
def test_jpeg_quality_ignores_subsampling_and_coding_options(quality: int, options: dict) -> None:
    assert jpeg_quality(_jpeg(_photo()[:64, :64], quality=quality, **options)) == quality


@pytest.mark.parametrize("quality", [5, 30, 64, 97])
def test_jpeg_quality_reads_standard_tables_given_as_qtables(quality: int) -> None:
    tables = [
        ijg_table(autoselect._IJG_LUMINANCE, quality).tolist(),
        ijg_table(autoselect._IJG_CHROMINANCE, quality).tolist(),
    ]
    assert jpeg_quality(_jpeg(_photo()[:64, :64], qtables=tables)) == quality


def test_jpeg_quality_of_grayscale_jpeg_uses_its_one_table() -> None:
    img = _jpeg(skimage.data.camera()[:64, :64], quality=42)
    assert len(img.quantization) == 1
    assert jpeg_quality(img) == 42


def test_jpeg_quality_of_non_standard_tables_is_the_nearest() -> None:
    # The quality-50 tables, every entry made 1.6 times coarser (and jittered): between quality 25 and 40.
    rng = np.random.default_rng(0)
    coarse = [
        np.clip(np.round(base * 1.6 * rng.uniform(0.9, 1.1, 64)), 1, 255).astype(int).tolist()
        for base in (autoselect._IJG_LUMINANCE, autoselect._IJG_CHROMINANCE)
    ]
    estimate = jpeg_quality(_jpeg(_photo()[:64, :64], qtables=coarse))
    assert 25 <= estimate <= 40
    # Pillow's web presets are not libjpeg tables; their estimates still rank them.
    presets = ["web_low", "web_medium", "web_high", "web_very_high", "web_maximum"]
    estimates = [jpeg_quality(_jpeg(_photo()[:64, :64], quality=p)) for p in presets]
    assert estimates == sorted(estimates) and len(set(estimates)) == len(estimates)
    assert estimates[0] < 70 and estimates[-1] > 95


def test_jpeg_quality_of_files(tmp_path: Path) -> None:
    Image.fromarray(_photo()[:64, :64]).save(tmp_path / "a.jpg", quality=73)
    Image.fromarray(_photo()[:64, :64]).save(tmp_path / "a.png")
    assert jpeg_quality(tmp_path / "a.jpg") == 73
    assert jpeg_quality(str(tmp_path / "a.jpg")) == 73
    assert jpeg_quality(tmp_path / "a.png") is None
    assert jpeg_quality(Image.fromarray(_photo())) is None
    with pytest.raises(ImageError, match="not found"):
        jpeg_quality(tmp_path / "missing.jpg")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageError, match="cannot read junk.jpg"):
        jpeg_quality(tmp_path / "junk.jpg")


# --- noise_sigma ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("sigma", [0, 5, 10, 20])
def test_noise_sigma_matches_skimage(name: str, sigma: float) -> None:
    noisy = _noisy(_photo(name), sigma)
    ours = noise_sigma(noisy)
    reference = 255 * estimate_sigma(noisy / 255.0, channel_axis=-1, average_sigmas=True)
    # Equal up to which near-zero coefficients round to exactly zero (skimage leaves those out).
    assert ours == pytest.approx(reference, abs=0.02)


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("sigma", [5, 10, 20])
def test_noise_sigma_finds_the_true_sigma(name: str, sigma: float) -> None:
    pixels = _photo(name).astype(np.float64)
    noisy = pixels + np.random.default_rng(1).normal(0.0, sigma, pixels.shape)  # unclipped: all of sigma is there
    # Texture reads as noise: the estimate may exceed sigma by at most what the clean photo estimates.
    assert sigma - 0.5 < noise_sigma(noisy / 255.0) < sigma + noise_sigma(pixels / 255.0)


def test_noise_sigma_units_do_not_depend_on_the_sample_type() -> None:
    noisy = _noisy(_photo(), 10)
    eight = noise_sigma(noisy)
    assert noise_sigma(noisy.astype(np.uint16) * 257) == pytest.approx(eight, rel=1e-9)
    assert noise_sigma(noisy.astype(np.float32) / 255) == pytest.approx(eight, rel=1e-3)  # float32 rounding
    rgba = np.dstack([noisy, np.full(noisy.shape[:2], 255, np.uint8)])
    assert noise_sigma(rgba) == pytest.approx(eight, rel=1e-9)  # alpha left out
    gray = noisy[..., 1]
    assert noise_sigma(gray) == pytest.approx(noise_sigma(gray[..., None]))
    assert noise_sigma(np.full((16, 16, 3), 0.5)) == 0.0  # flat: nothing to measure
    with pytest.raises(TypeError):
        noise_sigma(np.zeros((8, 8, 3), dtype=np.int32))


# --- choose_model ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("quality", "expected"), [(30, "real"), (50, "real"), (90, "real"), (95, "x4")])
def test_choice_on_jpegs_of_known_quality(tmp_path: Path, quality: int, expected: str) -> None:
    path = tmp_path / f"photo_q{quality}.jpg"
    Image.fromarray(_photo("chelsea")).save(path, quality=quality)
    choice = choose_model(path, 4)
    assert isinstance(choice, Choice)
    assert choice.reference == expected
    assert choice.jpeg_quality == quality
    assert f"JPEG quality ~{quality}" in choice.reason
    if expected == "real":
        assert choice.noise_sigma is None and choice.reason.endswith("real-world model")
    else:
        assert choice.noise_sigma < autoselect.NOISE_SIGMA_THRESHOLD and choice.reason.endswith("classical model")
    shipped.model_path(choice.reference)  # a shipped, installed name


def test_choice_on_clean_and_noisy_png(tmp_path: Path) -> None:
    clean, noisy = tmp_path / "clean.png", tmp_path / "noisy.png"
    Image.fromarray(_photo("coffee")).save(clean)
    Image.fromarray(_noisy(_photo("coffee"), 15)).save(noisy)
    choice = choose_model(clean)
    assert (choice.reference, choice.jpeg_quality) == ("x4", None)
    assert choice.reason == f"clean PNG (noise sigma {choice.noise_sigma:.1f}): classical model"
    choice = choose_model(noisy, 4)
    assert choice.reference == "real" and 13 < choice.noise_sigma < 17
    assert choice.reason.startswith(f"estimated noise sigma {choice.noise_sigma:.1f} (> ")


@pytest.mark.parametrize("sigma", [0, 15])
def test_choice_on_sixteen_bit_tiff(tmp_path: Path, sigma: float) -> None:
    tifffile = pytest.importorskip("tifffile")
    pixels = _photo("astronaut").astype(np.float64) * 257
    pixels += np.random.default_rng(2).normal(0.0, sigma * 257, pixels.shape)
    path = tmp_path / "deep.tif"
    tifffile.imwrite(path, np.clip(np.round(pixels), 0, 65535).astype(np.uint16), photometric="rgb")
    assert read_image(path).bit_depth == 16
    choice = choose_model(path, 4)
    assert choice.noise_sigma == pytest.approx(noise_sigma(_noisy(_photo("astronaut"), sigma, seed=2)), abs=0.5)
    assert choice.reference == ("real" if sigma else "x4")
    assert choice.jpeg_quality is None


def test_choice_at_other_scales_keeps_the_classical_model(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    Image.fromarray(_photo()).save(path, quality=40)
    for scale in (2, 3):
        choice = choose_model(path, scale)
        assert choice.reference == shipped.DEFAULT_BY_SCALE[scale]
        assert "x4 only" in choice.reason and f"classical x{scale} model" in choice.reason
    with pytest.raises(CheckpointError, match="no shipped x8 model"):
        choose_model(path, 8)


def test_choice_on_loaded_images(tmp_path: Path) -> None:
    noisy = _noisy(_photo("chelsea"), 12)
    assert choose_model(noisy).reference == "real"
    assert choose_model(_photo("chelsea")).reference == "x4"
    assert choose_model(Image.fromarray(noisy)).reference == "real"
    path = tmp_path / "photo.png"
    Image.fromarray(noisy).save(path)
    loaded = read_image(path)
    assert choose_model(loaded) == choose_model(path) == choose_model(path, image=loaded)
    jpeg = _jpeg(_photo("chelsea"), quality=60)
    assert choose_model(jpeg).jpeg_quality == 60
    assert choose_model(noisy, noise_threshold=100.0).reference == "x4"
    with pytest.raises(ImageError):
        choose_model(tmp_path / "missing.png")
