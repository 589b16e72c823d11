"""The benchmark scripts' own logic (model naming, tables, reading run folders), without training anything."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import equal_budget  # noqa: E402
import training_curve  # noqa: E402


def test_preset_context_names_build_the_ablation_variants() -> None:
    assert equal_budget.build("tiny", 4).config["context"] == "overlap"
    for context in ("none", "overlap", "shallow"):
        model = equal_budget.build(f"tiny:{context}", 2)
        assert model.config["context"] == context and model.scale == 2
    assert equal_budget.display_name("light:none") == "srformer light (MHSA only)"
    assert equal_budget.display_name("light") == "srformer light (MHSA only)"
    assert equal_budget.display_name("tiny") == "srformer tiny (MHSA + MHCA, overlap)"
    with pytest.raises(SystemExit, match="unknown model 'huge'"):
        equal_budget.build("huge", 4)


def test_saved_results_of_another_architecture_are_not_reused(tmp_path: Path) -> None:
    import json

    saved = tmp_path / "light.json"
    assert equal_budget.load_result(saved, "light") is None
    saved.write_text(json.dumps({"model": "light", "architecture": equal_budget.architecture("light")}))
    assert equal_budget.load_result(saved, "light")["model"] == "light"
    assert equal_budget.load_result(saved, "light:overlap") is None  # another context
    stale = equal_budget.architecture("light") | {"dim": equal_budget.architecture("light")["dim"] + 8}
    saved.write_text(json.dumps({"model": "light", "architecture": stale}))
    assert equal_budget.load_result(saved, "light") is None
    saved.write_text(json.dumps({"model": "light"}))  # saved before architectures were recorded
    assert equal_budget.load_result(saved, "light") is None
    assert equal_budget.architecture("swinir-light") == {"peer": "SwinIR-light"}


def test_table_has_scores_costs_and_speed_ratios() -> None:
    scores = {s: {"psnr": 30.0 + i, "ssim": 0.8} for i, s in enumerate(("Set5", "Set14"))}
    results = {
        "tiny": {"scores": scores, "train_seconds": 50.0, "steps": 100},
        "swinir-light": {"scores": scores, "train_seconds": 200.0, "steps": 100},
    }
    speed = {
        "tiny": {"params": 240_000, "flops_per_px": 56_000.0, "mpix_per_s": 1.0},
        "swinir-light": {"params": 930_000, "flops_per_px": 133_100.0, "mpix_per_s": 0.25},
    }
    table = equal_budget.make_table(results, speed, ["Set5", "Set14"], "swinir-light").splitlines()
    assert table[0].count("|") == table[1].count("|") == table[2].count("|")
    assert (
        "| srformer tiny (MHSA + MHCA, overlap) | 0.24M | 56.0K | 1.000 | 30.00 / 0.8000 | 31.00 / 0.8000 |" in table[2]
    )
    assert table[2].endswith("| 0.50 | 4.00x |") and table[3].endswith("| 2.00 | 1.00x |")


def write_run(run: Path, versions: list[str]) -> None:
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("{}")
    for index, text in enumerate(versions):
        path = run / "csv" / f"version_{index}" / "metrics.csv"
        path.parent.mkdir(parents=True)
        path.write_text(text)


def test_training_curve_reads_clock_and_joins_sessions(tmp_path: Path) -> None:
    header = "step,train/loss,time/train_hours,val/Set5/psnr,val/Set5/ssim\n"
    write_run(
        tmp_path / "run",
        [header + "49,0.05,,,\n99,,0.5,29.0,0.83\n", header + "149,0.04,,,\n199,,1.25,30.0,0.85\n"],
    )
    points = training_curve.read_phase(tmp_path / "run", "Set5", phase=2)
    assert [(p.phase, p.step, p.hours, p.psnr) for p in points] == [(2, 100, 0.5, 29.0), (2, 200, 1.25, 30.0)]


def test_training_curve_falls_back_to_panel_times(tmp_path: Path) -> None:
    run = tmp_path / "old_run"
    write_run(run, ["step,val/Set5/psnr,val/Set5/ssim\n499,29.5,0.84\n"])
    started = (run / ".hydra" / "config.yaml").stat().st_mtime
    panel = run / "panels" / "step0000500_0.png"
    panel.parent.mkdir()
    panel.write_bytes(b"")
    os.utime(panel, (started + 1800, started + 1800))
    [point] = training_curve.read_phase(run, "Set5", phase=1)
    assert (point.step, point.hours) == (500, pytest.approx(0.5))
    panel.unlink()
    with pytest.raises(SystemExit, match="no time/train_hours"):
        training_curve.read_phase(run, "Set5", phase=1)
