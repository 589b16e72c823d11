"""Experiment loggers: a W&B logger whose run survives resumes and whose summary holds the best scores."""

from __future__ import annotations

import secrets
import string
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from srformer.atomic import atomic_file

RUN_ID_FILE = "wandb_run_id.txt"

#: Validation scores whose run summary is their best value (W&B's default is the last one logged), so
#: that the runs table and sweeps compare runs by their best ``val/psnr``.
BEST_IS_MAX = ("val/psnr", "val/ssim")


def stable_run_id(run_dir: str | Path) -> str:
    """The W&B run id of ``run_dir``: read from ``run_dir/wandb_run_id.txt``, created on first use.

    Re-running the same command in the same run folder (a resume) thus continues the same W&B run instead
    of starting a new one. Only rank zero writes the file; the other ranks never create a W&B run.
    """
    path = Path(run_dir) / RUN_ID_FILE
    if path.is_file():
        return path.read_text().strip()
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    if rank_zero_only.rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, "w") as file:
            file.write(run_id + "\n")
    return run_id


def wandb_logger(
    save_dir: str,
    project: str = "srformer",
    name: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
    entity: str | None = None,
    offline: bool = True,
    log_checkpoints: bool = True,
) -> WandbLogger:
    """A :class:`WandbLogger` writing under ``save_dir/wandb`` with a run id stable across resumes.

    Args:
        offline: no account and no network needed; ``wandb sync <run folder>`` uploads it later.
        log_checkpoints: online only: upload every Lightning checkpoint as a ``model`` artifact
            (aliases ``latest``, and ``best`` on the best one). Lightning refuses this offline, so it is
            ignored there; the exported best weights are logged as an artifact in both modes.
    """
    return SRWandbLogger(
        save_dir=save_dir,
        project=project,
        name=name,
        group=group,
        tags=list(tags) if tags else None,
        entity=entity,
        id=stable_run_id(save_dir),
        offline=offline,
        log_model="all" if log_checkpoints and not offline else False,
        # Lightning signals offline through the WANDB_MODE variable, which wandb ignores once an earlier run
        # in the same process has set up its settings (it then asks for an API key); say it to wandb.init.
        mode="offline" if offline else "online",
    )


class SRWandbLogger(WandbLogger):
    """:class:`WandbLogger` whose run summary keeps the *best* ``val/psnr`` and ``val/ssim`` (``summary="max"``)
    instead of the last value, plotted against ``trainer/global_step`` like every other metric."""

    @property
    def experiment(self) -> Any:
        created = self._experiment is None
        run = super().experiment
        if created and getattr(run, "define_metric", None) is not None:
            for name in BEST_IS_MAX:
                run.define_metric(name, step_metric="trainer/global_step", step_sync=True, summary="max")
        return run
