"""``srformer evaluate``: the published Set5 bicubic values (when ../shared/data exists), the JSON
output against values computed here, models from weights files, and clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from srformer.commands.evaluate import main
from srformer.imageio import write_image
from srformer.imresize import imresize

SET5 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmark" / "Set5"

# Published bicubic values on Set5 (Y channel, border = scale); the tolerance: 0.02 dB / 0.001.
PUBLISHED_SET5 = {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)}


def run_json(args: list[str], capsys: pytest.CaptureFixture) -> list[dict]:
    assert main([*args, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "Photos"
    write_image(folder / "a.png", skimage.data.astronaut()[:101, :123])
    write_image(folder / "b.png", skimage.data.chelsea()[:90, :97])
    return folder


@pytest.mark.skipif(not SET5.is_dir(), reason="needs ../shared/data/benchmark/Set5")
def test_set5_bicubic_reproduces_published_values(tmp_path: Path, capsys) -> None:
    results = run_json(
        ["--model", "bicubic", "--data", str(SET5), "--scale", "2", "3", "4", "--cache-dir", str(tmp_path)], capsys
    )
    assert [(r["dataset"], r["scale"], r["images"]) for r in results] == [("Set5", s, 5) for s in (2, 3, 4)]
    for result in results:
        psnr, ssim = PUBLISHED_SET5[result["scale"]]
        assert abs(result["psnr"] - psnr) <= 0.02, result
        assert abs(result["ssim"] - ssim) <= 0.001, result


def hand_y_psnr(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    def y(rgb: np.ndarray) -> np.ndarray:
        rgb = rgb.astype(np.float64)
        return 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255

    diff = (y(sr) - y(hr))[border:-border, border:-border]
    return 10 * math.log10(255**2 / np.mean(diff**2))


def test_bicubic_json_matches_the_protocol(photo_dir: Path, capsys) -> None:
    results = run_json(["--model", "bicubic", "--data", str(photo_dir), "--scale", "3", "--no-cache"], capsys)
    assert len(results) == 1 and set(results[0]) == {"dataset", "scale", "psnr", "ssim", "images", "degradation"}
    assert results[0]["degradation"] == "bicubic"
    assert (results[0]["dataset"], results[0]["scale"], results[0]["images"]) == ("Photos", 3, 2)
    expected = []
    for image in (skimage.data.astronaut()[:99, :123], skimage.data.chelsea()[:90, :96]):  # cropped to x3
        hr = torch.from_numpy(image.transpose(2, 0, 1).copy())
        sr = imresize(imresize(hr, scale=1 / 3), scale=3)
        expected.append(hand_y_psnr(sr.permute(1, 2, 0).numpy(), image, 3))
    assert results[0]["psnr"] == pytest.approx(np.mean(expected), abs=1e-6)
    assert 0.3 < results[0]["ssim"] < 1


def test_table_output(photo_dir: Path, capsys) -> None:
    assert main(["--model", "bicubic", "--data", str(photo_dir), "--scale", "2", "4", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "| Photos | x2 |" in out and "| Photos | x4 |" in out and "| 2 |" in out


def test_model_weights_file(photo_dir: Path, tmp_path: Path, capsys) -> None:
    from srformer.checkpoint import save_weights
    from srformer.models import build_model

    torch.manual_seed(0)
    weights = save_weights(build_model("tiny", 2), tmp_path / "tiny_x2.safetensors")
    (result,) = run_json(["--model", str(weights), "--data", str(photo_dir), "--no-cache", "--device", "cpu"], capsys)
    assert result["scale"] == 2 and result["images"] == 2 and math.isfinite(result["psnr"])
    # A x2 model asked for x4: one clear sentence, exit code 2.
    assert main(["--model", str(weights), "--data", str(photo_dir), "--scale", "4", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is a x2 model" in err and "Traceback" not in err


def test_self_ensemble_scores_the_average_of_eight_transforms(photo_dir: Path, tmp_path: Path, capsys) -> None:
    from srformer.checkpoint import save_weights
    from srformer.models import build_model

    torch.manual_seed(0)
    model = build_model("tiny", 2)
    for parameter in model.upsampler.parameters():  # not the bicubic identity it starts as, not equivariant
        torch.nn.init.normal_(parameter, std=0.01)
    weights = save_weights(model, tmp_path / "tiny_x2.safetensors")
    args = ["--model", str(weights), "--data", str(photo_dir), "--no-cache", "--device", "cpu"]
    (plain,) = run_json(args, capsys)
    (ensemble,) = run_json([*args, "--tta"], capsys)
    assert ensemble["images"] == plain["images"] and abs(ensemble["psnr"] - plain["psnr"]) > 1e-4
    assert main([*args, "--tta"]) == 0 and "(x8 self-ensemble)" in capsys.readouterr().out
    assert main(["--model", "bicubic", "--data", str(photo_dir), "--tta", "--no-cache"]) == 2
    assert "--tta is for models" in capsys.readouterr().err


def test_user_errors_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["--model", "bicubic", "--data", str(tmp_path / "missing"), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: image folder not found") and "Traceback" not in err
    assert main(["--model", str(tmp_path / "nope.safetensors"), "--data", str(tmp_path), "--no-cache"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


# ------------------------------------------------------------------------------ degraded benchmarks
def test_degradation_d1_scores_the_d1_lr(photo_dir: Path, tmp_path: Path, capsys) -> None:
    from srformer.data.benchmark_degradations import degrade_d1
    from srformer.data.io import read_rgb_uint8

    args = ["--model", "bicubic", "--data", str(photo_dir), "--scale", "4", "--cache-dir", str(tmp_path / "c")]
    (clean,) = run_json(args, capsys)
    (d1,) = run_json([*args, "--degradation", "D1"], capsys)
    assert d1["degradation"] == "D1" and d1["images"] == 2
    assert d1["psnr"] < clean["psnr"] - 0.3, "blur, noise and JPEG cost bicubic upscaling PSNR"
    expected = []
    for name in ("a.png", "b.png"):
        hr = read_rgb_uint8(photo_dir / name)
        lr = torch.from_numpy(degrade_d1(hr, 4, name)).permute(2, 0, 1)
        sr = imresize(lr, scale=4).permute(1, 2, 0).numpy()
        expected.append(hand_y_psnr(sr, hr[: sr.shape[0], : sr.shape[1]], 4))
    assert d1["psnr"] == pytest.approx(np.mean(expected), abs=1e-6)
    # Cached: a second run reads the same LR files and gives the same scores.
    assert run_json([*args, "--degradation", "D1"], capsys) == [d1]
    assert len(list((tmp_path / "c").glob("*.D1_*x4.npy"))) == 2


@pytest.mark.parametrize("name", ["jpeg30", "noise10", "noise20"])
def test_other_degradations_lower_the_bicubic_score(name: str, photo_dir: Path, capsys) -> None:
    args = ["--model", "bicubic", "--data", str(photo_dir), "--scale", "2", "--no-cache"]
    (clean,) = run_json(args, capsys)
    (degraded,) = run_json([*args, "--degradation", name], capsys)
    assert degraded["degradation"] == name and degraded["psnr"] < clean["psnr"]


def test_noise_degradations_add_the_sigma_they_name() -> None:
    from srformer.data.benchmark_degradations import BENCHMARK_DEGRADATIONS
    from srformer.data.cache import downscale_uint8

    hr = np.full((256, 256, 3), 128, dtype=np.uint8)  # mid grey: no clipping, the residual is the noise
    clean = downscale_uint8(hr, 4).astype(np.float64)
    for name, sigma in (("noise10", 10.0), ("noise20", 20.0)):
        residual = BENCHMARK_DEGRADATIONS[name](hr, 4, "grey.png") - clean
        assert residual.std() == pytest.approx(sigma, rel=0.05)
        # seeded by the name: the same file gives the same LR, another name other noise
        assert np.array_equal(BENCHMARK_DEGRADATIONS[name](hr, 4, "grey.png") - clean, residual)
        assert not np.array_equal(BENCHMARK_DEGRADATIONS[name](hr, 4, "other.png") - clean, residual)


def test_unknown_degradation_is_one_sentence(photo_dir: Path, capsys) -> None:
    assert main(["--model", "bicubic", "--data", str(photo_dir), "--degradation", "D7", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown degradation 'D7'") and "D1" in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_table_names_the_lr(photo_dir: Path, capsys) -> None:
    assert main(["--model", "bicubic", "--data", str(photo_dir), "--degradation", "noise10", "--no-cache"]) == 0
    assert "| Photos | x4 | noise10 |" in capsys.readouterr().out


def test_lpips_without_backbone_weights_is_one_sentence_not_a_crash(
    photo_dir: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    results = run_json(["--model", "bicubic", "--data", str(photo_dir), "--no-cache", "--lpips"], capsys)
    assert len(results) == 1 and "lpips" not in results[0] and math.isfinite(results[0]["psnr"])
    assert main(["--model", "bicubic", "--data", str(photo_dir), "--no-cache", "--lpips"]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip().startswith("LPIPS skipped:") and captured.err.count("\n") == 1
    assert "LPIPS" not in captured.out


def test_lpips_metric_is_scored_when_available(photo_dir: Path, tmp_path: Path) -> None:
    from srformer.data.cache import ImageCache
    from srformer.evaluation import evaluate_folder
    from srformer.handle import matlab_bicubic_upscaler

    calls: list[tuple[torch.Size, float, float]] = []

    def fake_lpips(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        # What LPIPS receives: both images in [0, 1], SR at uint8 levels as a saved file.
        calls.append((sr.shape, float(sr.min()), float(sr.max())))
        torch.testing.assert_close(sr, sr.mul(255).round().div(255))
        return (sr - hr).abs().mean()

    result = evaluate_folder(
        matlab_bicubic_upscaler(2), photo_dir, 2, ImageCache(tmp_path), torch.device("cpu"), lpips=fake_lpips
    )
    assert len(calls) == 2 and all(low >= 0 and high <= 1 for _, low, high in calls)
    assert result.lpips is not None and 0 < result.lpips < 0.2


def test_compare_scores_the_same_degraded_lr_as_evaluate(photo_dir: Path, tmp_path: Path, capsys) -> None:
    from srformer.checkpoint import save_weights
    from srformer.commands.compare import main as compare_main
    from srformer.models import build_model

    weights = save_weights(build_model("tiny", 4), tmp_path / "tiny" / "best.safetensors")
    cache = ["--cache-dir", str(tmp_path / "cache")]
    (d1,) = run_json(["--model", "bicubic", "--data", str(photo_dir), "--degradation", "D1", *cache], capsys)
    args = [str(weights), "--data", str(photo_dir), "--scale", "4", "--wandb-mode", "disabled", *cache]
    args += ["-o", str(tmp_path / "out"), "--repeats", "1", "--cost-size", "32", "--crop", "32"]
    assert compare_main([*args, "--degradation", "D1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("LR: D1") and f"| bicubic | - | - | - | {d1['psnr']:.2f} / {d1['ssim']:.4f} |" in out
    assert compare_main([*args, "--degradation", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown degradation 'nope'")
