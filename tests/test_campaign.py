"""The training campaign's resume guarantees (issue 23): an interrupted run equals an uninterrupted one when its
full state survives; a new machine restarts warm from the slim, committed state; the campaign's commands."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import campaign  # noqa: E402
import equal_budget  # noqa: E402
import equal_time  # noqa: E402
from test_bench import FakeClock, SyntheticPatches  # noqa: E402  (the same stand-ins as the bench tests)

SHARED_DATA = REPO.parent / "shared" / "data"


def write_photos(folder: Path, count: int, size: int, seed: int) -> None:
    """Smooth random colour fields (something like photos, nothing like noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.BICUBIC).save(folder / f"{i:03d}.png")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real BSD400 when this machine has it (../shared/data), else generated images laid out the same way."""
    if (SHARED_DATA / "train" / "BSD400").is_dir():
        return SHARED_DATA
    root = tmp_path_factory.mktemp("data")
    write_photos(root / "train" / "BSD400", count=4, size=160, seed=0)  # one 128-px HR patch (x4, LR 32) fits
    write_photos(root / "benchmark" / "Set5", count=2, size=48, seed=1)
    return root


def cache_for(data: Path, tmp_path: Path) -> str | None:
    """The shared decoded-image cache for the real BSD400 (decoded once per machine, minutes), a fresh one else."""
    return None if data == SHARED_DATA else str(tmp_path / "cache")


def stream_for(data: Path, recipe: equal_time.Recipe, cache: str | None) -> equal_budget.PatchStream:
    return equal_budget.patch_stream(data, recipe.scale, recipe.patch, recipe.batch, recipe.seed, cache)


def states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


RECIPE = equal_time.Recipe(horizon=6.0, warmup=2.0, ema_half_life=2.0, batch=2, patch=32)


def test_interrupted_run_on_real_patches_equals_an_uninterrupted_one(data_root: Path, tmp_path: Path) -> None:
    """Weights, EMA, data order, random crops, random state and schedule: bit for bit after a stop and resume."""
    cache = cache_for(data_root, tmp_path)
    seen: dict[str, list[torch.Tensor]] = {"straight": [], "resumed": []}

    def recording(batches, into: list[torch.Tensor]):
        for batch in batches:
            into.append(batch["lr"].clone())
            yield batch

    straight = equal_time.TimedRun("light", RECIPE)
    straight.train_until(4.0, recording(stream_for(data_root, RECIPE, cache).batches(0), seen["straight"]),
                         FakeClock(), [], print)  # fmt: skip
    straight_rng, straight_lr = torch.get_rng_state(), straight.optimizer.param_groups[0]["lr"]

    first = equal_time.TimedRun("light", RECIPE)
    first.train_until(2.0, recording(stream_for(data_root, RECIPE, cache).batches(0), seen["resumed"]),
                      FakeClock(), [], print)  # fmt: skip
    first.save(tmp_path / "light.pt")
    del first
    torch.manual_seed(12345)  # as in a new process: another random state until the checkpoint restores it
    resumed = equal_time.TimedRun("light", RECIPE)
    assert resumed.resume(tmp_path / "light.pt") == "exact"
    assert (resumed.step, resumed.spent, resumed.restarts) == (2, 2.0, [])
    resumed.train_until(4.0, recording(stream_for(data_root, RECIPE, cache).batches(resumed.step), seen["resumed"]),
                        FakeClock(), [], print)  # fmt: skip

    assert len(seen["straight"]) == len(seen["resumed"]) == 4
    for a, b in zip(seen["straight"], seen["resumed"], strict=True):
        assert torch.equal(a, b)  # the same patches, crops and flips, in the same order
    assert not torch.equal(seen["straight"][0], seen["straight"][1])
    assert states_equal(straight.model, resumed.model)
    assert states_equal(straight.ema, resumed.ema)
    assert torch.equal(torch.get_rng_state(), straight_rng)
    assert resumed.optimizer.param_groups[0]["lr"] == straight_lr
    for a, b in zip(straight.optimizer.state.values(), resumed.optimizer.state.values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_new_machine_restarts_warm_from_the_slim_state(tmp_path: Path) -> None:
    stream = equal_budget.PatchStream(SyntheticPatches(), batch_size=2, seed=0)
    run = equal_time.TimedRun("tiny", RECIPE)
    run.train_until(3.0, stream.batches(0), FakeClock(), [], print)
    run.save(tmp_path / "tiny.pt")
    slim = tmp_path / "tiny.resume.safetensors"
    assert slim.is_file()
    assert slim.stat().st_size < (tmp_path / "tiny.pt").stat().st_size  # no optimizer moments in it
    (tmp_path / "tiny.pt").unlink()  # what a new machine sees: only the committed files

    warm = equal_time.TimedRun("tiny", RECIPE)
    assert warm.resume(tmp_path / "tiny.pt") == "warm"
    assert (warm.step, warm.spent, warm.restarts) == (3, 3.0, [3.0])
    assert states_equal(warm.model, run.model) and states_equal(warm.ema, run.ema)
    assert not warm.optimizer.state  # Adam starts over ...
    assert warm.learning_rate() == pytest.approx(0.01 * RECIPE.lr * RECIPE.lr_factor(3.0))  # ... at a low rate
    warm.spent += equal_time.REWARM_SECONDS
    assert warm.learning_rate() == pytest.approx(RECIPE.lr * RECIPE.lr_factor(warm.spent))  # back on schedule
    warm.spent -= equal_time.REWARM_SECONDS

    warm.train_until(5.0, stream.batches(warm.step), FakeClock(), [], print)
    warm.save(tmp_path / "tiny.pt")
    again = equal_time.TimedRun("tiny", RECIPE)
    assert again.resume(tmp_path / "tiny.pt") == "exact"
    assert again.restarts == [3.0]  # the count of warm restarts survives
    (tmp_path / "tiny.pt").replace(tmp_path / "step5.pt")
    warm.train_until(6.0, stream.batches(warm.step), FakeClock(), [], print)
    warm.save(tmp_path / "tiny.pt")
    (tmp_path / "step5.pt").replace(tmp_path / "tiny.pt")  # a full state behind the slim one: not used
    ahead = equal_time.TimedRun("tiny", RECIPE)
    assert ahead.resume(tmp_path / "tiny.pt") == "warm"
    assert (ahead.step, ahead.restarts) == (6, [3.0, 6.0])


def test_slim_state_of_another_recipe_is_refused(tmp_path: Path) -> None:
    run = equal_time.TimedRun("tiny", RECIPE)
    run.save_slim(tmp_path / "tiny.resume.safetensors")
    other = equal_time.TimedRun("tiny", equal_time.Recipe(horizon=7.0, warmup=2.0, ema_half_life=2.0, batch=2))
    with pytest.raises(SystemExit, match="another architecture or recipe"):
        other.resume(tmp_path / "tiny.pt")


def test_later_recipe_fields_at_their_defaults_keep_earlier_names() -> None:
    plain = equal_time.Recipe()
    assert "amp" not in plain.as_record() and "init" not in plain.as_record()
    assert plain.key() == "x4_b8_p32_lr0.0005_h120m_w3m_min0_ema2m_seed0"
    assert equal_time.Recipe(amp="bf16").key().endswith("_bf16")
    assert equal_time.Recipe(amp="bf16").amp_dtype == torch.bfloat16
    assert "_init-light_20m" in equal_time.Recipe(init="bench/campaign/a/light_20m.safetensors").key()


def test_training_writes_the_weights_of_every_score_point_and_stops_on_a_signal(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole path of one run: score points with their weights, the slim state, a stop that saves first."""
    args = argparse.Namespace(
        minutes=0.02, points=[0.01], data=data_root, sets=["Set5"], cache_dir=cache_for(data_root, tmp_path),
        restart=False, threads=1, save_every=5, log_every=5,
    )  # fmt: skip
    recipe = equal_time.Recipe(horizon=1.2, warmup=0.1, ema_half_life=0.5, batch=2, patch=24)
    results = equal_time.train_model("tiny", recipe, args, tmp_path / "run")
    marks = [p["mark_minutes"] for p in results["points"]]
    assert marks == [0.01, 0.02]
    from srformer.checkpoint import load_model

    for point in results["points"]:
        assert load_model(tmp_path / "run" / point["weights"]).scale == 4
    assert (tmp_path / "run" / "tiny.resume.safetensors").is_file()
    saved = json.loads((tmp_path / "run" / "tiny.json").read_text())
    assert [p["weights"] for p in saved["points"]] == ["tiny_0.01m.safetensors", "tiny_0.02m.safetensors"]

    args.minutes, args.points = 0.2, [0.1]
    monkeypatch.setattr(equal_time, "stop_on_signals", _StopNow)  # as if SIGTERM arrived during the first step
    with pytest.raises(SystemExit, match="stopped at"):
        equal_time.train_model("tiny", recipe, args, tmp_path / "run")
    again = equal_time.TimedRun("tiny", recipe)
    assert again.resume(tmp_path / "run" / "tiny.pt") == "exact"


class _StopNow:
    def __enter__(self):
        return lambda: True

    def __exit__(self, *exc: object) -> None:
        return None


def test_campaign_runs_build_their_commands_and_read_their_state(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(campaign, "ROOT", tmp_path)
    stage = campaign.Run("x2-stage", "light", 20, lane=0, purpose="t", scale=2, patch=48)
    after = campaign.Run("x2-start", "light", 40, lane=0, purpose="t", patch=48, init="x2-stage@20")
    monkeypatch.setattr(campaign, "PLAN", [stage, after])
    monkeypatch.setattr(campaign, "RUNS", {"x2-stage": stage, "x2-start": after})
    command = after.command()
    assert command[command.index("--init") + 1].endswith("x2-stage/light_20m.safetensors")
    assert command[command.index("--init-minutes") + 1] == "20"
    assert command[command.index("--points") + 1 : command.index("--save-every")] == ["15", "30", "40"]
    assert command[command.index("--folder") + 1] == str(tmp_path / "x2-start")
    assert not campaign.is_done(stage)

    stage.folder.mkdir()
    point = {"minutes": 20.01, "mark_minutes": 20, "seconds": 1200.5, "steps": 900,
             "scores": {"Set5": {"psnr": 30.5, "ssim": 0.8}}}  # fmt: skip
    (stage.folder / "light.json").write_text(json.dumps({"points": [point], "restarts": 1}))
    assert campaign.is_done(stage)
    table = campaign.status_table()
    assert "| x2-stage | light | x2, p48, fp32 | 0 | 0.33 (0.33) | 900 | 1 | 30.50 / - / - at 20 min | done |" in table
    assert "| x2-start | light | x4, p48, fp32, from x2-stage@20 | 0 | 0.33 (1.00) | 0 | 0 | - | waiting |" in table


def test_identities_compare_numbers_as_numbers() -> None:
    """A recipe from the command line (``--warmup 3`` -> 180) and one built in code (180.0) are the same run."""
    cli = equal_time.TimedRun("tiny", equal_time.Recipe(warmup=3 * 60, ema_half_life=2 * 60)).identity()
    code = equal_time.TimedRun("tiny", equal_time.Recipe(warmup=180.0, ema_half_life=120.0)).identity()
    assert cli != code and equal_time.same_identity(cli, code)
    assert not equal_time.same_identity(cli, equal_time.TimedRun("tiny", equal_time.Recipe(warmup=181)).identity())


#: Campaign run -> (its train.py experiment, the CPU seconds a step of it measured on one thread).
CAMPAIGN_EXPERIMENTS = {
    "light": ("bsd400_x4_light_campaign", 0.63),  # since the explicit attention path (0.90 before)
    "real-1": ("bsd400_x4_real_campaign", 0.704),  # the photo degradation included
    "x2-1": ("bsd400_x2_light_campaign", 0.662),
    "x3-1": ("bsd400_x3_light_campaign", 0.494),  # the average over two machines (0.69, then 0.41)
}


@pytest.mark.parametrize("name", list(CAMPAIGN_EXPERIMENTS))
def test_the_campaign_recipe_is_a_train_py_experiment(tmp_path: Path, name: str) -> None:
    """Each campaign run's experiment is its recipe in train.py's terms: the same model, scale, patch, batch,
    loss, optimizer, rate, precision, degradation and starting weights, and its CPU-time schedule and EMA at the
    run's measured CPU seconds per step converted to steps."""
    from hydra.utils import instantiate
    from test_configs import ON_CPU, compose_train_config

    from srformer.models import build_model

    experiment, seconds_per_step = CAMPAIGN_EXPERIMENTS[name]
    run = campaign.RUNS[name]
    lr = float(run.extra[run.extra.index("--lr") + 1]) if "--lr" in run.extra else equal_time.Recipe().lr
    recipe = equal_time.Recipe(lr=lr)
    cfg = compose_train_config([f"experiment={experiment}", "logger=none", *ON_CPU[:1]], tmp_path)
    assert (cfg.model.preset, cfg.scale, cfg.data.patch_size, cfg.data.batch_size) == (
        run.model.split(":")[0], run.scale, run.patch, recipe.batch)  # fmt: skip
    assert cfg.trainer.precision == {"bf16": "bf16-mixed", "fp32": "32-true"}[run.amp]
    assert (cfg.degradation or {}).get("_target_") == (
        equal_time.Recipe(degradation=run.degradation).as_record().get("degradation_config", {}).get("_target_")
    )
    if run.init:  # the run's starting point is the shipped file made from it
        shipped = json.loads((REPO / cfg.init_weights).with_suffix(".json").read_text())
        assert f"({run.init}:" in shipped["source"], shipped["source"]
    else:
        assert not cfg.get("init_weights")
    module = instantiate(cfg.module, net=build_model(cfg.model.preset, cfg.scale), _convert_="all")
    optimizer = module.configure_optimizers()["optimizer"]
    bench = equal_budget.make_optimizer(torch.nn.Linear(2, 2), recipe.lr)
    assert type(optimizer) is type(bench) and isinstance(module.criterion, torch.nn.L1Loss)
    for key in ("lr", "betas", "eps", "weight_decay", "amsgrad"):
        assert optimizer.defaults[key] == bench.defaults[key], key
    assert cfg.module.scheduler.min_ratio == recipe.min_lr_ratio
    assert cfg.module.scheduler.warmup_steps * seconds_per_step == pytest.approx(recipe.warmup, rel=0.05)
    assert cfg.trainer.max_steps * seconds_per_step == pytest.approx(run.minutes * 60, rel=0.05)
    assert module.hparams.ema_decay == pytest.approx(recipe.ema_decay(seconds_per_step), abs=5e-4)
    if name != "light":  # the run's own average (light's includes 148 CPU min on the slower fused path)
        measured = json.loads((campaign.ROOT / name / f"{run.model}.json").read_text())
        assert measured["s_per_step"] == pytest.approx(seconds_per_step, rel=0.05)


# --- real-world runs: LR from a random degradation, scored on degraded benchmarks ---------------------------


def test_degraded_batches_depend_on_the_batch_index_alone() -> None:
    """A resumed real-world run degrades batch k as an uninterrupted one does, whatever came before."""
    from srformer.data.degradation_preview import load_degradation

    photo = load_degradation("photo", scale=4, seed=0)
    stream = equal_budget.PatchStream(SyntheticPatches(), batch_size=2, seed=0)
    straight = [b["lr"] for b in islice(equal_time.degraded_batches(stream.batches(0), photo, 0, 0), 4)]
    resumed = [b["lr"] for b in islice(equal_time.degraded_batches(stream.batches(2), photo, 0, 2), 2)]
    for a, b in zip(straight[2:], resumed, strict=True):
        assert torch.equal(a, b)
    assert straight[0].shape == (2, 3, 8, 8) and not torch.equal(straight[0], stream[0]["lr"])
    assert not torch.equal(straight[0], straight[1])


def test_a_degradation_is_part_of_the_recipe_with_its_whole_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    real = equal_time.Recipe(degradation="photo")
    assert real.key().endswith("_deg-photo") and "degradation" not in equal_time.Recipe().as_record()
    record = real.as_record()
    assert record["degradation"] == "photo"
    assert record["degradation_config"]["_target_"].endswith("RealWorldDegradation")
    assert record["degradation_config"]["scale"] == 4
    before = equal_time.TimedRun("tiny", real).identity()
    assert not equal_time.same_identity(before, equal_time.TimedRun("tiny", equal_time.Recipe()).identity())
    # The YAML edited under a running campaign: another run, not the same run on other data.
    edited = record["degradation_config"] | {"clean_probability": 0.5}
    monkeypatch.setattr(equal_time, "degradation_config", lambda *args: edited)
    assert not equal_time.same_identity(before, equal_time.TimedRun("tiny", real).identity())


def test_set_names_may_name_a_benchmark_degradation() -> None:
    assert equal_budget.split_set_name("Set14_D1") == ("Set14", "D1")
    assert equal_budget.split_set_name("B100_noise20") == ("B100", "noise20")
    assert equal_budget.split_set_name("Set14") == ("Set14", "bicubic")
    assert equal_budget.split_set_name("my_photos") == ("my_photos", "bicubic")  # not a degradation's name


def test_a_real_world_run_trains_on_degraded_lr_and_scores_degraded_sets(data_root: Path, tmp_path: Path) -> None:
    args = argparse.Namespace(
        minutes=0.01, points=[], data=data_root, sets=["Set5", "Set5_D1"], cache_dir=cache_for(data_root, tmp_path),
        restart=False, threads=1, save_every=5, log_every=5,
    )  # fmt: skip
    recipe = equal_time.Recipe(horizon=1.2, warmup=0.1, ema_half_life=0.5, batch=2, patch=24, degradation="photo")
    (point,) = equal_time.train_model("tiny", recipe, args, tmp_path / "run")["points"]
    assert set(point["scores"]) == {"Set5", "Set5_D1"}
    assert point["scores"]["Set5_D1"]["psnr"] != point["scores"]["Set5"]["psnr"]
    sidecar = json.loads((tmp_path / "run" / point["weights"]).with_suffix(".json").read_text())
    assert sidecar["data"] == "bsd400, degradation=photo"


def test_a_real_world_campaign_run_passes_its_degradation_and_sets(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(campaign, "ROOT", tmp_path)
    real = campaign.Run("real", "light", 240, lane=1, purpose="t", degradation="photo",
                        sets=("Set5", "Set14", "B100", "Set14_D1"))  # fmt: skip
    monkeypatch.setattr(campaign, "PLAN", [real])
    monkeypatch.setattr(campaign, "RUNS", {"real": real})
    command = real.command()
    assert command[command.index("--degradation") + 1] == "photo"
    assert command[command.index("--sets") + 1 :][:4] == ["Set5", "Set14", "B100", "Set14_D1"]
    assert "--degradation" not in campaign.Run("clean", "light", 60, lane=0, purpose="t").command()
    assert "--sets" not in campaign.Run("clean", "light", 60, lane=0, purpose="t").command()
    point = {"scores": {"Set5": {"psnr": 30.0}, "Set14": {"psnr": 27.0}, "B100": {"psnr": 26.5},
                        "Set14_D1": {"psnr": 25.31}}}  # fmt: skip
    assert campaign.scores_cell(point) == "30.00 / 27.00 / 26.50; Set14_D1 25.31"
    assert "| real | light | x4, p32, fp32, photo LR | 1 |" in campaign.status_table()


def test_a_lane_waits_for_a_start_another_lane_is_training_and_stops_when_none_is(tmp_path: Path, monkeypatch) -> None:
    """The two halves of a stage end at about the same time; the next stage may start from either, so the lane that
    ends first waits for the other's weights instead of leaving its core idle, and stops only when nobody trains
    them (or when it is told to stop)."""
    monkeypatch.setattr(campaign, "ROOT", tmp_path)
    monkeypatch.setattr(campaign, "REPO", tmp_path)
    source = campaign.Run("first", "light", 60, lane=0, purpose="t")
    follower = campaign.Run("next", "light", 60, lane=1, purpose="t", init="first@60")
    monkeypatch.setattr(campaign, "PLAN", [source, follower])
    monkeypatch.setattr(campaign, "RUNS", {"first": source, "next": follower})
    (tmp_path / "logs").mkdir()
    weights = source.folder / "light_60m.safetensors"

    def lane_zero_trains(run: str) -> None:
        campaign.lane_file(0).write_text(json.dumps({"pid": os.getpid(), "run": run, "since": 0.0}))

    lane_zero_trains("first")
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # the other lane writes the weights while this one waits
        sleeps.append(seconds)
        if len(sleeps) == 3:
            source.folder.mkdir()
            weights.write_bytes(b"")

    monkeypatch.setattr(campaign.time, "sleep", sleep)
    assert campaign.wait_for_start(follower, lane=1, stopping=[])
    assert len(sleeps) == 3

    weights.unlink()
    lane_zero_trains("something-else")  # the lane is alive but trains another run: nothing to wait for
    assert not campaign.wait_for_start(follower, lane=1, stopping=[])
    campaign.lane_file(0).unlink()  # no lane at all
    assert not campaign.wait_for_start(follower, lane=1, stopping=[])
    lane_zero_trains("first")
    assert not campaign.wait_for_start(follower, lane=1, stopping=[signal.SIGTERM])  # told to stop while waiting
    assert campaign.wait_for_start(source, lane=0, stopping=[])  # no init: starts at once


def test_a_score_point_is_shipped_with_its_scores_and_budget(tmp_path: Path, monkeypatch) -> None:
    """``campaign.py ship RUN@MIN NAME``: the point's weights byte for byte, its JSON with the campaign's scores as
    metrics and the CPU minutes of its start counted in; a wrong point, name or scale is one sentence."""
    from srformer import shipped

    monkeypatch.setattr(campaign, "ROOT", tmp_path / "campaign")
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path / "weights")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "srformer_x2.json").write_text(json.dumps({"scale": 2}))  # the x2 model it would replace
    first = campaign.Run("first", "light", 60, lane=0, purpose="t")
    real = campaign.Run("real", "light", 30, lane=0, purpose="t", init="first@60", degradation="photo")
    monkeypatch.setattr(campaign, "PLAN", [first, real])
    monkeypatch.setattr(campaign, "RUNS", {"first": first, "real": real})
    real.folder.mkdir(parents=True)
    (real.folder / "light_30m.safetensors").write_bytes(b"weights of the point")
    (real.folder / "light_30m.json").write_text(json.dumps({"scale": 4, "preset": "light", "cpu_minutes": 30.0}))
    scores = {"Set5": {"psnr": 31.123456, "ssim": 0.88}, "Set14_D1": {"psnr": 25.4, "ssim": 0.65}}
    point = {"minutes": 30.0, "mark_minutes": 30, "seconds": 1800.0, "steps": 100, "scores": scores,
             "weights": "light_30m.safetensors"}  # fmt: skip
    (real.folder / "light.json").write_text(json.dumps({"points": [point]}))

    written = campaign.ship("real@30", "real")
    assert [p.name for p in written] == ["srformer_x4_real.safetensors", "srformer_x4_real.json"]
    assert written[0].read_bytes() == b"weights of the point"
    info = json.loads(written[1].read_text())
    assert info["cpu_minutes"] == 90.0  # 60 of its start, 30 of its own
    assert info["metrics"] == {"test/Set5/psnr": 31.1235, "test/Set5/ssim": 0.88,
                               "test/Set14_D1/psnr": 25.4, "test/Set14_D1/ssim": 0.65}  # fmt: skip
    assert info["source"].startswith("bench/campaign/real/light_30m.safetensors (real@30")

    for args, message in [
        (("real@60", "real"), "real has no scored weights at 60 CPU min (its points: 30)"),
        (("real@30", "x2"), "real@30 is an x4 model; x2 is shipped at x2"),
        (("real@30", "x9"), "unknown shipped model 'x9'"),
        (("nope", "x4"), "'nope' is not <run>@<minutes> of a campaign run"),
    ]:
        with pytest.raises(SystemExit, match=re.escape(message)):
            campaign.ship(*args)


def test_paired_losses_compare_the_same_batches_at_equal_steps(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(campaign, "ROOT", tmp_path / "campaign")
    monkeypatch.setattr(campaign, "REPO", tmp_path)
    first = campaign.Run("a", "light", 60, lane=0, purpose="t")
    second = campaign.Run("b", "light:none", 60, lane=1, purpose="t")
    monkeypatch.setattr(campaign, "RUNS", {"a": first, "b": second})
    for run, step, losses in [(first, 13, [0.5, 0.3, 0.31, 0.32]), (second, 15, [9.0, 0.2, 0.2, 0.21, 0.7, 0.8])]:
        run.folder.mkdir(parents=True)
        torch.save({"step": step, "losses": losses}, run.folder / f"{run.stem}.pt")
    # a holds steps 9-12, b steps 9-14: batches 9-12 in common (0.5/9.0 differ by 8.5: they are not dropped)
    text = campaign.paired_losses("a", "b")
    assert text.startswith("steps 9-12 (4 batches, the same for both): training L1 a 0.357500, b 2.402500;")
    assert "a minus b -2.045000" in text
    (second.folder / "light_none.pt").unlink()
    with pytest.raises(SystemExit, match="b has no full state here"):
        campaign.paired_losses("a", "b")


def test_the_plot_has_a_row_per_scale_with_points(tmp_path: Path, monkeypatch) -> None:
    """``campaign.py report``'s figure: every run with a score point, one row of Set5 / Set14 / B100 per scale,
    a run started from another drawn at that run's CPU hours plus its own."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(campaign, "ROOT", tmp_path / "campaign")
    first = campaign.Run("first", "light", 60, lane=0, purpose="t")
    x2 = campaign.Run("x2", "light", 30, lane=1, purpose="t", init="first@60", scale=2)
    waiting = campaign.Run("waiting", "light", 30, lane=1, purpose="t", scale=3)  # no point yet: no x3 row
    monkeypatch.setattr(campaign, "PLAN", [first, x2, waiting])
    monkeypatch.setattr(campaign, "RUNS", {run.name: run for run in (first, x2, waiting)})
    for run, psnr in ((first, 30.0), (x2, 36.0)):
        run.folder.mkdir(parents=True)
        scores = {name: {"psnr": psnr, "ssim": 0.9} for name in campaign.SETS}
        points = [{"minutes": m, "seconds": m * 60.0, "steps": m, "scores": scores} for m in (15, 30)]
        (run.folder / f"{run.stem}.json").write_text(json.dumps({"points": points}))
    saved = {}
    monkeypatch.setattr(plt.Figure, "savefig", lambda figure, path, **_: saved.update(figure=figure, path=path))
    campaign.plot(tmp_path / "campaign.png")

    axes = saved["figure"].axes
    assert saved["path"] == tmp_path / "campaign.png"
    assert [axis.get_title() for axis in axes] == ["Set5, x4", "Set14, x4", "B100, x4", "Set5, x2", "Set14, x2",
                                                   "B100, x2"]  # fmt: skip
    (line,) = axes[3].get_lines()
    assert line.get_label() == "x2" and list(line.get_xdata()) == [1.25, 1.5]  # 60 CPU min of its start, then 15, 30
