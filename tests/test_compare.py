"""srformer compare: protocol scores, markdown table, crop grids and the offline wandb table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from srformer.checkpoint import save_weights
from srformer.commands.compare import main
from srformer.comparison import texture_crop_box
from srformer.handle import matlab_bicubic_upscaler
from srformer.imresize import imresize
from srformer.metrics import psnr_y
from srformer.models import build_model


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, list[Path]]:
    data_dir = tmp_path / "Photos"
    data_dir.mkdir()
    Image.fromarray(data.astronaut()[100:164, 150:222]).save(data_dir / "astronaut.png")
    Image.fromarray(data.chelsea()[50:110, 100:166]).save(data_dir / "chelsea.png")  # 60x66: cropped to 60x64
    models = []
    for name, seed in (("first", 0), ("second", 1)):
        torch.manual_seed(seed)
        model = build_model("tiny", 4)
        last = [m for m in model.upsampler.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        torch.nn.init.normal_(last.weight, std=0.02)
        models.append(save_weights(model, tmp_path / name / "best.safetensors"))
    return data_dir, models


def _bicubic_psnr(path: Path) -> float:
    hr = torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1)[None]
    hr = hr[..., : hr.shape[-2] // 4 * 4, : hr.shape[-1] // 4 * 4]
    lr = imresize(hr, scale=0.25).float() / 255
    return float(psnr_y(matlab_bicubic_upscaler(4)(lr), hr.float() / 255, 4)[0])


def test_compare_end_to_end(tmp_path: Path, setup, capsys: pytest.CaptureFixture) -> None:
    data_dir, models = setup
    out = tmp_path / "cmp"
    # "bicubic" named as a model too: it is the baseline, listed once (it was a second row labelled "None")
    args = [*map(str, models), "bicubic", "--data", str(data_dir), "--scale", "4", "-o", str(out), "--no-cache"]
    assert main([*args, "--repeats", "1", "--cost-size", "32", "--crop", "32"]) == 0
    table = capsys.readouterr().out
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| method | params | FLOPs / px") and "Photos x4 PSNR / SSIM" in lines[0]
    assert [line.split(" | ")[0] for line in lines[1:]] == ["| bicubic", "| first/best", "| second/best"]
    expected = (_bicubic_psnr(data_dir / "astronaut.png") + _bicubic_psnr(data_dir / "chelsea.png")) / 2
    assert f"{expected:.2f} / " in lines[1]  # bicubic scored independently with the same protocol
    assert "| dataset | image |" not in table  # the per-image rows only with --per-image
    with (out / "per_image.csv").open() as per_image:
        written = list(csv.DictReader(per_image))
    assert [(r["image"], r["method"]) for r in written] == [
        (image, method)
        for image in ("astronaut.png", "chelsea.png")
        for method in ("bicubic", "first/best", "second/best")
    ]
    bicubic = {r["image"]: float(r["psnr_y"]) for r in written if r["method"] == "bicubic"}
    assert bicubic["chelsea.png"] == pytest.approx(_bicubic_psnr(data_dir / "chelsea.png"), abs=1e-9)
    for name in ("astronaut", "chelsea"):
        grid = Image.open(out / "grids" / "Photos" / f"{name}.png")
        assert grid.width == 4 * 64 + 3 * 4  # HR, bicubic and two models, 32 px crops zoomed x2
    tables = list(out.glob("wandb/offline-run-*/files/media/table/comparison_*.table.json"))
    assert len(tables) == 1
    logged = json.loads(tables[0].read_text())
    assert logged["columns"][:5] == ["dataset", "image", "method", "psnr_y", "ssim_y"]
    assert len(logged["data"]) == 2 * 3
    bicubic_rows = [row[3] for row in logged["data"] if row[2] == "bicubic"]
    assert abs(sum(bicubic_rows) / 2 - expected) < 1e-6


def test_compare_per_image_names_the_method_ahead_on_each_image(
    tmp_path: Path, setup, capsys: pytest.CaptureFixture
) -> None:
    data_dir, models = setup
    args = [str(models[0]), "--data", str(data_dir), "--scale", "4", "-o", str(tmp_path / "cmp"), "--no-cache"]
    assert main([*args, "--per-image", "--wandb-mode", "disabled", "--repeats", "1", "--cost-size", "32"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| Photos | ")]
    assert len(rows) == 2
    for row, image in zip(rows, ("astronaut.png", "chelsea.png"), strict=True):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        bicubic, model = (float(cell.split(" / ")[0]) for cell in cells[2:4])
        ahead, lead = cells[4].split(" +")
        assert cells[1] == image and bicubic == pytest.approx(_bicubic_psnr(data_dir / image), abs=0.005)
        assert ahead == ("bicubic" if bicubic > model else "best") and float(lead) == pytest.approx(
            abs(bicubic - model), abs=0.011
        )


def test_compare_refuses_wrong_scale(tmp_path: Path, setup, capsys: pytest.CaptureFixture) -> None:
    data_dir, models = setup
    assert main([str(models[0]), "--data", str(data_dir), "--scale", "2", "--wandb-mode", "disabled"]) == 2
    assert "x4 model, but x2 was asked for" in capsys.readouterr().err


def test_texture_crop_finds_the_detailed_region() -> None:
    hr = torch.full((1, 3, 64, 64), 0.5)
    hr[..., 40:56, 8:24] = torch.rand(1, 3, 16, 16)
    top, left, side = texture_crop_box(hr, 16)
    assert side == 16 and abs(top - 40) <= 4 and abs(left - 8) <= 4
