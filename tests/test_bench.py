"""The benchmark scripts' own logic (model naming, wrappers, schedules, resuming, tables, reading run folders),
with at most a few training steps of the tiny preset on synthetic patches."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import equal_budget  # noqa: E402
import equal_time  # noqa: E402
import peers  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import training_curve  # noqa: E402

from srformer.models import PRESETS  # noqa: E402


def test_preset_context_names_build_the_ablation_variants() -> None:
    assert equal_budget.build("tiny", 4).config["context"] == "overlap"
    for context in ("none", "overlap", "shallow"):
        model = equal_budget.build(f"tiny:{context}", 2)
        assert model.config["context"] == context and model.scale == 2
    assert equal_budget.display_name("light:none") == "srformer light (MHSA only)"
    assert equal_budget.display_name("tiny") == "srformer tiny (MHSA + MHCA, overlap)"
    assert equal_budget.display_name("swinir-light+skip") == "SwinIR-light + bicubic skip"
    assert equal_budget.display_name("light:overlap:2") == "srformer light (MHSA + MHCA, overlap 2, every 4 groups)"


def test_a_name_may_set_the_context_overlap_and_leaves_other_names_as_they_were() -> None:
    assert equal_budget.architecture("light:overlap:2") == PRESETS["light"] | {
        "context": "overlap",
        "context_overlap": 2,
    }
    # Names used before keep their recorded architecture, so their saved runs resume instead of restarting.
    # Without MHCA blocks there is nothing to place: `light:none` is one network whatever `cross_every` says.
    no_cross = {k: v for k, v in PRESETS["light"].items() if k != "cross_every"} | {"context": "none"}
    assert equal_budget.architecture("light:none") == no_cross
    assert equal_budget.architecture("light") == PRESETS["light"]
    assert equal_budget.architecture("light:overlap:4:2") == PRESETS["light"] | {"cross_every": 2}
    assert equal_budget.display_name("light:overlap:4:2") == "srformer light (MHSA + MHCA, overlap 4, every 2 groups)"
    assert equal_budget.display_name("light") == "srformer light (MHSA + MHCA, overlap, every 4 groups)"
    assert equal_budget.display_name("light:overlap:4:1") == "srformer light (MHSA + MHCA, overlap 4, every group)"
    assert equal_budget.architecture("light:overlap:4:4") == PRESETS["light"]
    for name, crosses in (("light", [False, False, False, True]), ("light:overlap:4:1", [True] * 4)):
        assert [g.cross is not None for g in equal_budget.build(name, 4).groups] == crosses
    for bad in ("light:overlap:two", "light:overlap:4:0", "light:overlap:4:2:1"):
        with pytest.raises(SystemExit):
            equal_budget.architecture(bad)
    with pytest.raises(SystemExit, match="unknown model 'huge'"):
        equal_budget.build("huge", 4)
    with pytest.raises(SystemExit, match="unknown model 'tiny\\+skip'"):
        equal_budget.build("tiny+skip", 4)  # ours has the skip already


def test_saved_results_of_another_architecture_are_not_reused(tmp_path: Path) -> None:
    import json

    saved = tmp_path / "light.json"
    assert equal_budget.load_result(saved, "light") is None
    saved.write_text(json.dumps({"model": "light", "architecture": equal_budget.architecture("light")}))
    assert equal_budget.load_result(saved, "light")["model"] == "light"
    other_context = "light:none" if PRESETS["light"]["context"] != "none" else "light:overlap"
    assert equal_budget.load_result(saved, other_context) is None
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


def test_bicubic_skip_wrapper_starts_as_exact_bicubic() -> None:
    torch.manual_seed(0)
    wrapped = peers.build("swinir-light+skip", 4).eval()
    assert isinstance(wrapped, peers.BicubicSkip)
    assert peers.architecture("swinir-light+skip") == {"peer": "SwinIR-light", "skip": "bicubic"}
    x = torch.rand(1, 3, 12, 20)  # not a multiple of the window: the peer pads and crops
    with torch.no_grad():
        out = wrapped(x)
    bicubic = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    assert out.shape == (1, 3, 48, 80)
    torch.testing.assert_close(out, bicubic, rtol=0, atol=1e-6)
    # The unwrapped peer starts at its mean colour instead (its last conv is not zeroed, so random).
    with torch.no_grad():
        assert (peers.build("swinir-light", 4).eval()(x) - bicubic).abs().mean() > 0.05
    # Training moves the wrapper away from bicubic: the zeroed conv gets gradients.
    wrapped.train()
    loss = (wrapped(x) - torch.rand(1, 3, 48, 80)).abs().mean()
    loss.backward()
    last = [m for m in wrapped.peer.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0


def test_time_schedule_warms_up_then_follows_a_cosine_of_the_time_spent() -> None:
    recipe = equal_time.Recipe(horizon=1000.0, warmup=100.0, min_lr_ratio=0.1, ema_half_life=30.0)
    assert recipe.lr_factor(0.0) == 0.01  # never exactly zero
    assert recipe.lr_factor(50.0) == pytest.approx(0.5)
    assert recipe.lr_factor(100.0) == pytest.approx(1.0)
    assert recipe.lr_factor(550.0) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert recipe.lr_factor(1000.0) == pytest.approx(0.1)
    assert recipe.lr_factor(5000.0) == pytest.approx(0.1)  # past the horizon: stays at the end value
    factors = [recipe.lr_factor(t) for t in range(100, 1001, 50)]
    assert factors == sorted(factors, reverse=True)
    # EMA by time: one 30 s step or thirty 1 s steps leave the same weight on the old average.
    assert recipe.ema_decay(30.0) == pytest.approx(0.5)
    assert recipe.ema_decay(1.0) ** 30 == pytest.approx(0.5)
    assert equal_time.Recipe(ema_half_life=0.0).ema_decay(1.0) == 0.0
    assert recipe.key() != equal_time.Recipe(horizon=2000.0, warmup=100.0, min_lr_ratio=0.1).key()


class SyntheticPatches:
    """Stands in for ``PatchDataset``: random patches from torch's generator, as the real one draws them."""

    def __len__(self) -> int:
        return 12

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        n = len(indices)
        return {"lr": torch.rand(n, 3, 8, 8), "hr": torch.rand(n, 3, 32, 32)}


def test_patch_stream_depends_only_on_seed_and_batch_index() -> None:
    stream = equal_budget.PatchStream(SyntheticPatches(), batch_size=4, seed=3)
    first = [stream[k]["lr"] for k in range(5)]  # crosses an epoch (3 batches of 4)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    again = equal_budget.PatchStream(SyntheticPatches(), batch_size=4, seed=3)
    for k in (4, 0, 2):
        torch.testing.assert_close(again[k]["lr"], first[k])
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is untouched
    resumed = stream.batches(start=2)
    torch.testing.assert_close(next(resumed)["lr"], first[2])
    assert not torch.equal(equal_budget.PatchStream(SyntheticPatches(), 4, seed=4)[0]["lr"], first[0])
    assert sorted(i for k in range(3) for i in stream.indices(k)) == list(range(12))  # an epoch is a permutation


class FakeClock:
    """One second per reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_timed_run_resumes_exactly_where_it_stopped(tmp_path: Path) -> None:
    recipe = equal_time.Recipe(horizon=6.0, warmup=2.0, ema_half_life=2.0, batch=2)
    stream = equal_budget.PatchStream(SyntheticPatches(), batch_size=2, seed=0)
    marks: list[float] = []

    straight = equal_time.TimedRun("tiny", recipe)
    straight.train_until(4.0, stream.batches(0), FakeClock(), [2.0, 4.0], marks.append)
    assert (straight.step, straight.spent, marks) == (4, 4.0, [2.0, 4.0])

    first = equal_time.TimedRun("tiny", recipe)
    first.train_until(2.0, stream.batches(0), FakeClock(), [], marks.append)
    first.pending = 2.0
    first.save(tmp_path / "run.pt")
    del first
    torch.manual_seed(999)  # a new process: another random state, restored from the checkpoint
    resumed = equal_time.TimedRun("tiny", recipe)
    resumed.load(tmp_path / "run.pt")
    assert (resumed.step, resumed.spent, resumed.pending) == (2, 2.0, 2.0)
    resumed.train_until(4.0, stream.batches(resumed.step), FakeClock(), [], marks.append)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(straight.ema.state_dict().values(), resumed.ema.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    other = equal_time.TimedRun("tiny", equal_time.Recipe(horizon=7.0, warmup=2.0, ema_half_life=2.0, batch=2))
    with pytest.raises(SystemExit, match="another architecture or recipe"):
        other.load(tmp_path / "run.pt")


def test_equal_time_export_writes_the_scored_weights(tmp_path: Path) -> None:
    from srformer import load_model

    recipe = equal_time.Recipe(horizon=6.0, warmup=2.0, ema_half_life=2.0, batch=2)
    run = equal_time.TimedRun("tiny:none", recipe)
    run.train_until(2.0, equal_budget.PatchStream(SyntheticPatches(), 2, seed=0).batches(0), FakeClock(), [], print)
    run.save(tmp_path / "tiny_none.pt")
    path = equal_time.export_weights("tiny:none", recipe, tmp_path, tmp_path / "out")
    model = load_model(path)
    assert model.config["context"] == "none"
    for a, b in zip(run.ema.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the EMA weights that were scored, not the raw ones
    assert equal_time.export_weights("swinir-light", recipe, tmp_path, tmp_path / "out") is None
    assert equal_time.export_weights("light", recipe, tmp_path, tmp_path / "out") is None  # no checkpoint


def test_equal_time_tables_have_curves_and_margins() -> None:
    def result(params: int, psnrs: list[float]) -> dict:
        points = [
            {"minutes": m, "mark_minutes": m, "seconds": m * 60, "scores": {"Set5": {"psnr": p, "ssim": 0.8}}}
            for m, p in zip((15, 30, 60), psnrs, strict=False)
        ]
        return {"recipe": {"scale": 4}, "params": params, "s_per_step": 1.0, "points": points}

    results = {"light": result(830_000, [30.0, 30.5, 31.0]), "swinir-light": result(930_000, [29.9, 30.2])}
    text = equal_time.make_tables(results, ["Set5"])
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| model"))
    assert header == "| model | params | CPU s/step | 15 min | 30 min | 60 min |"
    assert any(line.startswith("| SwinIR-light | 0.93M | 1.00 | 29.90 | 30.20 | - |") for line in lines)
    assert "| light - swinir-light | 30 min | +0.30 |" in lines  # the longest time both reached


def test_edge_error_puts_an_edge_error_near_edges_and_a_bias_everywhere() -> None:
    import edge_error

    hr = torch.full((1, 3, 40, 40), 0.3)
    hr[..., :, 20:] = 0.8  # one vertical edge
    moved = hr.clone()
    moved[..., :, 19] = 0.8  # the edge one pixel to the left: 110 levels on one column of an 8-column band
    split = edge_error.error_split(moved, hr, border=2, threshold=40.0)
    assert split["edge rms"] > 30 and split["flat rms"] == 0.0
    assert 0.1 < split["edge share"] < 0.3  # a 7-pixel band (plus the Sobel's reach) of 36 columns
    brighter = (hr + 4 / 255).clamp(0, 1)
    split = edge_error.error_split(brighter, hr, border=2, threshold=40.0)
    assert split["mean"] == pytest.approx(4 * 219 / 255, abs=0.01)  # Y's studio range: 219 levels for 255
    assert split["flat rms"] == pytest.approx(split["mean"], abs=0.01)
