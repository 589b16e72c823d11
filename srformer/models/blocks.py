"""Transformer and convolution blocks of the network.

Every transformer block works on ``(B, H, W, C)`` feature maps whose height and width are multiples of the
window size (the network pads its input once, see :class:`srformer.models.network.SRFormer`). Where each
token goes (windows, shifted windows, enlarged windows, the shift mask) is the network's
:class:`~srformer.models.geometry.WindowGeometry`, shared by all its blocks.

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

from torch import Tensor, nn

from srformer.models.attention import Mlp, WindowCrossAttention, WindowSelfAttention
from srformer.models.geometry import WindowGeometry

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
    """Pre-norm windowed multi-head self-attention block (on regular or shifted windows) with an MLP.

    Args:
        dim: channels ``C``.
        num_heads: attention heads; ``dim / num_heads`` is the head size.
        geometry: the network's window geometry.
        shifted: attend within windows shifted by ``geometry.shift`` pixels, which connect neighbouring
            windows of the previous block.
        mlp_ratio: hidden width of the MLP as a multiple of ``dim``.
    """

    def __init__(self, dim: int, num_heads: int, geometry: WindowGeometry, shifted: bool, mlp_ratio: float) -> None:
        super().__init__()
        self.geometry = geometry
        self.shifted = shifted
        self.pos = ConvPositionEncoding(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowSelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``."""
        _, H, W, _ = x.shape
        x = self.pos(x)
        windows = self.geometry.partition(self.norm1(x), self.shifted)
        mask = self.geometry.shift_mask(H, W, x.device) if self.shifted else None
        x = x + self.geometry.merge(self.attn(windows, mask), H, W, self.shifted)
        return x + self.mlp(self.norm2(x))


class CrossAttentionBlock(nn.Module):
    """Pre-norm windowed multi-head cross-attention block with an MLP.

    Queries come from a window of the deep features ``x``; keys and values come from ``context`` over the
    same window enlarged by ``overlap`` pixels per side. With ``context = x`` (the ``overlap`` kind) each
    window sees across its borders; with the stem's shallow features (the ``shallow`` kind) the deep path
    can fetch high-frequency detail that deep layers tend to smooth away.

    The block starts as an identity (:meth:`start_as_identity`, called by the network after its generic
    initialisation): its three residual branches (position convolution, attention, MLP) start at zero, so a
    new cross-attention block cannot disturb the features the self-attention blocks pass on before it has
    learnt something to add (as HAT scales its new branch down "to avoid optimization conflict").
    """

    def __init__(
        self, dim: int, context_dim: int, num_heads: int, geometry: WindowGeometry, overlap: int, mlp_ratio: float
    ) -> None:
        super().__init__()
        if not 0 < overlap < geometry.window:
            raise ValueError(f"overlap must be in (0, window), got {overlap} for window {geometry.window}")
        self.pos = ConvPositionEncoding(dim)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim)
        self.attn = WindowCrossAttention(dim, context_dim, num_heads, geometry, overlap)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def start_as_identity(self) -> None:
        """Zero the last layer of each residual branch: the block then returns its input unchanged."""
        for layer in (self.pos.conv, self.attn.proj, self.mlp.fc2):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

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
        geometry: the network's window geometry.
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
        geometry: WindowGeometry,
        mlp_ratio: float,
        context: ContextKind,
        overlap: int,
    ) -> None:
        super().__init__()
        self.context = context
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(dim, num_heads, geometry, shifted=i % 2 == 1, mlp_ratio=mlp_ratio) for i in range(depth)
        )
        self.cross = (
            None if context == "none" else CrossAttentionBlock(dim, dim, num_heads, geometry, overlap, mlp_ratio)
        )
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor, shallow: Tensor) -> Tensor:
        """x, shallow: ``(B, H, W, C)`` -> ``(B, H, W, C)``."""
        h = x
        for block in self.blocks:
            h = block(h)
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
