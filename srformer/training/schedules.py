"""Learning-rate schedules as step-indexed multipliers for :class:`torch.optim.lr_scheduler.LambdaLR`.

Each schedule is a small callable object rather than a closure: ``LambdaLR.state_dict`` saves the
``__dict__`` of callable objects, so a resumed run restores the exact schedule it was started with.
The scheduler is stepped once per optimizer step, so ``step`` is the trainer's ``global_step``.

:func:`multistep`, :func:`warmup_cosine` and :func:`constant` build the :class:`LambdaLR`; the training
configs name them as Hydra partials (``configs/scheduler/*.yaml``), and ``SRLitModule`` gives them the optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

ScheduleKind = Literal["multistep", "cosine", "constant"]


@dataclass
class LinearWarmup:
    """Linear ramp from ``1 / warmup_steps`` to 1 over the first ``warmup_steps`` steps, then 1."""

    warmup_steps: int = 0

    def __call__(self, step: int) -> float:
        if step >= self.warmup_steps:
            return 1.0
        return (step + 1) / self.warmup_steps


@dataclass
class MultiStepDecay:
    """Multiply the learning rate by ``gamma`` at each milestone (the SR papers halve it at 250K, 400K,
    450K and 475K of 500K steps), after an optional linear warmup."""

    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.5
    warmup_steps: int = 0

    def __call__(self, step: int) -> float:
        passed = sum(1 for milestone in self.milestones if step >= milestone)
        return LinearWarmup(self.warmup_steps)(step) * self.gamma**passed


@dataclass
class WarmupCosine:
    """Linear warmup to the base rate, then a half cosine down to ``min_ratio`` of it at ``total_steps``."""

    total_steps: int = 1
    warmup_steps: int = 0
    min_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return LinearWarmup(self.warmup_steps)(step)
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def multistep(optimizer: Optimizer, milestones: Sequence[int], gamma: float = 0.5, warmup_steps: int = 0) -> LambdaLR:
    """Multiply the rate by ``gamma`` at each milestone, after an optional linear warmup (``configs/scheduler/``)."""
    return LambdaLR(optimizer, MultiStepDecay(sorted(int(m) for m in milestones), gamma, warmup_steps))


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> LambdaLR:
    """Linear warmup, then a half cosine to ``min_ratio`` of the rate at ``total_steps`` (``configs/scheduler/``)."""
    return LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps, min_ratio))


def constant(optimizer: Optimizer, warmup_steps: int = 0) -> LambdaLR:
    """The base rate after an optional linear warmup (``configs/scheduler/``)."""
    return LambdaLR(optimizer, MultiStepDecay([], 1.0, warmup_steps))


def build_scheduler(
    optimizer: Optimizer,
    kind: ScheduleKind,
    total_steps: int,
    warmup_steps: int = 0,
    milestones: Sequence[int] = (),
    gamma: float = 0.5,
    min_ratio: float = 0.0,
) -> LambdaLR:
    """A schedule chosen by name, for scripts outside Hydra (the benches); training configures
    :func:`multistep`, :func:`warmup_cosine` or :func:`constant` in ``configs/scheduler/``."""
    if kind == "multistep":
        return multistep(optimizer, milestones, gamma, warmup_steps)
    if kind == "cosine":
        return warmup_cosine(optimizer, total_steps, warmup_steps, min_ratio)
    if kind == "constant":
        return constant(optimizer, warmup_steps)
    raise ValueError(f"unknown schedule {kind!r}; use 'multistep', 'cosine' or 'constant'")
