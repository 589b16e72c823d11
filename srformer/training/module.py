"""The LightningModule that trains an :class:`~srformer.models.SRFormer`.

Training: a pixel loss on ``(lr, hr)`` patch batches, an optimizer with a per-step learning-rate schedule,
an EMA copy of the weights updated after every optimizer step. The loss (an ``nn.Module``), the optimizer
and the schedule (partials that receive the parameter groups and the optimizer) are Hydra objects chosen in
``configs/loss/``, ``configs/optimizer/`` and ``configs/scheduler/``, as lightning-hydra-template does: a new
one needs a YAML file, not a code change. Validation and test: whole benchmark
images through the EMA weights in fp32, SR clamped and rounded to uint8 levels, Y-channel PSNR/SSIM with
``scale`` pixels cropped from each border (the classical protocol), logged per set and as a mean.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from hydra.utils import instantiate
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from srformer.data.degradations import RealWorldDegradation, step_seed
from srformer.errors import CheckpointError, SRFormerError
from srformer.models import SRFormer
from srformer.pixels import snap_to_uint8_levels
from srformer.scoring import mean_scores, score_sr
from srformer.training.ema import ema_decay_at, make_ema_copy, update_ema

log = logging.getLogger(__name__)

#: Builds the optimizer from parameter groups, e.g. ``functools.partial(torch.optim.Adam, lr=2e-4)``.
OptimizerFactory = Callable[[list[dict[str, Any]]], Optimizer]
#: Builds the per-step schedule from the optimizer, e.g. ``functools.partial(schedules.constant)``.
SchedulerFactory = Callable[[Optimizer], LRScheduler]
#: A Hydra ``{"_target_": ..., ...}`` config of one of them, as the checkpoint's hyper-parameters keep it.
ObjectConfig = Mapping[str, Any]
EvalStage = Literal["val", "test"]
NonFiniteAction = Literal["stop", "skip"]


class NonFiniteLossError(SRFormerError):
    """The training loss became NaN or infinite (the run diverged)."""


def object_config(value: Any) -> Any:
    """The primitive Hydra config that rebuilds ``value``: what the checkpoint's hyper-parameters keep.

    A ``functools.partial`` of a class or function with keyword arguments (what ``_partial_: true`` makes)
    becomes ``{"_target_": ..., "_partial_": True, **keywords}``; another object (a loss module) becomes
    ``{"_target_": its class, **arguments}``, its constructor arguments read back from the attributes of the
    same name (torch's losses and ours keep them so). Mappings and sequences are converted item by item.
    Raises ``ValueError`` for what cannot be written so (positional arguments, tensors, lost arguments).
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): object_config(v) for k, v in value.items()}
    if isinstance(value, Sequence):  # lists, tuples, OmegaConf lists
        return [object_config(v) for v in value]
    if isinstance(value, functools.partial):
        if value.args:
            raise ValueError(f"give the arguments of {value.func.__qualname__} by keyword, not by position")
        keywords = {k: object_config(v) for k, v in value.keywords.items()}
        return {"_target_": _qualified_name(value.func), "_partial_": True, **keywords}
    if isinstance(value, Tensor):
        raise ValueError("a tensor cannot be recorded in the checkpoint's hyper-parameters")
    arguments = {}
    for name, parameter in inspect.signature(type(value)).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if hasattr(value, name):
            arguments[name] = object_config(getattr(value, name))
        elif parameter.default is parameter.empty:
            raise ValueError(
                f"{type(value).__name__} cannot be recorded in the checkpoint's hyper-parameters:"
                f" it does not keep its argument {name!r} as an attribute"
            )
    return {"_target_": _qualified_name(type(value)), **arguments}


def _qualified_name(target: Any) -> str:
    return f"{target.__module__}.{target.__qualname__}"


def _built(value: Any) -> Any:
    """``value`` itself, or the object its ``_target_`` config (a checkpoint's hyper-parameters) builds."""
    return instantiate(dict(value), _convert_="all") if isinstance(value, Mapping) else value


class SRLitModule(pl.LightningModule):
    """Trains ``net``; validates, tests and exports ``net_ema`` (or ``net`` when ``ema_decay`` is 0).

    Args:
        net: the model to train. Leave ``None`` to build it from ``arch`` (what loading a checkpoint does).
        arch: ``SRFormer`` config dict; taken from ``net.config`` when ``net`` is given. Saved in the
            checkpoint hyperparameters so that a checkpoint rebuilds its own model.
        preset: name of the preset ``net`` was built from (recorded for exports), or ``None``.
        optimizer: builds the optimizer from the parameter groups (``configs/optimizer/``, a ``_partial_``
            of e.g. ``torch.optim.Adam``). Its ``weight_decay`` applies to weight matrices and conv kernels
            only, never to biases or norms. ``None``: the module can validate, test and export, not train.
        scheduler: builds the per-step learning-rate schedule from the optimizer (``configs/scheduler/``,
            a ``_partial_`` of :mod:`srformer.training.schedules` or of a ``torch.optim.lr_scheduler``
            class), stepped after every optimizer step; ``None`` keeps the optimizer's rate.
        loss: ``loss(sr, hr)`` on float32 ``(B, 3, H, W)`` batches (``configs/loss/``); ``None``: L1.
        ema_decay: EMA decay per optimizer step (about 0.999); 0 disables the EMA copy.
        compile: ``torch.compile`` the training network (first steps are slow while it compiles).
        channels_last: run the training network in channels-last memory format (faster convs on GPUs).
        nonfinite_loss: on a NaN/inf loss, ``"stop"`` with :class:`NonFiniteLossError` naming the step,
            or ``"skip"`` the batch (no update; counted in ``train/skipped_batches``). Either way the
            weights never see the bad gradient.
        degradation: a random real-world degradation (``configs/degradation/``) that replaces each training
            batch's LR with one made from its HR on the training device; ``None`` (``degradation=bicubic``)
            trains on the data's own (MATLAB bicubic) LR, untouched. Not saved in the checkpoint (it is
            not needed to use the model); the run's config records it.

    ``optimizer``, ``scheduler`` and ``loss`` may also be given as their ``_target_`` configs (what the
    checkpoint's hyper-parameters hold, so that ``load_from_checkpoint`` rebuilds the same recipe).
    """

    def __init__(
        self,
        net: SRFormer | None = None,
        arch: dict[str, Any] | None = None,
        preset: str | None = None,
        optimizer: OptimizerFactory | ObjectConfig | None = None,
        scheduler: SchedulerFactory | ObjectConfig | None = None,
        loss: nn.Module | ObjectConfig | None = None,
        ema_decay: float = 0.999,
        compile: bool = False,
        channels_last: bool = False,
        nonfinite_loss: NonFiniteAction = "stop",
        degradation: RealWorldDegradation | None = None,
    ) -> None:
        super().__init__()
        if net is None and arch is None:
            raise ValueError("SRLitModule needs either a network (net) or its config (arch)")
        if isinstance(optimizer, str):
            # What Lightning's load_from_checkpoint passes from a checkpoint written by the flat recipe
            # (optimizer="adam", lr=..., scheduler="multistep", ...): its other values are not arguments now.
            raise CheckpointError(
                f"this training checkpoint names its optimizer {optimizer!r}, as checkpoints did before the"
                " optimizer, scheduler and loss became config objects: resume it with train.py (ckpt_path=<file>;"
                " the recipe then comes from the config) or load its weights with srformer.load_model"
            )
        if nonfinite_loss not in ("stop", "skip"):
            raise ValueError(f"nonfinite_loss must be 'stop' or 'skip', got {nonfinite_loss!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.net: SRFormer = net if net is not None else SRFormer(**arch)
        self.optimizer_factory: OptimizerFactory | None = _built(optimizer)
        self.scheduler_factory: SchedulerFactory | None = _built(scheduler)
        self.criterion: nn.Module = _built(loss) if loss is not None else nn.L1Loss()
        for name, given, built in (
            ("optimizer", optimizer, self.optimizer_factory),
            ("scheduler", scheduler, self.scheduler_factory),
            ("loss", loss, self.criterion),
        ):
            if built is not None and not callable(built):
                raise ValueError(f"{name} must be a callable or its _target_ config, got {given!r}")
        # Only primitive values go into the checkpoint: the model is rebuilt from ``arch``, the recipe from
        # ``_target_`` configs, nothing is unpickled, and ``torch.load(weights_only=True)`` can read the file.
        self.save_hyperparameters(
            {
                "arch": dict(self.net.config),
                "preset": preset,
                "optimizer": object_config(optimizer),
                "scheduler": object_config(scheduler),
                "loss": object_config(self.criterion),
                "ema_decay": float(ema_decay),
                "compile": bool(compile),
                "channels_last": bool(channels_last),
                "nonfinite_loss": nonfinite_loss,
            }
        )
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.net_ema: SRFormer | None = make_ema_copy(self.net) if ema_decay > 0 else None
        if degradation is not None and degradation.scale != self.net.scale:
            raise ValueError(f"the degradation is for x{degradation.scale}, the model is x{self.net.scale}")
        self.degradation = degradation
        self.skipped_batches = 0
        self._batch_skipped = False
        # (set index, image name) -> (psnr, ssim) of the running validation/test epoch on this rank.
        self._eval_scores: dict[tuple[int, str], tuple[float, float]] = {}

    @property
    def eval_net(self) -> SRFormer:
        """The weights used for validation, test and export: the EMA copy when there is one."""
        return self.net_ema if self.net_ema is not None else self.net

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.compile:
            # In place, so parameter names (and the checkpoint keys) stay ``net.*``.
            self.net.compile()

    def forward(self, lr: Tensor) -> Tensor:
        """``(B, 3, h, w)`` in [0, 1] -> ``(B, 3, s*h, s*w)`` through the evaluation weights (not clamped)."""
        return self.eval_net(lr)

    # ----------------------------------------------------------------------------------------- training
    def training_lr(self, batch: dict[str, Tensor]) -> Tensor:
        """The LR input of a training batch: ``batch["lr"]``, or with a ``degradation`` a new LR
        ``(B, 3, p, p)`` made from ``batch["hr"]`` ``(B, 3, p*s, p*s)`` on the training device. The seed
        depends on the step and rank only, so a resumed run degrades its batches as an uninterrupted one."""
        if self.degradation is None:
            return batch["lr"]
        seed = step_seed(self.degradation.seed, self.global_step, self.global_rank)
        return self.degradation(batch["hr"], seed=seed)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        lr, hr = self.training_lr(batch), batch["hr"]
        if self.hparams.channels_last:
            lr = lr.contiguous(memory_format=torch.channels_last)
        sr = self.net(lr)
        loss = self.criterion(sr.float(), hr)
        self._batch_skipped = not self._all_finite(loss)
        if self._batch_skipped:
            return self._on_nonfinite_loss(loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=lr.shape[0])
        return loss

    def _all_finite(self, loss: Tensor) -> bool:
        """Whether the loss is finite on every rank: all ranks must agree to step or not, or DDP hangs."""
        bad = not bool(torch.isfinite(loss.detach()))
        return not self.trainer.strategy.reduce_boolean_decision(bad, all=False)

    def _on_nonfinite_loss(self, loss: Tensor) -> None:
        value = loss.detach().float().item()
        where = f"at step {self.global_step} (epoch {self.current_epoch})"
        if self.hparams.nonfinite_loss == "stop":
            what = f"{value}" if not torch.isfinite(loss.detach()) else "non-finite on another rank"
            raise NonFiniteLossError(
                f"training loss became {what} {where}; lower the learning rate or set"
                " trainer.gradient_clip_val, then resume from the last checkpoint"
                " (or set module.nonfinite_loss=skip to skip such batches)"
            )
        self.skipped_batches += 1
        log.warning("skipped a batch with a non-finite loss (%s) %s", value, where)
        self.log("train/skipped_batches", float(self.skipped_batches))
        return None  # Lightning skips backward; the step is still counted (global_step, schedule)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        # The closure runs training_step; a skipped batch leaves no gradients, so the optimizer changes
        # nothing, and the EMA must not move either.
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self.net_ema is not None and not self._batch_skipped:
            decay = ema_decay_at(self.global_step, self.hparams.ema_decay)
            update_ema(self.net_ema, self.net, decay)

    def configure_optimizers(self) -> dict[str, Any]:
        if self.optimizer_factory is None:
            raise SRFormerError("this SRLitModule was built without an optimizer; give it one to train")
        params = [p for p in self.net.parameters() if p.requires_grad]
        # Two groups, in this order (checkpoints rely on it): weight matrices and conv kernels take the
        # optimizer's weight decay; biases and norms never decay.
        groups = [
            {"params": [p for p in params if p.ndim >= 2]},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --------------------------------------------------------------------------- validation and test
    def on_validation_epoch_start(self) -> None:
        self._eval_scores = {}

    def on_test_epoch_start(self) -> None:
        self._eval_scores = {}

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        return {"sr": self._evaluate_batch(batch, dataloader_idx)}

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        return {"sr": self._evaluate_batch(batch, dataloader_idx)}

    def on_validation_epoch_end(self) -> None:
        self._log_eval_scores("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval_scores("test")

    def _evaluate_batch(self, batch: dict[str, Any], set_index: int) -> Tensor:
        """Super-resolve whole images ``batch["lr"]`` (B, 3, h, w) and score them against ``batch["hr"]`` with
        :func:`srformer.scoring.score_sr`, the scoring of ``evaluate`` and ``compare``.

        Returns the SR as scored (B, 3, s*h, s*w), float32 at uint8 levels, which callbacks use for panels.
        """
        # fp32 even under bf16-mixed training: bf16 cannot resolve uint8 levels near 1.0, and the reported
        # PSNR must be the model's, not the autocast's.
        with torch.autocast(device_type=self.device.type, enabled=False):
            sr = self.eval_net(batch["lr"].float())
        scored = score_sr(sr, batch["hr"], border=self.eval_net.scale)
        for name, p, s in zip(batch["name"], scored.psnr.tolist(), scored.ssim.tolist(), strict=True):
            self._eval_scores[(set_index, name)] = (p, s)
        return snap_to_uint8_levels(scored.sr)

    def _log_eval_scores(self, stage: EvalStage) -> None:
        """Log ``{stage}/{set}/psnr|ssim`` and the means over sets ``{stage}/psnr|ssim``.

        Under DDP the distributed sampler pads each set with repeated images so that all ranks get the
        same number; scores are gathered by (set, image name), so each image counts exactly once and the
        result equals the single-process one.
        """
        scores = dict(self._eval_scores)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list[dict[tuple[int, str], tuple[float, float]]] = [{}] * dist.get_world_size()
            dist.all_gather_object(gathered, scores)
            for rank_scores in gathered:
                scores.update(rank_scores)
        if not scores:
            return
        set_names = self._eval_set_names(stage)
        set_means: list[tuple[float, float]] = []
        for set_index in sorted({key[0] for key in scores}):
            psnr, ssim = mean_scores(v for key, v in scores.items() if key[0] == set_index)
            set_means.append((psnr, ssim))
            name = set_names[set_index] if set_index < len(set_names) else f"set{set_index}"
            # Identical on every rank after the gather: no further reduction needed.
            self.log(f"{stage}/{name}/psnr", psnr, add_dataloader_idx=False)
            self.log(f"{stage}/{name}/ssim", ssim, add_dataloader_idx=False)
        mean_psnr = sum(m[0] for m in set_means) / len(set_means)
        mean_ssim = sum(m[1] for m in set_means) / len(set_means)
        self.log(f"{stage}/psnr", mean_psnr, prog_bar=True, add_dataloader_idx=False)
        self.log(f"{stage}/ssim", mean_ssim, add_dataloader_idx=False)

    def _eval_set_names(self, stage: EvalStage) -> list[str]:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        attribute = "val_set_names" if stage == "val" else "test_set_names"
        names = getattr(datamodule, attribute, None) or getattr(datamodule, "val_set_names", None)
        return list(names or [])
