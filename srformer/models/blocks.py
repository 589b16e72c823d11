"""Transformer and convolution blocks of the network.

Every transformer block works on ``(B, H, W, C)`` feature maps whose height and width are multiples of the
window size (the network pads its input once, see :class:`srformer.models.network.SRFormer`).

Positional information comes from a depthwise 3x3 convolution at the start of each block (a conditional
positional encoding, Chu et al. 2021) rather than a relative-position bias table, chosen by measurement
(``python bench/attention_layouts.py``): a per-head bias combined with the per-window shift mask needs
either a 5-D layout, where PyTorch's fused CPU attention kernel falls back to its reference path (45 ms
against 11.5 ms per call), or the combined mask materialised for every image and head (12.4 ms, and
``images x heads`` times the memory of the shared shift mask). The convolution keeps every attention call on
the fused kernel with one mask broadcast over images and heads, and gives the queries a local view across
window borders.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from srformer.models.attention import (
    Mlp,
    WindowCrossAttention,
    WindowSelfAttention,
    window_partition,
    window_reverse,
)

ContextKind = Literal["overlap", "shallow", "none"]


def to_channels_first(x: Tensor) -> Tensor:
    """``(B, H, W, C)`` -> ``(B, C, H, W)`` view in channels-last memory, the layout convolutions prefer."""
    return x.permute(0, 3, 1, 2)


def to_channels_last(x: Tensor) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, H, W, C)`` (a view when ``x`` is in channels-last memory)."""
    return x.permute(0, 2, 3, 1)


class ConvPositionEncoding(nn.Module):
    """``x + DepthwiseConv3x3(x)`` on ``(B, H, W, C)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + to_channels_last(self.conv(to_channels_first(x)))


class SelfAttentionBlock(nn.Module):
    """Pre-norm windowed multi-head self-attention block (optionally on shifted windows) with an MLP.

    Args:
        dim: channels ``C``.
        num_heads: attention heads; ``dim / num_heads`` is the head size.
        window: window side in pixels.
        shift: cyclic shift in pixels before cutting windows (0 for regular windows, ``window // 2`` for
            shifted ones, which connect neighbouring windows of the previous block).
        mlp_ratio: hidden width of the MLP as a multiple of ``dim``.
    """

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        if not 0 <= shift < window:
            raise ValueError(f"shift must be in [0, window), got {shift} for window {window}")
        self.window = window
        self.shift = shift
        self.pos = ConvPositionEncoding(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowSelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, shift_mask: Tensor | None) -> Tensor:
        """x: ``(B, H, W, C)``; shift_mask: additive ``(nW, 1, N, N)`` for this size (used if shifted)."""
        B, H, W, C = x.shape
        x = self.pos(x)
        h = self.norm1(x)
        if self.shift:
            h = torch.roll(h, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = self.attn(window_partition(h, self.window), shift_mask if self.shift else None)
        h = window_reverse(windows, self.window, H, W)
        if self.shift:
            h = torch.roll(h, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + h
        return x + self.mlp(self.norm2(x))


class CrossAttentionBlock(nn.Module):
    """Pre-norm windowed multi-head cross-attention block with an MLP.

    Queries come from a window of the deep features ``x``; keys and values come from ``context`` over the
    same window enlarged by ``overlap`` pixels per side. With ``context = x`` (the ``overlap`` kind) each
    window sees across its borders; with the stem's shallow features (the ``shallow`` kind) the deep path
    can fetch high-frequency detail that deep layers tend to smooth away.
    """

    def __init__(self, dim: int, context_dim: int, num_heads: int, window: int, overlap: int, mlp_ratio: float) -> None:
        super().__init__()
        if not 0 < overlap < window:
            raise ValueError(f"overlap must be in (0, window), got {overlap} for window {window}")
        self.pos = ConvPositionEncoding(dim)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim)
        self.attn = WindowCrossAttention(dim, context_dim, num_heads, window, overlap)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """x: ``(B, H, W, C)``; context: ``(B, H, W, C_ctx)`` -> ``(B, H, W, C)``."""
        x = self.pos(x)
        x = x + self.attn(self.norm_q(x), self.norm_context(context))
        return x + self.mlp(self.norm2(x))


class ResidualGroup(nn.Module):
    """Self-attention blocks (regular and shifted windows alternating), one cross-attention block, a 3x3 conv,
    and the group's residual connection.

    Args:
        dim: channels.
        depth: number of self-attention blocks.
        num_heads: attention heads.
        window: window side.
        mlp_ratio: MLP width multiple.
        context: where the cross-attention block takes keys/values from: ``"overlap"`` (this group's deep
            features), ``"shallow"`` (the stem's features) or ``"none"`` (no cross-attention block).
        overlap: pixels by which the context window extends the query window on each side.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        mlp_ratio: float,
        context: ContextKind,
        overlap: int,
    ) -> None:
        super().__init__()
        self.context = context
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(dim, num_heads, window, shift=(window // 2) * (i % 2), mlp_ratio=mlp_ratio)
            for i in range(depth)
        )
        self.cross = None if context == "none" else CrossAttentionBlock(dim, dim, num_heads, window, overlap, mlp_ratio)
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor, shallow: Tensor, shift_mask: Tensor | None) -> Tensor:
        """x, shallow: ``(B, H, W, C)``; shift_mask: ``(nW, 1, N, N)`` -> ``(B, H, W, C)``."""
        h = x
        for block in self.blocks:
            h = block(h, shift_mask)
        if self.cross is not None:
            h = self.cross(h, shallow if self.context == "shallow" else h)
        return x + to_channels_last(self.conv(to_channels_first(h)))


class ResBlock(nn.Module):
    """Conv3x3 -> GELU -> Conv3x3 with a residual, on ``(B, C, H, W)``: the stem's refinement blocks."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.GELU(), nn.Conv2d(dim, dim, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)
