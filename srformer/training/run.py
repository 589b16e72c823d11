"""What ``train.py`` runs: instantiate everything from the composed Hydra config, fit, test.

:func:`run_task` is the Hydra task (user errors, failed sweep jobs); :func:`train` does the work.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only
from torch import nn

from srformer.atomic import atomic_file
from srformer.checkpoint import load_model
from srformer.errors import CheckpointError, ConfigError, SRFormerError, report_user_error
from srformer.models import SRFormer
from srformer.training.callbacks import ExportBestWeights
from srformer.training.module import SRLitModule

log = logging.getLogger(__name__)


def launched_by_external_launcher() -> bool:
    """True under torchrun or a multi-task SLURM step, where every rank runs Hydra itself."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1


def check_run_folder_is_shared(cfg: DictConfig) -> None:
    """Under torchrun/srun each rank composes its own config; with the default time-stamped ``run_name``
    ranks starting a second apart would write to different folders, so an explicit name is required."""
    if not launched_by_external_launcher() or not HydraConfig.initialized():
        return
    overrides = HydraConfig.get().overrides.task
    if not any(o.lstrip("+~").startswith("run_name=") for o in overrides):
        raise SRFormerError(
            "multi-process launches (torchrun, srun) need an explicit run_name=<name> so that all ranks"
            " share one run folder, e.g. run_name=$SLURM_JOB_ID"
        )


def resolve_ckpt_path(ckpt_path: str | None, checkpoint_dir: Path, auto_resume: bool) -> str | None:
    """The checkpoint to resume from: ``ckpt_path`` as given (``"last"`` or a file), or, with
    ``auto_resume``, the run folder's ``last.ckpt`` when there is one (re-running a command resumes it)."""
    if ckpt_path is not None:
        if ckpt_path not in ("last", "best") and not Path(ckpt_path).is_file():
            raise CheckpointError(f"checkpoint to resume from not found: {ckpt_path}")
        return ckpt_path
    last = checkpoint_dir / "last.ckpt"
    if auto_resume and last.is_file():
        log.info("resuming from %s", last)
        return str(last)
    return None


def load_matching_weights(net: SRFormer, source: str) -> list[str]:
    """Initialise ``net`` from another model: copy every tensor whose name and shape match.

    Used for x4 from a trained x2 (the upsampler stays fresh) and for growing a model deeper (``light`` from
    ``tiny``: same width, more residual groups; the extra groups start as identities). Returns the names
    left at their fresh initialisation.
    """
    source_state = load_model(source).state_dict()
    target_state = net.state_dict()
    matching = {k: v for k, v in source_state.items() if k in target_state and v.shape == target_state[k].shape}
    if not matching:
        raise CheckpointError(f"{source} shares no weights with the {net.config} model")
    net.load_state_dict(matching, strict=False)
    fresh = set(target_state) - set(matching)
    # Residual groups the source lacks (a deeper model grown from a shallower one) start as identities, so
    # the grown model begins exactly where the source ended instead of below it.
    for index, group in enumerate(net.groups):
        if all(name in fresh for name in target_state if name.startswith(f"groups.{index}.")):
            nn.init.zeros_(group.conv.weight)
            nn.init.zeros_(group.conv.bias)
    return sorted(fresh)


def check_recipe_is_objects(cfg: DictConfig) -> None:
    """``module.optimizer=adamw`` (a name, as the flat recipe took it) replaces the optimizer's config with a
    string; the group override ``optimizer=adamw`` is what picks one now."""
    for part in ("optimizer", "scheduler", "loss"):
        value = cfg.module.get(part)
        if isinstance(value, str):
            raise ConfigError(
                f"module.{part}={value} names a {part} the old way; pick its config with {part}={value}"
                f" (configs/{part}/*.yaml)"
            )


def _checkpoint_dir(callbacks: list[pl.Callback], output_dir: Path) -> Path:
    for callback in callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            return Path(callback.dirpath)
    return output_dir / "checkpoints"


#: Written into a run (or sweep job) folder whose training stopped on a user error or a diverged loss.
FAILURE_FILE = "failed.json"


def in_multirun() -> bool:
    """True inside a ``train.py -m`` sweep job."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_task(cfg: DictConfig) -> float | None:
    """The ``train.py`` Hydra task: train, and return the best value of ``cfg.optimized_metric`` (for sweepers).

    A user error or a diverged run (an :class:`SRFormerError`) is recorded in ``failed.json`` in the run
    folder and printed as one line ``error: ...``. A single run then exits with status 2; a job of a
    ``-m`` sweep returns NaN instead, so the sweep goes on with its next job (an exception would end it, and
    Optuna counts a NaN as a failed trial).
    """
    try:
        metrics = train(cfg)
    except SRFormerError as error:
        _record_failure(cfg, error)
        if not in_multirun():
            sys.exit(report_user_error(error))
        job = HydraConfig.get().job.num
        report_user_error(error, prefix=f"job {job} failed: ")
        log.error("job %s failed: %s", job, error)
        return math.nan
    return metrics.get(cfg.optimized_metric)


def _record_failure(cfg: DictConfig, error: SRFormerError) -> None:
    try:
        output_dir = Path(cfg.paths.output_dir)
    except Exception:  # the config itself is what failed to resolve: nowhere to write
        return
    record: dict[str, Any] = {
        "status": "failed",
        "error": str(error),
        "type": type(error).__name__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        record["job"] = hydra_cfg.job.get("num")
        record["overrides"] = list(hydra_cfg.overrides.task)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_file(output_dir / FAILURE_FILE, "w") as file:
            file.write(json.dumps(record, indent=2) + "\n")
    except OSError as err:  # a full disk is a likely cause of the failure itself
        log.warning("could not write %s (%s)", output_dir / FAILURE_FILE, err)


def best_score(callbacks: list[pl.Callback], monitor: str) -> float | None:
    """The best ``monitor`` value seen so far (over resumes too): from the checkpoint or export callback."""
    for callback in callbacks:
        score = callback.best_model_score if isinstance(callback, ModelCheckpoint) else None
        if score is not None and callback.monitor == monitor and math.isfinite(float(score)):
            return float(score)
    for callback in callbacks:
        if isinstance(callback, ExportBestWeights) and callback.monitor == monitor and callback.best_score is not None:
            return float(callback.best_score)
    return None


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) as configured; returns the metrics (``{name: value}``).

    ``metrics[cfg.optimized_metric]`` is the *best* value over the run's validations (what a sweeper should
    optimise, and what ``best.ckpt``/``best.safetensors`` hold); ``metrics["last/" + cfg.optimized_metric]``
    is the final one. The other ``val/...`` entries are from the last validation, ``test/...`` from testing
    the best checkpoint.
    """
    check_run_folder_is_shared(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 for whatever still runs in fp32

    # ``_convert_="all"``: plain lists/dicts, so no OmegaConf object is ever pickled into a checkpoint.
    datamodule: pl.LightningDataModule = instantiate(cfg.data, _convert_="all")
    net: SRFormer = instantiate(cfg.model, _convert_="all")
    if cfg.get("init_weights"):
        fresh = load_matching_weights(net, cfg.init_weights)
        log.info("initialised from %s; %d tensors left fresh: %s", cfg.init_weights, len(fresh), fresh)
    check_recipe_is_objects(cfg)
    module: SRLitModule = instantiate(cfg.module, net=net, _convert_="all")
    callbacks = [instantiate(c, _convert_="all") for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c, _convert_="all") for c in (cfg.get("logger") or {}).values() if c]
    if not loggers:  # Lightning refuses a learning-rate monitor with nothing to log to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, _convert_="all")
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), _checkpoint_dir(callbacks, output_dir), cfg.auto_resume)
    succeeded = False
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
        monitor = str(cfg.optimized_metric)
        best = best_score(callbacks, monitor)
        if monitor in metrics:
            metrics[f"last/{monitor}"] = metrics[monitor]
        if cfg.get("test"):
            best_path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            trainer.test(module, datamodule=datamodule, ckpt_path="best" if best_path else None)
            metrics.update({name: float(value) for name, value in trainer.callback_metrics.items()})
        if best is not None:
            metrics[monitor] = best
            _summarise_best(loggers, monitor, best)
        succeeded = True
    finally:
        _finish_wandb_runs(loggers, succeeded)
    log.info("run folder: %s", output_dir)
    return metrics


def _summarise_best(loggers: list[Logger], monitor: str, best: float) -> None:
    """``best/<monitor>`` in the W&B run summary (``val/psnr`` itself is also summarised by its maximum)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and rank_zero_only.rank == 0 and logger._experiment is not None:
            logger.experiment.summary[f"best/{monitor}"] = best


def _finish_wandb_runs(loggers: list[Logger], succeeded: bool) -> None:
    """Close the W&B run (writes its summary; the next job of a sweep then starts its own run)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and rank_zero_only.rank == 0 and logger._experiment is not None:
            logger.experiment.finish(exit_code=0 if succeeded else 1)
