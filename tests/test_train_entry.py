"""train.py as a new user meets it: progress shown in steps with speed and time left, failed sweep jobs recorded
without ending the sweep, the best (not the last) score returned, runs filed under their own experiment, a full
disk reported in one sentence, and W&B summaries carrying the best validation score."""

from __future__ import annotations

import errno
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from test_training import (
    REPO,
    SyntheticSRData,
    make_module,
    read_wandb_records,
    run_train,
    wandb_key,
)

from srformer.checkpoint import save_weights
from srformer.errors import CheckpointError
from srformer.models import build_model

TESTS = Path(__file__).resolve().parent
EXPERIMENTS = REPO / "configs" / "experiment"


# ------------------------------------------------------------------------------------ progress display
def test_progress_shows_steps_of_max_steps_speed_and_time_left(tmp_path: Path) -> None:
    from srformer.training.callbacks import StepProgressBar

    console = io.StringIO()
    bar = StepProgressBar(console_kwargs={"file": console, "force_terminal": True, "width": 200})
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=6, max_epochs=-1, val_check_interval=100, check_val_every_n_epoch=None,
        logger=False, enable_checkpointing=False, enable_model_summary=False, callbacks=[bar],
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(make_module(), datamodule=SyntheticSRData(train_batches=2, batch_size=2))  # 3 epochs of 2 steps
    text = console.getvalue()
    assert "Epoch" not in text and "/-2" not in text
    assert "6/6" in text  # global step of max_steps, across epochs (not the batch of the epoch)
    assert "patches/s" in text and "eta" in text
    metrics = bar.get_metrics(trainer, trainer.lightning_module)
    assert metrics["step"] == "6/6" and metrics["eta"] == "0:00:00" and float(metrics["patches/s"]) > 0


def test_default_callbacks_use_the_step_progress_bar() -> None:
    config = yaml.safe_load((REPO / "configs" / "callbacks" / "default.yaml").read_text())
    assert config["progress_bar"]["_target_"] == "srformer.training.callbacks.StepProgressBar"


# ------------------------------------------------------------------------------- sweeps and return value
def _train_command(tmp_path: Path, *extra: str, multirun: bool = False) -> list[str]:
    conf = tmp_path / "conf" / "data"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "synthetic.yaml").write_text("_target_: test_training.SyntheticSRData\n")
    return [
        sys.executable, str(REPO / "train.py"), *(["-m"] if multirun else []), f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "data=synthetic",
        "trainer=cpu", "logger=none", f"paths.log_dir={tmp_path / 'logs'}", "trainer.max_steps=2",
        "trainer.val_check_interval=2", "trainer.num_sanity_val_steps=0", "test=false", "~callbacks.progress_bar",
        "~callbacks.model_summary", "~callbacks.image_panel", "~callbacks.sample_upscale", *extra,
    ]  # fmt: skip


def _run(command: list[str]) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": f"{TESTS}:{REPO}", "WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)


def test_failed_sweep_job_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    missing = tmp_path / "missing.safetensors"
    done = _run(_train_command(tmp_path, f"init_weights={missing},null", multirun=True))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    jobs = sorted((tmp_path / "logs" / "train" / "multiruns").glob("*/*"), key=lambda p: p.name)
    jobs = [job for job in jobs if job.name.isdigit()]
    assert [job.name for job in jobs] == ["0", "1"]
    failure = json.loads((jobs[0] / "failed.json").read_text())
    assert failure["status"] == "failed" and "model file not found" in failure["error"]
    assert failure["job"] == 0 and any("init_weights=" in o for o in failure["overrides"])
    assert f"error: job 0 failed: model file not found: {missing}" in done.stderr
    assert not (jobs[1] / "failed.json").exists()
    assert (jobs[1] / "checkpoints" / "best.safetensors").is_file(), "the second job must still run"


def test_single_run_user_error_exits_2_with_one_sentence(tmp_path: Path) -> None:
    missing = tmp_path / "missing.safetensors"
    done = _run(_train_command(tmp_path, f"init_weights={missing}", "run_name=r"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"error: model file not found: {missing}"
    assert "Traceback" not in done.stderr
    assert json.loads((tmp_path / "logs" / "train" / "runs" / "r" / "failed.json").read_text())["status"] == "failed"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("degradation=nonexistent", "there is no degradation config 'nonexistent' (configs/degradation/nonexistent.yaml);"
         " available: bicubic, photo, realesrgan"),
        ("experiment=nope", "there is no experiment config 'nope' (configs/experiment/nope.yaml); available: "
         + ", ".join(sorted(p.stem for p in EXPERIMENTS.glob("*.yaml")))),
        ("model=huge", "there is no model config 'huge' (configs/model/huge.yaml); available: base, light, small, tiny"),
        ("module.lrr=1e-4", "there is no key 'module.lrr' in the config to override (to add one, use +module.lrr=1e-4)"),
        ("module.lr=1e-4", "module.lr is now module.optimizer.lr: the optimizer, scheduler and loss are config groups"
         " (optimizer=adamw, scheduler=cosine, loss=charbonnier; see docs/TRAINING.md)"),
    ],
)  # fmt: skip
def test_a_command_line_hydra_cannot_compose_is_one_sentence_and_exit_2(
    tmp_path: Path, override: str, expected: str
) -> None:
    done = _run([sys.executable, str(REPO / "train.py"), override, f"paths.log_dir={tmp_path / 'logs'}"])
    assert (done.returncode, done.stderr, done.stdout) == (2, f"error: {expected}\n", "")
    assert not (tmp_path / "logs").exists()


def test_an_unknown_option_in_a_sweep_is_one_sentence_too(tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "train.py"), "-m", "model=huge,tiny", f"paths.log_dir={tmp_path}"]
    done = _run(command)  # job 0 cannot be composed: the sweep stops before any training
    expected = "error: there is no model config 'huge' (configs/model/huge.yaml); available: base, light, small, tiny\n"
    assert (done.returncode, done.stderr) == (2, expected)


def test_a_sweep_started_without_a_log_dir_files_it_under_the_starting_folder(tmp_path: Path) -> None:
    # The default paths.log_dir once read ${hydra:runtime.cwd}, which a multirun resolves too early: every
    # `train.py -m ...` without paths.log_dir ended in an InterpolationResolutionError traceback.
    command = [sys.executable, str(REPO / "train.py"), "-m", "model=huge,tiny"]
    env = {"PYTHONPATH": f"{TESTS}:{REPO}", "WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    expected = "error: there is no model config 'huge' (configs/model/huge.yaml); available: base, light, small, tiny\n"
    assert (done.returncode, done.stderr) == (2, expected)


def script_validation_scores(monkeypatch: pytest.MonkeyPatch, psnrs: list[float]) -> None:
    """Successive validations score every image ``psnrs[i]`` dB (SSIM 0.9), whatever the model does."""
    from srformer.training.module import SRLitModule

    scores = iter(psnrs)
    original = SRLitModule._log_eval_scores

    def scripted(self, stage: str) -> None:
        if stage == "val":
            psnr = next(scores)
            self._eval_scores = {key: (psnr, 0.9) for key in self._eval_scores}
        original(self, stage)

    monkeypatch.setattr(SRLitModule, "_log_eval_scores", scripted)


def test_train_returns_the_best_score_not_the_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation scores 30, 32, 31 dB: a sweeper must see 32."""
    script_validation_scores(monkeypatch, [30.0, 32.0, 31.0])
    metrics = run_train(tmp_path, tmp_path / "run", max_steps=6, extra=("~callbacks.image_panel",))
    assert metrics["val/psnr"] == pytest.approx(32.0)  # also after testing the best checkpoint
    assert metrics["last/val/psnr"] == pytest.approx(31.0)
    assert "test/psnr" in metrics


def test_every_experiment_files_its_runs_under_its_own_name() -> None:
    for path in sorted(EXPERIMENTS.glob("*.yaml")):
        assert yaml.safe_load(path.read_text())["task_name"] == path.stem, path.name


# ------------------------------------------------------------------------------------- full disk
def test_disk_full_checkpoint_write_is_one_sentence_and_keeps_the_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from srformer.training.checkpoint_io import AtomicCheckpointIO

    io_ = AtomicCheckpointIO()
    io_.save_checkpoint({"global_step": 1}, tmp_path / "last.ckpt")

    def disk_full(obj, file) -> None:
        file.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match=r"could not write .*last\.ckpt \(the disk is full\); no partial file"):
        io_.save_checkpoint({"global_step": 2}, tmp_path / "last.ckpt")
    monkeypatch.undo()
    assert torch.load(tmp_path / "last.ckpt", weights_only=True) == {"global_step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_disk_full_weights_export_keeps_the_previous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from srformer import checkpoint

    first = build_model("tiny", 2)
    save_weights(first, tmp_path / "best.safetensors")
    before = {name: (tmp_path / name).read_bytes() for name in ("best.safetensors", "best.json")}

    def disk_full(state, filename, metadata=None) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", disk_full)
    with pytest.raises(CheckpointError, match=r"could not write .*best\.safetensors \(the disk is full\)"):
        save_weights(build_model("tiny", 2), tmp_path / "best.safetensors")
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json", "best.safetensors"]


# ------------------------------------------------------------------------------------------ W&B
def test_wandb_summary_keeps_the_best_validation_score(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script_validation_scores(monkeypatch, [30.0, 32.0, 31.0])
    run_dir = tmp_path / "run"
    run_train(tmp_path, run_dir, max_steps=6, logger="wandb", extra=("test=false", "~callbacks.image_panel"))
    (run,) = (run_dir / "wandb").glob("offline-run-*")
    run_file = next(run.glob("run-*.wandb"))
    deadline, size = time.monotonic() + 20, -1
    while run_file.stat().st_size != size and time.monotonic() < deadline:
        size = run_file.stat().st_size
        time.sleep(0.5)
    records = read_wandb_records(run_file)
    defined = {r.metric.name: r.metric for r in records if r.WhichOneof("record_type") == "metric"}
    assert defined["val/psnr"].summary.max and defined["val/ssim"].summary.max
    assert defined["val/psnr"].step_metric == "trainer/global_step"
    summary = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            summary.update({wandb_key(item): json.loads(item.value_json) for item in record.summary.update})
    assert summary["best/val/psnr"] == pytest.approx(32.0)
