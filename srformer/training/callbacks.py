"""Training callbacks: best-weights export, validation image panels, an upscaled sample, a training clock, and a
progress bar counted in optimizer steps (with patches/s and the time left).

The NaN/inf loss guard lives in :meth:`SRLitModule.training_step`, which alone can skip a batch.
"""

from __future__ import annotations

import datetime
import math
import time
from collections import deque
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.loggers import WandbLogger
from torch import Tensor

from srformer.checkpoint import save_weights
from srformer.imageio import write_image
from srformer.imresize import imresize
from srformer.pixels import snap_to_uint8_levels, to_uint8
from srformer.training.module import SRLitModule


def _wandb_loggers(trainer: pl.Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


class ExportBestWeights(pl.Callback):
    """On each new best ``monitor`` value, write the evaluation (EMA) weights as
    ``{dirpath}/{filename}.safetensors`` + ``.json`` (preset, scale, arch, training data, steps, metrics),
    the format ``srformer.load_model`` and ``infer.py`` read. With a W&B logger, also logs them as a
    ``weights`` artifact aliased ``best``.
    """

    def __init__(
        self,
        dirpath: str,
        monitor: str = "val/psnr",
        mode: Literal["max", "min"] = "max",
        filename: str = "best",
        training_data: str | None = None,
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.dirpath = Path(dirpath)
        self.monitor = monitor
        self.mode = mode
        self.filename = filename
        self.training_data = training_data
        self.best_score: float | None = None

    @property
    def path(self) -> Path:
        return self.dirpath / f"{self.filename}.safetensors"

    def _improves(self, score: float) -> bool:
        if self.best_score is None:
            return True
        return score > self.best_score if self.mode == "max" else score < self.best_score

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        if not math.isfinite(score) or not self._improves(score):
            return
        self.best_score = score
        if not trainer.is_global_zero:
            return
        assert isinstance(pl_module, SRLitModule)
        metrics = {
            name: round(float(value), 6) for name, value in trainer.callback_metrics.items() if name.startswith("val/")
        }
        # No "preset" here: save_weights names the preset the architecture matches, which stays right when a
        # config replaced a setting of the preset it started from (model.context=...).
        meta = {
            "data": self.training_data,
            "steps": trainer.global_step,
            "epoch": trainer.current_epoch,
            "monitor": self.monitor,
            "metrics": metrics,
            "ema": pl_module.net_ema is not None,
        }
        save_weights(pl_module.eval_net, self.path, meta)
        for logger in _wandb_loggers(trainer):
            self._log_artifact(logger, trainer.global_step, metrics)

    def _log_artifact(self, logger: WandbLogger, step: int, metrics: dict[str, float]) -> None:
        import wandb

        artifact = wandb.Artifact(f"weights-{logger.experiment.id}", type="model", metadata=metrics)
        artifact.add_file(str(self.path))
        artifact.add_file(str(self.path.with_suffix(".json")))
        logger.experiment.log_artifact(artifact, aliases=["best", f"step-{step}"])

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict["best_score"]


class ImagePanel(pl.Callback):
    """At each validation, a panel of LR (nearest) | bicubic | SR | HR crops of the first ``num_images``
    images of the first validation set, logged to W&B as ``val/panel`` and saved as PNG under
    ``save_dir`` (when given).

    Args:
        crop: side of the crop in HR pixels (taken at the image centre, same place every time).
        num_images: images of the first validation set to show.
        save_dir: folder for ``step{N}_{i}.png`` files, or ``None``.
    """

    def __init__(self, crop: int = 96, num_images: int = 2, save_dir: str | None = None) -> None:
        self.crop = crop
        self.num_images = num_images
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self._panels: list[tuple[str, np.ndarray]] = []

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._panels = []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or dataloader_idx != 0:
            return
        if len(self._panels) >= self.num_images:
            return
        self._panels.append((batch["name"][0], self.make_panel(batch["lr"][0], outputs["sr"][0], batch["hr"][0])))

    def make_panel(self, lr: Tensor, sr: Tensor, hr: Tensor) -> np.ndarray:
        """LR ``(3, h, w)``, SR and HR ``(3, s*h, s*w)`` -> ``(c, 4*c + 3*gap, 3)`` uint8 side by side."""
        scale = hr.shape[-1] // lr.shape[-1]
        lr_crop_side = max(1, min(self.crop // scale, lr.shape[-2], lr.shape[-1]))
        top = (lr.shape[-2] - lr_crop_side) // 2
        left = (lr.shape[-1] - lr_crop_side) // 2
        lr_crop = lr[:, top : top + lr_crop_side, left : left + lr_crop_side].float()

        def hr_crop(image: Tensor) -> Tensor:
            side = lr_crop_side * scale
            return image[:, top * scale : top * scale + side, left * scale : left * scale + side].float()

        bicubic = snap_to_uint8_levels(imresize(lr_crop.unsqueeze(0), scale=scale)[0])
        nearest = F.interpolate(lr_crop.unsqueeze(0), scale_factor=scale, mode="nearest")[0]
        tiles = [nearest, bicubic, hr_crop(sr), hr_crop(hr)]
        gap = torch.ones(3, tiles[0].shape[-2], 4, device=lr.device)
        row = torch.cat([part for tile in tiles for part in (tile.to(lr.device), gap)][:-1], dim=-1)
        return to_uint8(row).permute(1, 2, 0).cpu().numpy()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._panels or trainer.sanity_checking or not trainer.is_global_zero:
            return
        step = trainer.global_step
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            for index, (_, panel) in enumerate(self._panels):
                write_image(self.save_dir / f"step{step:07d}_{index}.png", panel, overwrite=True)
        captions = [f"{name}: LR | bicubic | SR | HR (step {step})" for name, _ in self._panels]
        for logger in _wandb_loggers(trainer):
            logger.log_image("val/panel", [panel for _, panel in self._panels], step=step, caption=captions)


class SampleUpscale(pl.Callback):
    """After training, upscale the first validation image with the evaluation weights and write
    ``{output_dir}/sample_{name}_lr.png``, ``..._bicubic_x{s}.png`` and ``..._sr_x{s}.png``."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not trainer.val_dataloaders:
            return
        assert isinstance(pl_module, SRLitModule)
        loaders = trainer.val_dataloaders
        batch = next(iter(loaders[0] if isinstance(loaders, list | tuple) else loaders))
        lr = batch["lr"][:1].to(pl_module.device)
        model = pl_module.eval_net
        with torch.no_grad(), torch.autocast(device_type=pl_module.device.type, enabled=False):
            sr = model(lr.float())[0]
        scale = model.scale
        stem = Path(batch["name"][0]).stem
        self.output_dir.mkdir(parents=True, exist_ok=True)
        images = {
            f"sample_{stem}_lr.png": lr[0],
            f"sample_{stem}_bicubic_x{scale}.png": imresize(lr.float(), scale=scale)[0],
            f"sample_{stem}_sr_x{scale}.png": sr,
        }
        for filename, image in images.items():
            write_image(
                self.output_dir / filename, to_uint8(image.detach()).permute(1, 2, 0).cpu().numpy(), overwrite=True
            )


class TrainingClock(pl.Callback):
    """Wall-clock hours this run has trained, summed over resumes (the total is saved in checkpoints), logged
    as ``time/train_hours`` at each validation so that quality can be plotted against training time (W&B,
    the CSV logger, ``bench/training_curve.py``). Validation time counts: it is part of what a run costs."""

    def __init__(self) -> None:
        self.hours_before_resume = 0.0
        self._started: float | None = None

    def hours(self) -> float:
        running = 0.0 if self._started is None else (time.monotonic() - self._started) / 3600.0
        return self.hours_before_resume + running

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.monotonic()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self._started is None:
            return
        pl_module.log("time/train_hours", self.hours(), rank_zero_only=True)

    def state_dict(self) -> dict[str, float]:
        return {"hours": self.hours()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.hours_before_resume = float(state_dict["hours"])


def _batch_size(batch: Any) -> int:
    """Patches in a training batch: the first dimension of its first tensor."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0])
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, list | tuple) else ()
    return next((size for value in values if (size := _batch_size(value))), 0)


def format_duration(seconds: float) -> str:
    """``3725.2`` -> ``"1:02:05"``."""
    return str(datetime.timedelta(seconds=max(0, round(seconds))))


class StepProgressBar(RichProgressBar):
    """Rich progress bar for step-counted training: the bar is the global step of ``max_steps`` (across epochs
    and resumes; Lightning's own shows ``Epoch 3/-2`` when only steps are limited), followed by ``step``,
    ``patches/s`` (over the last ``speed_window`` steps, validation excluded, all ranks) and ``eta`` (time
    left at this session's pace, validations included) next to the logged metrics.

    Without ``max_steps`` (an epoch-limited run) it falls back to Lightning's per-epoch bar.
    """

    def __init__(
        self,
        refresh_rate: int = 1,
        leave: bool = False,
        console_kwargs: dict[str, Any] | None = None,
        speed_window: int = 50,
    ) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave, console_kwargs=console_kwargs)
        self._recent: deque[tuple[float, int]] = deque(maxlen=max(2, speed_window + 1))
        self._patches = 0
        self._session_start: tuple[float, int] | None = None

    def _by_steps(self) -> bool:
        return self._trainer is not None and self.trainer.max_steps is not None and self.trainer.max_steps > 0

    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps if self._by_steps() else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        if not self._by_steps():
            return super()._get_train_description(current_epoch)
        return f"{'Training':{len(self.validation_description)}}"

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        now = time.monotonic()
        self._session_start = (now, trainer.global_step)
        self._patches = 0
        self._recent.clear()
        self._recent.append((now, 0))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._by_steps():
            super().on_train_epoch_start(trainer, pl_module)
            return
        if self.is_disabled or self.progress is None:
            return
        if self.train_progress_bar_id is None:  # one bar for the whole run, not one per epoch
            self.train_progress_bar_id = self.progress.add_task(
                self._get_train_description(trainer.current_epoch),
                total=self.total_train_batches,
                completed=trainer.global_step,
            )
        self.refresh()

    def _initialize_train_progress_bar_id(self) -> None:
        if not self._by_steps():
            super()._initialize_train_progress_bar_id()
            return
        assert self.progress is not None
        self.train_progress_bar_id = self.progress.add_task(
            self._get_train_description(self.trainer.current_epoch),
            total=self.total_train_batches,
            completed=self.trainer.global_step,
        )

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._patches += _batch_size(batch) * trainer.world_size
        self._recent.append((time.monotonic(), self._patches))
        if not self._by_steps():
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not trainer.sanity_checking and self._recent:  # the speed of training, not of validation
            self._recent.clear()
            self._recent.append((time.monotonic(), self._patches))

    def patches_per_second(self) -> float | None:
        if len(self._recent) < 2:
            return None
        (start, first), (end, last) = self._recent[0], self._recent[-1]
        return (last - first) / (end - start) if end > start else None

    def seconds_left(self, trainer: pl.Trainer) -> float | None:
        if self._session_start is None or not self._by_steps():
            return None
        started, first_step = self._session_start
        done = trainer.global_step - first_step
        if done <= 0:
            return None
        return (time.monotonic() - started) / done * max(0, trainer.max_steps - trainer.global_step)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        if self._by_steps():
            items["step"] = f"{trainer.global_step}/{trainer.max_steps}"
        rate = self.patches_per_second()
        if rate is not None:
            items["patches/s"] = f"{rate:.1f}"
        left = self.seconds_left(trainer)
        if left is not None:
            items["eta"] = format_duration(left)
        return items
