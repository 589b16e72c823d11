"""Degradations: the random training pipeline (kernels, noise, JPEG, sizes, seeding, configs), the fixed
benchmark degradations (D1 against a reference computed here), their cache, and the real-world experiment
running a few steps on CPU."""

from __future__ import annotations

import io
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from srformer.commands.preview_degradation import main as preview_main
from srformer.data.benchmark_degradations import (
    BENCHMARK_DEGRADATIONS,
    degrade_d1,
    gaussian_blur_mirror,
    prepare_degraded,
)
from srformer.data.cache import ImageCache
from srformer.data.datasets import ImagePair
from srformer.data.degradation_preview import load_degradation
from srformer.data.degradations import (
    KERNEL_KINDS,
    BlurStep,
    DegradationRound,
    JPEGStep,
    NoiseStep,
    RealWorldDegradation,
    _Randomness,
    add_noise,
    gaussian_family_kernels,
    jpeg_compress,
    random_blur_kernels,
    sinc_kernels,
    step_seed,
)
from srformer.errors import DataError
from srformer.imageio import write_image
from srformer.imresize import imresize

try:
    from scipy.ndimage import gaussian_filter
except ImportError:  # pragma: no cover - scipy comes with scikit-image
    gaussian_filter = None


def photo_uint8(height: int = 96, width: int = 120) -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[100 : 100 + height, 150 : 150 + width])


def hr_batch(n: int = 4, side: int = 64, seed: int = 0) -> torch.Tensor:
    """(n, 3, side, side) float crops of a real photo (smooth areas and edges, unlike uniform noise)."""
    image = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float() / 255
    g = torch.Generator().manual_seed(seed)
    tops = torch.randint(0, image.shape[1] - side, (n,), generator=g).tolist()
    lefts = torch.randint(0, image.shape[2] - side, (n,), generator=g).tolist()
    return torch.stack([image[:, t : t + side, x : x + side] for t, x in zip(tops, lefts, strict=True)])


# ------------------------------------------------------------------------------------------ kernels
def kernels_of(kind: str, n: int = 6, size: int = 21, sigma_y: float = 2.5, theta: float = 0.7) -> torch.Tensor:
    index = KERNEL_KINDS.index(kind)
    iso = kind.endswith("iso") and not kind.endswith("aniso")
    sizes = torch.full((n,), size)
    sigma_x = torch.linspace(0.5, 3.0, n)
    return gaussian_family_kernels(
        sizes,
        size,
        sigma_x,
        sigma_x if iso else torch.full((n,), sigma_y),
        torch.zeros(n) if iso else torch.full((n,), theta),
        torch.full((n,), 1.7),
        torch.full((n,), index),
    )


@pytest.mark.parametrize("kind", KERNEL_KINDS)
def test_kernels_sum_to_one_and_are_symmetric(kind: str) -> None:
    kernels = kernels_of(kind)
    torch.testing.assert_close(kernels.sum(dim=(-2, -1)), torch.ones(len(kernels)))
    assert bool((kernels >= 0).all())
    # Every kernel is point-symmetric (q(-v) = q(v)); isotropic ones are also mirror- and transpose-symmetric.
    torch.testing.assert_close(kernels, kernels.flip(-1, -2))
    if not kind.endswith("aniso"):
        torch.testing.assert_close(kernels, kernels.flip(-1))
        torch.testing.assert_close(kernels, kernels.transpose(-1, -2))
    else:
        assert not torch.allclose(kernels, kernels.transpose(-1, -2), atol=1e-4)


def test_isotropic_gaussian_equals_kornias_kernel() -> None:
    import kornia

    for size, sigma in ((7, 0.8), (13, 2.0), (21, 3.0)):
        ours = gaussian_family_kernels(
            torch.tensor([size]), size, torch.tensor([sigma]), torch.tensor([sigma]), torch.zeros(1),
            torch.ones(1), torch.tensor([0]),
        )  # fmt: skip
        reference = kornia.filters.get_gaussian_kernel2d(size, (sigma, sigma))
        torch.testing.assert_close(ours, reference.view(1, size, size), atol=1e-6, rtol=1e-5)


def test_sinc_kernel_sums_to_one_symmetric_and_low_pass() -> None:
    sizes = torch.tensor([7, 13, 21])
    kernels = sinc_kernels(sizes, 21, torch.tensor([math.pi / 3, math.pi / 2, math.pi / 5]))
    torch.testing.assert_close(kernels.sum(dim=(-2, -1)), torch.ones(3))
    torch.testing.assert_close(kernels, kernels.flip(-1))
    torch.testing.assert_close(kernels, kernels.transpose(-1, -2))
    assert bool((kernels.amin(dim=(-2, -1)) < 0).all()), "a sinc has negative lobes (ringing)"
    # Zero outside each kernel's own support, which is centred in the padded 21x21.
    assert kernels[0, :7].abs().sum() == 0 and kernels[0, :, 14:].abs().sum() == 0
    spectrum = torch.fft.fft2(kernels[2]).abs()
    assert spectrum[0, 0] > 0.99 and spectrum[10, 10] < 0.05, "passes DC, stops the highest frequency"


def test_random_kernels_follow_the_settings() -> None:
    rand = _Randomness(0, torch.device("cpu"))
    step = BlurStep(kernel_size=(7, 11), sinc_probability=0.0, probability=0.5)
    kernels = random_blur_kernels(step, 200, rand)
    assert kernels.shape == (200, 11, 11)
    torch.testing.assert_close(kernels.sum(dim=(-2, -1)), torch.ones(200))
    identity = (kernels[:, 5, 5] == 1).float().mean()
    assert 0.35 < float(identity) < 0.65, "about half the samples are not blurred"


# ---------------------------------------------------------------------------------------------- JPEG
def pillow_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


@pytest.mark.parametrize("quality", [30, 50, 90])
def test_jpeg_matches_pillow(quality: int) -> None:
    # The same libjpeg(-turbo) with the same tables and 4:2:0 subsampling: measured bit-identical; allow one
    # grey level on a few pixels should a platform's IDCT differ.
    images = [photo_uint8(64, 80), photo_uint8(37, 53)[::-1].copy()]
    for image in images:
        tensor = torch.from_numpy(image).permute(2, 0, 1).float().unsqueeze(0) / 255
        ours = (jpeg_compress(tensor, [quality])[0].permute(1, 2, 0).numpy() * 255).round().astype(np.int16)
        reference = pillow_roundtrip(image, quality).astype(np.int16)
        assert np.abs(ours - reference).max() <= 1
        assert np.mean(ours != reference) < 0.01


# --------------------------------------------------------------------------------------------- noise
def test_gaussian_noise_statistics_colour_and_gray() -> None:
    images = torch.full((2, 3, 256, 256), 0.5)
    rand = _Randomness(3, torch.device("cpu"))
    step = NoiseStep(gaussian_probability=1.0, gaussian_sigma=(10.0, 10.0), gray_probability=0.0)
    noise = (add_noise(images, step, rand) - images) * 255
    assert abs(float(noise.mean())) < 0.1
    assert float(noise.std()) == pytest.approx(10.0, rel=0.03)
    assert abs(float(torch.corrcoef(noise[0, :2].flatten(1))[0, 1])) < 0.02, "colour noise: channels independent"
    gray = add_noise(images, NoiseStep(gaussian_probability=1.0, gaussian_sigma=(10, 10), gray_probability=1.0), rand)
    torch.testing.assert_close(gray[:, 0], gray[:, 1])
    torch.testing.assert_close(gray[:, 0], gray[:, 2])


def test_poisson_noise_variance_follows_the_level() -> None:
    levels = torch.tensor([0.2, 0.8]).view(2, 1, 1, 1).expand(2, 3, 256, 256).contiguous()
    levels = levels.mul(255).round().div(255)
    rand = _Randomness(4, torch.device("cpu"))
    step = NoiseStep(gaussian_probability=0.0, poisson_scale=(1.0, 1.0), gray_probability=0.0)
    noise = add_noise(levels, step, rand) - levels
    for index in range(2):
        expected = float(levels[index, 0, 0, 0]) / 256  # Poisson(256 x) / 256 has variance x / 256
        assert float(noise[index].var()) == pytest.approx(expected, rel=0.05)
        assert abs(float(noise[index].mean())) < 1e-3


def test_strength_power_skews_the_draws_towards_mild_noise() -> None:
    rand = _Randomness(5, torch.device("cpu"))
    uniform, skewed = rand.uniform(20000, 0.0, 25.0), _Randomness(5, torch.device("cpu")).skewed(20000, 0.0, 25.0, 2.0)
    torch.testing.assert_close(skewed, uniform.square() / 25.0)  # the same draw u, as low + (high - low) u^2
    assert float((skewed < 10).float().mean()) == pytest.approx(0.4**0.5, abs=0.01)
    assert float((skewed > 15).float().mean()) == pytest.approx(1 - 0.6**0.5, abs=0.01)
    assert float(skewed.max()) <= 25.0
    torch.testing.assert_close(_Randomness(5, torch.device("cpu")).skewed(100, 2.0, 9.0, 1.0),
                               _Randomness(5, torch.device("cpu")).uniform(100, 2.0, 9.0), rtol=0, atol=0)  # fmt: skip
    with pytest.raises(ValueError, match="strength_power"):
        NoiseStep(strength_power=0.0)


def test_photo_mixture_reaches_the_noise_of_low_light_photos() -> None:
    """The ``photo`` mixture covers sigma 20 (real low-light photos): measured on flat grey patches, per sample."""
    from srformer.data.degradation_preview import degradation_config

    noise = degradation_config("photo", scale=4)["rounds"][0]["noise"]
    step = NoiseStep(**noise)
    images = torch.full((400, 3, 16, 16), 0.5)
    noisy = add_noise(images, step, _Randomness(9, torch.device("cpu")))
    sigma = ((noisy - images) * 255).flatten(1).std(dim=1)
    assert float((sigma > 15).float().mean()) > 0.12  # heavy noise is part of the mixture
    assert float((sigma < 10).float().mean()) > 0.5  # most samples stay mild


def test_no_noise_when_probability_is_zero() -> None:
    images = hr_batch(2, 32)
    out = add_noise(images, NoiseStep(probability=0.0), _Randomness(0, torch.device("cpu")))
    torch.testing.assert_close(out, images)


# ------------------------------------------------------------------------------------ whole pipeline
@pytest.fixture(scope="module", params=["photo", "realesrgan"])
def configured(request) -> RealWorldDegradation:
    degradation = load_degradation(request.param, scale=4, seed=7)
    assert isinstance(degradation, RealWorldDegradation)
    return degradation


def test_bicubic_config_builds_no_degrader() -> None:
    assert load_degradation("bicubic", scale=4) is None


def test_lr_has_exactly_the_size_the_scale_implies(configured: RealWorldDegradation) -> None:
    for side, seed in ((64, 0), (128, 1), (96, 2), (64, 3), (128, 4), (64, 5)):
        hr = hr_batch(3, side, seed)
        lr = configured(hr, seed=seed)
        assert lr.shape == (3, 3, side // 4, side // 4)
        assert lr.dtype == torch.float32 and float(lr.min()) >= 0 and float(lr.max()) <= 1
        torch.testing.assert_close(lr, lr.mul(255).round().div(255))  # uint8 levels, as a saved file


def test_same_seed_same_batch(configured: RealWorldDegradation) -> None:
    hr = hr_batch(4, 64)
    torch.testing.assert_close(configured(hr, seed=11), configured(hr, seed=11), rtol=0, atol=0)
    assert not torch.equal(configured(hr, seed=11), configured(hr, seed=12))


def test_bf16_autocast_does_not_change_the_lr(configured: RealWorldDegradation) -> None:
    hr = hr_batch(2, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lr = configured(hr, seed=2)
    assert lr.dtype == torch.float32
    torch.testing.assert_close(lr, configured(hr, seed=2), rtol=0, atol=0)


def test_lr_stays_aligned_with_hr(configured: RealWorldDegradation) -> None:
    # Degraded LR must still look like the bicubic LR of the same HR (no shift, flip or crop): compare
    # their correlation with the correlation after a shift by one LR pixel.
    hr = hr_batch(8, 128, seed=3)
    bicubic = imresize(hr, scale=0.25)
    lr = configured(hr, seed=5)

    def corr(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])

    aligned = corr(lr[..., 2:-2, 2:-2], bicubic[..., 2:-2, 2:-2])
    shifted = corr(lr[..., 2:-2, 3:-1], bicubic[..., 2:-2, 2:-2])
    assert aligned > shifted


def test_clean_probability_gives_the_matlab_bicubic_lr() -> None:
    hr = hr_batch(2, 64)
    degradation = RealWorldDegradation(scale=4, clean_probability=1.0)
    expected = imresize(hr, scale=0.25).clamp(0, 1).mul(255).round().div(255)
    torch.testing.assert_close(degradation(hr, seed=0), expected)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="odd"):
        BlurStep(kernel_size=(6, 21))
    with pytest.raises(ValueError, match="unknown keys"):
        BlurStep(kind_weights={"box": 1.0})
    with pytest.raises(ValueError, match="probability"):
        JPEGStep(probability=1.5)
    with pytest.raises(ValueError, match="multiple of the scale"):
        RealWorldDegradation(scale=4)(torch.rand(1, 3, 30, 32), seed=0)
    # Nested steps may come as plain mappings (what Hydra passes).
    round_ = DegradationRound(blur={"sigma": [0.5, 1.0]}, jpeg={"quality": [40, 60]})
    assert isinstance(round_.blur, BlurStep) and round_.jpeg.quality == (40, 60)


def test_step_seeds_differ_per_step_and_rank() -> None:
    seeds = {step_seed(1234, step, rank) for step in range(100) for rank in range(4)}
    assert len(seeds) == 400


def test_preview_writes_pngs(tmp_path: Path) -> None:
    data = tmp_path / "train"
    write_image(data / "a.png", photo_uint8(200, 220))
    out = tmp_path / "preview"
    args = ["--degradation", "photo", "--data", str(data), "--out", str(out), "--count", "1"]
    assert preview_main([*args, "--cache-dir", str(tmp_path / "cache")]) == 0
    assert Image.open(out / "000_lr.png").size == (32, 32)
    assert Image.open(out / "000_hr.png").size == (128, 128)
    assert Image.open(out / "grid.png").size == (256, 128)


# ------------------------------------------------------------------------------- benchmark degradations
def numpy_gaussian_filter_mirror(channel: np.ndarray, sigma: float, truncate: float = 3.0) -> np.ndarray:
    """scipy's gaussian_filter(mode="mirror") written out: normalized sampled kernel, mirrored borders."""
    radius = int(truncate * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = channel.astype(np.float64)
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="reflect")
        out = sum(w * np.take(padded, np.arange(i, i + out.shape[axis]), axis=axis) for i, w in enumerate(taps))
    return out


def reference_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    channels = [image[..., c].astype(np.float64) for c in range(image.shape[-1])]
    if gaussian_filter is not None:
        return np.stack([gaussian_filter(c, sigma, mode="mirror", truncate=3.0) for c in channels], axis=-1)
    return np.stack([numpy_gaussian_filter_mirror(c, sigma) for c in channels], axis=-1)


def test_blur_matches_scipy_mirror_and_the_numpy_reference() -> None:
    image = photo_uint8(37, 45)
    ours = gaussian_blur_mirror(image, 1.0)
    np.testing.assert_allclose(ours, reference_blur(image, 1.0), atol=1e-9)
    np.testing.assert_allclose(
        ours[..., 1], numpy_gaussian_filter_mirror(image[..., 1].astype(np.float64), 1.0), atol=1e-9
    )


def test_d1_equals_the_recipe_computed_here() -> None:
    hr = photo_uint8(103, 122)  # not a multiple of 4: D1 works on the mod-cropped HR
    name = "astronaut_crop.png"
    cropped = hr[:100, :120]
    blurred = reference_blur(cropped, 1.0)
    small = imresize(torch.from_numpy(blurred).permute(2, 0, 1), scale=0.25).permute(1, 2, 0).numpy()
    lr = np.clip(np.round(small), 0, 255).astype(np.uint8)
    noise = np.random.default_rng(zlib.crc32(b"astronaut_crop")).normal(0.0, 5.0, lr.shape)
    noisy = np.clip(np.round(lr + noise), 0, 255).astype(np.uint8)
    expected = pillow_roundtrip(noisy, 50)
    ours = degrade_d1(hr, 4, name)
    assert ours.shape == (25, 30, 3) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(degrade_d1(hr, 4, name), ours)  # deterministic
    assert not np.array_equal(degrade_d1(hr, 4, "other.png"), ours)  # the noise is seeded by the name


@pytest.mark.parametrize("name", sorted(BENCHMARK_DEGRADATIONS))
def test_benchmark_degradation_sizes(name: str) -> None:
    hr = photo_uint8(50, 61)
    assert BENCHMARK_DEGRADATIONS[name](hr, 3, "x.png").shape == (16, 20, 3)


def test_degraded_lr_is_cached_once(tmp_path: Path) -> None:
    source = tmp_path / "img.png"
    write_image(source, photo_uint8(48, 64))
    cache = ImageCache(tmp_path / "cache")
    first = prepare_degraded(cache, ImagePair(source), 4, "D1")
    assert first.lr_npy.is_file() and "D1" in first.lr_npy.name
    modified = first.lr_npy.stat().st_mtime_ns
    second = prepare_degraded(cache, ImagePair(source), 4, "D1")
    assert second == first and second.lr_npy.stat().st_mtime_ns == modified
    np.testing.assert_array_equal(np.load(second.lr_npy), degrade_d1(photo_uint8(48, 64), 4, "img.png"))
    assert prepare_degraded(cache, ImagePair(source), 4, "bicubic").lr_npy != first.lr_npy
    with pytest.raises(DataError, match="unknown degradation 'D9'"):
        prepare_degraded(cache, ImagePair(source), 4, "D9")


# ------------------------------------------------------------------------------ training integration
def test_module_degrades_training_batches_only_with_a_degradation() -> None:
    from srformer.models import build_model
    from srformer.training import SRLitModule

    batch = {"lr": torch.rand(2, 3, 8, 8), "hr": hr_batch(2, 32)}
    plain = SRLitModule(net=build_model("tiny", 4))
    assert plain.training_lr(batch) is batch["lr"]  # bicubic: the batch's own LR, untouched
    degraded = SRLitModule(net=build_model("tiny", 4), degradation=RealWorldDegradation(scale=4))
    lr = degraded.training_lr(batch)
    assert lr.shape == (2, 3, 8, 8) and not torch.equal(lr, batch["lr"])
    torch.testing.assert_close(degraded.training_lr(batch), lr)  # same step, same degradation
    with pytest.raises(ValueError, match="x2"):
        SRLitModule(net=build_model("tiny", 4), degradation=RealWorldDegradation(scale=2))


def test_real_experiment_runs_a_few_steps_on_cpu(tmp_path: Path) -> None:
    from omegaconf import open_dict
    from test_configs import compose_train_config

    from srformer.training.run import train

    train_dir, val_dir = tmp_path / "train", tmp_path / "val"
    for index in range(2):
        write_image(train_dir / f"t{index}.png", photo_uint8(160, 170)[:, index:])
    write_image(val_dir / "v.png", photo_uint8(64, 72))
    overrides = [
        "experiment=bsd400_x4_real",
        "logger=csv",
        "trainer=cpu",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.num_sanity_val_steps=0",
        "data.batch_size=2",
        "data.patches_per_image=2",
        "data.num_workers=0",
        f"data.cache_dir={tmp_path / 'cache'}",
        "~callbacks.progress_bar",
        "~callbacks.model_summary",
        "callbacks.image_panel.crop=16",
        "test=false",
    ]
    cfg = compose_train_config(overrides, tmp_path / "run")
    assert cfg.degradation._target_.endswith("RealWorldDegradation") and cfg.module.degradation is not None
    with open_dict(cfg):
        cfg.data.train_dirs = [str(train_dir)]
        # the experiment's set names (it picks checkpoints on val/Set14_D1/psnr), on a generated image
        cfg.data.val_dirs = {"Set14_D1": str(val_dir), "Set14": str(val_dir)}
        cfg.data.test_dirs = {}
        cfg.data.degradations = {"Set14_D1": "D1"}
    metrics = train(cfg)
    assert {"val/Set14_D1/psnr", "val/Set14/psnr", "train/loss"} <= set(metrics)
    assert metrics["val/Set14_D1/psnr"] < metrics["val/Set14/psnr"], "the D1 LR is harder than the bicubic LR"
    assert (tmp_path / "run" / "checkpoints" / "best.safetensors").is_file()


def test_datamodule_validates_a_set_degraded_and_clean(tmp_path: Path) -> None:
    from srformer.data import SRDataModule

    folder = tmp_path / "Val"
    write_image(folder / "v.png", photo_uint8(64, 72))
    module = SRDataModule(
        [str(folder)],
        4,
        val_dirs={"Val": str(folder), "Val_D1": str(folder)},
        degradations={"Val_D1": "D1"},
        cache_dir=str(tmp_path / "cache"),
        num_workers=0,
        batch_size=1,
        patches_per_image=1,
        patch_size=8,
    )
    module.setup("validate")
    clean, degraded = (loader.dataset[0] for loader in module.val_dataloader())
    torch.testing.assert_close(clean["hr"], degraded["hr"])
    expected = torch.from_numpy(degrade_d1(photo_uint8(64, 72), 4, "v.png")).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(degraded["lr"], expected)
    assert not torch.equal(clean["lr"], degraded["lr"])
    with pytest.raises(DataError, match="neither validation nor test sets"):
        SRDataModule([str(folder)], 4, val_dirs={"Val": str(folder)}, degradations={"Other": "D1"})
    with pytest.raises(DataError, match="unknown degradation"):
        SRDataModule([str(folder)], 4, val_dirs={"Val": str(folder)}, degradations={"Val": "blurry"})
