"""Exponential moving average (EMA) of model weights.

The EMA copy is what validation, test and export use: averaging the last few thousand optimizer steps
gives smoother weights and typically +0.05 to +0.1 dB PSNR over the raw ones at no training cost.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema_copy(model: nn.Module) -> nn.Module:
    """A frozen deep copy of ``model`` to hold the averaged weights (never in the optimizer)."""
    ema = copy.deepcopy(model)
    ema.requires_grad_(False)
    return ema


def ema_decay_at(step: int, decay: float) -> float:
    """Decay to use after ``step`` optimizer steps: ramps up as ``(1 + step) / (10 + step)`` so that the
    average is not dominated by the random initial weights in short runs, and is capped at ``decay``."""
    return min(decay, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * model`` for every parameter; persistent buffers are copied.

    Non-persistent buffers (caches derived from the input size, like attention masks) are left alone.
    """
    ema_params = dict(ema.named_parameters())
    for name, param in model.named_parameters():
        ema_params[name].lerp_(param.detach(), 1.0 - decay)
    ema_state = ema.state_dict(keep_vars=True)
    for name, buffer in model.named_buffers():
        if name in ema_state:
            ema_state[name].copy_(buffer)
