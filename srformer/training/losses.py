"""Pixel losses of the training module (``configs/loss/*.yaml``; ``l1`` is :class:`torch.nn.L1Loss` itself).

A loss is any ``nn.Module`` called as ``loss(sr, hr)`` on ``(B, 3, H, W)`` tensors that returns a scalar; the
module hands it float32 SR, whatever the training precision.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CharbonnierLoss(nn.Module):
    """Mean of ``sqrt((sr - hr)^2 + eps^2)``: L1 with a smooth minimum (``eps`` in [0, 1] intensity units)."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = float(eps)

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return torch.sqrt((sr - hr).square() + self.eps * self.eps).mean()

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
