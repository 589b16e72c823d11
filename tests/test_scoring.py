"""srformer.scoring: evaluate, compare and the training validation give the same per-image scores."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from test_pixels import near_boundary_values
from torch import Tensor

from srformer.comparison import Method, score_methods
from srformer.data.cache import ImageCache
from srformer.errors import SRFormerError
from srformer.evaluation import evaluate_folder
from srformer.handle import matlab_bicubic_upscaler
from srformer.imageio import write_image
from srformer.metrics import psnr_y, ssim_y
from srformer.models import build_model
from srformer.scoring import benchmark_dataset, mean_scores, score_folder, score_sr
from srformer.training import SRLitModule

CPU = torch.device("cpu")
PHOTOS = {
    "astronaut.png": skimage.data.astronaut()[60:124, 150:218],
    "chelsea.png": skimage.data.chelsea()[40:100, 90:160],
}


@pytest.fixture()
def photo_folders(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A folder with both photos, and a folder per photo (so evaluate's mean is that photo's score)."""
    both = tmp_path / "Photos"
    singles = []
    for name, image in PHOTOS.items():
        write_image(both / name, image)
        write_image(tmp_path / Path(name).stem / name, image)
        singles.append(tmp_path / Path(name).stem)
    return both, singles


def boundary_model() -> torch.nn.Module:
    """The tiny model, its SR's middle rows overwritten with float32 values next to level boundaries (where
    rounding in float32 picks the wrong level), so that any second rounding path would score differently."""
    torch.manual_seed(0)
    model = build_model("tiny", 4).eval()
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.normal_(last.weight, std=0.02)
    values = torch.from_numpy(near_boundary_values()[0])
    forward = model.forward

    def forward_with_boundary_values(lr: Tensor) -> Tensor:
        sr = forward(lr).clone()
        rows = sr[:, :, sr.shape[-2] // 2 - 2 : sr.shape[-2] // 2 + 2, 8:-8]
        rows.copy_(values.repeat(rows.numel() // len(values) + 1)[: rows.numel()].view_as(rows))
        return sr

    model.forward = forward_with_boundary_values
    return model


def test_evaluate_compare_and_training_give_identical_per_image_scores(photo_folders, tmp_path: Path) -> None:
    both, singles = photo_folders
    cache = ImageCache(tmp_path / "cache")
    model = boundary_model()

    def upscale(lr: Tensor) -> Tensor:
        with torch.no_grad():
            return model(lr)

    rows = score_methods([Method("tiny", upscale)], [both], 4, cache, CPU, crop_size=16)
    from_compare = {row.name: row.scores["tiny"] for row in rows}

    from_evaluate = {}
    for folder in singles:  # evaluate reports means: one image per folder makes them per-image scores
        result = evaluate_folder(upscale, folder, 4, cache, CPU)
        from_evaluate[f"{folder.name}.png"] = (result.psnr, result.ssim)

    module = SRLitModule(net=model, ema_decay=0)
    dataset = benchmark_dataset(both, 4, cache)
    with torch.no_grad():
        for index in range(len(dataset)):
            sample = dataset[index]
            batch = {"lr": sample["lr"][None], "hr": sample["hr"][None], "name": [sample["name"]]}
            panel_sr = module.validation_step(batch, index)["sr"]
            assert torch.equal(panel_sr, panel_sr.mul(255).round().div(255))  # the SR as scored, for panels
    from_training = {name: scores for (_, name), scores in module._eval_scores.items()}

    assert set(from_compare) == set(PHOTOS)
    assert from_compare == from_evaluate == from_training  # exactly, not approximately
    result = evaluate_folder(upscale, both, 4, cache, CPU)
    assert (result.psnr, result.ssim) == mean_scores(from_compare[name] for name in sorted(PHOTOS))


def test_scores_are_the_protocols(photo_folders, tmp_path: Path) -> None:
    """Against the metrics directly: SR rounded once, Y channel, border = scale; the mean is over images."""
    both, _ = photo_folders
    cache = ImageCache(tmp_path / "cache")
    bicubic = matlab_bicubic_upscaler(4)
    images = list(score_folder({"bicubic": bicubic}, both, 4, cache, CPU))
    dataset = benchmark_dataset(both, 4, cache)
    for index, image in enumerate(images):
        sample = dataset[index]
        sr = bicubic(sample["lr"][None])
        expected = (float(psnr_y(sr, sample["hr"][None], 4)[0]), float(ssim_y(sr, sample["hr"][None], 4)[0]))
        assert image.scores["bicubic"] == expected
        assert image.dataset == "Photos" and image.name == sample["name"]
        assert image.sr["bicubic"].dtype == torch.uint8 and image.sr["bicubic"].shape == image.hr.shape
    assert mean_scores([(30.0, 0.8), (32.0, 0.9)]) == (31.0, pytest.approx(0.85))
    with pytest.raises(SRFormerError, match="no images were scored"):
        mean_scores([])


def test_an_sr_of_the_wrong_shape_is_one_clear_error(photo_folders, tmp_path: Path) -> None:
    both, _ = photo_folders
    cache = ImageCache(tmp_path / "cache")
    cropped = {"cropper": lambda lr: matlab_bicubic_upscaler(4)(lr)[..., :-4]}
    with pytest.raises(SRFormerError, match=r"^cropper made \(1, 3, 64, 64\) from astronaut.png, expected"):
        list(score_folder(cropped, both, 4, cache, CPU))
    with pytest.raises(SRFormerError, match=r"^the model made"):
        evaluate_folder(cropped["cropper"], both, 4, cache, CPU)


def test_non_finite_sr_scores_nan_and_leaves_the_other_images_alone() -> None:
    rng = np.random.default_rng(0)
    hr = torch.from_numpy(rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)).float() / 255
    sr = (hr + torch.from_numpy(rng.normal(0, 0.02, hr.shape)).float()).clamp(0, 1)
    clean = score_sr(sr, hr, 4)
    sr[1, 0, 10, 10] = float("nan")
    scored = score_sr(sr, hr, 4)
    assert scored.psnr[0] == clean.psnr[0] and scored.ssim[0] == clean.ssim[0]
    assert math.isnan(scored.psnr[1]) and math.isnan(scored.ssim[1])
    assert scored.sr.dtype == torch.uint8
