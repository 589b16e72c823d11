"""Checkpoint files that are never left half-written, and a ``last.ckpt`` that is never stale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from srformer.atomic import atomic_file
from srformer.checkpoint import write_failure
from srformer.errors import CheckpointError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write ``name.ckpt`` through a temporary file in the same folder, renamed over the target when complete
    (:mod:`srformer.atomic`).

    A run killed mid-write thus keeps its previous ``last.ckpt`` intact (a rename within one file system is
    atomic; Lightning's own transaction stages in the system temp folder, often another file system). A write
    that fails (disk full, quota, permissions) removes its temporary file and raises :class:`CheckpointError`
    with one sentence, which ``train.py`` prints as ``error: ...``.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        path = Path(path)
        try:
            with atomic_file(path) as file:
                torch.save(checkpoint, file)
        except OSError as err:
            raise CheckpointError(write_failure(path, err)) from err


class BestAndLastCheckpoint(ModelCheckpoint):
    """:class:`ModelCheckpoint` that refreshes ``last.ckpt`` at *every* validation.

    Lightning 2.6 writes ``last.ckpt`` only when a top-k checkpoint was written at the same step, i.e. when the
    monitored metric improved; a run whose score plateaus would then resume from its last *improvement*, losing
    every step since. Here ``last.ckpt`` is also written when the score did not improve, so a killed run loses at
    most one validation interval.
    """

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if (
            self.save_last
            and not self._should_skip_saving_checkpoint(trainer)  # also true when super() saved at this step
            and not self._should_save_on_train_epoch_end(trainer)
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
