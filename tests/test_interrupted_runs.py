"""Runs killed with SIGKILL: training resumes to the same weights, checkpoints and outputs are never half-written.

Each test starts the real script in a subprocess, kills it at a chosen moment, looks at what it left, and
starts it again. Each prints one ``RESULT`` line (run with ``-s`` to see it); docs/RELIABILITY.md quotes them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from srformer.checkpoint import save_weights
from srformer.errors import CheckpointError
from srformer.models import build_model

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
CHECKPOINT_EVERY = 2  # steps: the synthetic training set is 2 batches, validated (and checkpointed) every 2 steps
MAX_STEPS = 12


class StepMarker(pl.Callback):
    """Appends the global step to ``path`` after every optimizer step (flushed), so a test knows how far a
    run got before it was killed; ``delay`` seconds per step leave time to kill it between checkpoints."""

    def __init__(self, path: str, delay: float = 0.0) -> None:
        self.path = Path(path)
        self.delay = delay

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        with self.path.open("a") as file:
            file.write(f"{trainer.global_step}\n")
        time.sleep(self.delay)

    def on_validation_end(self, trainer: pl.Trainer, pl_module) -> None:
        with self.path.open("a") as file:
            file.write(f"v{trainer.global_step}\n")


def marked_steps(path: Path) -> list[int]:
    """The steps written by :class:`StepMarker` (validations left out), in order."""
    return [int(s) for s in path.read_text().split() if not s.startswith("v")] if path.exists() else []


def last_marked_step(path: Path) -> int:
    steps = marked_steps(path)
    return steps[-1] if steps else 0


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def wait_until(condition, process: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"the process ended (exit {process.returncode}) before {what}:\n{out[-3000:]}")
        if time.monotonic() > deadline:
            kill(process)
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# ------------------------------------------------------------------------------------- training
def train_command(tmp_path: Path, run_name: str, marker: Path) -> list[str]:
    conf = tmp_path / "conf" / "data"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "synthetic.yaml").write_text("_target_: test_training.SyntheticSRData\n")
    return [
        sys.executable,
        str(REPO / "train.py"),
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        "data=synthetic",
        "trainer=cpu",
        "logger=none",
        f"run_name={run_name}",
        f"paths.log_dir={tmp_path / 'logs'}",
        "seed=7",
        "trainer.deterministic=true",
        f"trainer.max_steps={MAX_STEPS}",
        f"trainer.val_check_interval={CHECKPOINT_EVERY}",
        "trainer.num_sanity_val_steps=0",
        "test=false",
        "~callbacks.progress_bar",
        "~callbacks.model_summary",
        "~callbacks.image_panel",
        "~callbacks.sample_upscale",
        # Until configs/callbacks/default.yaml names it: last.ckpt refreshed at every validation, not only on a new best.
        "callbacks.model_checkpoint._target_=srformer.training.checkpoint_io.BestAndLastCheckpoint",
        "+callbacks.step_marker._target_=test_interrupted_runs.StepMarker",
        f"+callbacks.step_marker.path={marker}",
        "+callbacks.step_marker.delay=0.15",
    ]


def train_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)]), "WANDB_MODE": "disabled"}


def run_to_end(command: list[str]) -> None:
    done = subprocess.run(command, env=train_env(), capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr


def checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_training_killed_resumes_to_the_same_weights(tmp_path: Path) -> None:
    runs = tmp_path / "logs" / "train" / "runs"
    straight_marker, killed_marker = tmp_path / "straight.steps", tmp_path / "killed.steps"
    run_to_end(train_command(tmp_path, "straight", straight_marker))

    command = train_command(tmp_path, "killed", killed_marker)
    process = subprocess.Popen(
        command, env=train_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO
    )
    last = runs / "killed" / "checkpoints" / "last.ckpt"
    # Kill one step after the first checkpoint: that step is lost, the checkpoint must carry the rest.
    wait_until(
        lambda: last.is_file() and last_marked_step(killed_marker) >= CHECKPOINT_EVERY + 1,
        process,
        240,
        "a checkpoint",
    )
    kill(process)
    reached = last_marked_step(killed_marker)
    saved = checkpoint(runs / "killed")["global_step"]
    assert 0 < saved <= reached < MAX_STEPS, "the kill must land mid-run, after a checkpoint"

    run_to_end(command)  # the same command again: resumes from last.ckpt
    steps = marked_steps(killed_marker)
    resumed_from = steps[steps.index(reached) + 1] - 1  # first step of the second run, minus one
    lost = reached - resumed_from
    assert resumed_from == saved and 0 <= lost <= CHECKPOINT_EVERY
    assert steps[-1] == MAX_STEPS

    final, reference = checkpoint(runs / "killed"), checkpoint(runs / "straight")
    assert final["global_step"] == reference["global_step"] == MAX_STEPS
    assert final["state_dict"].keys() == reference["state_dict"].keys()
    difference = max(
        (final["state_dict"][k].float() - reference["state_dict"][k].float()).abs().max().item()
        for k in reference["state_dict"]
    )
    print(
        f"\nRESULT training: killed at step {reached} of {MAX_STEPS}, last.ckpt at step {saved}, resumed from "
        f"step {resumed_from}, steps lost {lost} (checkpoint interval {CHECKPOINT_EVERY}), "
        f"max |weight difference| vs uninterrupted run {difference:.3g} over {len(reference['state_dict'])} tensors"
    )
    assert difference == 0.0


@pytest.mark.parametrize(
    "keeps_last",
    [pytest.param(False, id="ModelCheckpoint", marks=pytest.mark.slow), pytest.param(True, id="BestAndLastCheckpoint")],
)
def test_last_ckpt_follows_every_validation_without_improvement(tmp_path: Path, keeps_last: bool) -> None:
    """With lr = 0 the validation score never improves after the first validation (step 2 of 4)."""
    from test_training import SyntheticSRData, make_module, make_trainer

    from srformer.training.checkpoint_io import BestAndLastCheckpoint

    kind = BestAndLastCheckpoint if keeps_last else pl.callbacks.ModelCheckpoint
    callback = kind(dirpath=tmp_path, filename="best", monitor="val/psnr", mode="max", save_top_k=1, save_last=True)
    make_trainer(tmp_path, 4, CHECKPOINT_EVERY, [callback]).fit(make_module(lr=0.0), datamodule=SyntheticSRData())
    best = torch.load(tmp_path / "best.ckpt", weights_only=True)["global_step"]
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"]
    print(f"\nRESULT {kind.__name__}: 4 steps, validation every 2, no improvement: last.ckpt at step {last}")
    assert best == 2
    if keeps_last:
        assert last == 4
    else:  # Lightning 2.6: last.ckpt only follows new bests; this documents why BestAndLastCheckpoint exists
        assert last in (2, 4)


# ------------------------------------------------------------------------------- checkpoint write
_WRITER = """
import sys, torch
from srformer.training.checkpoint_io import AtomicCheckpointIO
io, path, version = AtomicCheckpointIO(), sys.argv[1], 0
io.save_checkpoint({"global_step": 0, "weights": torch.zeros(4)}, path)
print("ready", flush=True)
while True:  # big checkpoints, one after another, until killed
    version += 1
    io.save_checkpoint({"global_step": version, "weights": torch.full((32_000_000,), float(version))}, path)
"""


def test_checkpoint_write_killed_midway_keeps_a_whole_last_ckpt(tmp_path: Path) -> None:
    """SIGKILL while the 128 MB temporary file is being written: ``last.ckpt`` is the previous whole file."""
    path = tmp_path / "last.ckpt"

    def temporary_sizes() -> list[int]:  # the writer's temporary files (renamed away once complete)
        sizes = []
        for temporary in tmp_path.glob(".last.ckpt.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                sizes.append(temporary.stat().st_size)
        return sizes

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout.readline().strip() == "ready"
    wait_until(lambda: any(0 < size < 100_000_000 for size in temporary_sizes()), process, 60, "a write")
    kill(process)
    partial = sum(temporary_sizes())
    saved = torch.load(path, map_location="cpu", weights_only=True)
    step = saved["global_step"]
    assert torch.equal(saved["weights"], torch.full_like(saved["weights"], float(step)))  # whole, consistent
    print(
        f"\nRESULT checkpoint write: killed with {partial} bytes in the temporary file; last.ckpt loads (step {step})"
    )


def test_failed_checkpoint_write_leaves_no_debris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write failing with an error (disk full) keeps the old file and removes its temporary file."""
    from srformer.training.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, tmp_path / "last.ckpt")

    def disk_full(obj, file) -> None:
        file.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="the disk is full"):
        io.save_checkpoint({"global_step": 2}, tmp_path / "last.ckpt")
    monkeypatch.undo()
    assert torch.load(tmp_path / "last.ckpt", weights_only=True) == {"global_step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


# ------------------------------------------------------------------------------------ infer.py
def test_infer_killed_midway_leaves_whole_files_and_skip_existing_completes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = save_weights(build_model("tiny", 2), tmp_path / "model" / "tiny_x2.safetensors")
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    count = 16
    rng = np.random.default_rng(0)
    for k in range(count):
        Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(inputs / f"img{k:02d}.png")
    command = [sys.executable, str(REPO / "infer.py"), str(inputs), "-o", str(out), "--model", str(weights), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    visible = lambda: sorted(p for p in out.glob("*.png"))  # noqa: E731
    wait_until(lambda: out.is_dir() and len(visible()) >= 3, process, 240, "three outputs")
    kill(process)

    first = visible()
    assert 3 <= len(first) < count, "the kill must land mid-run"
    for path in first:  # every visible output is a whole image: no partial file under a final name
        with Image.open(path) as image:
            image.load()
            assert image.size == (192, 192)
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    kept = {p.name: p.read_bytes() for p in first}

    done = subprocess.run([*command[:-1], "--skip-existing"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{count - len(first)} written to {out}, {len(first)} skipped (exist)" in done.stderr
    assert len(visible()) == count
    assert all((out / name).read_bytes() == data for name, data in kept.items())  # untouched
    print(
        f"\nRESULT infer: killed after {len(first)} of {count} images, all {len(first)} complete, "
        f"{len(leftovers)} hidden temporary file(s) left {leftovers}; --skip-existing wrote "
        f"{count - len(first)} and skipped {len(first)}"
    )
