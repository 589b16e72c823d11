"""Windows and attention: the one shared home for every attention block.

Feature maps inside the transformer body are kept as ``(B, H, W, C)`` ("tokens last"), so that LayerNorm and
the linear layers work on contiguous rows and no block converts layouts back and forth.

Windows are laid out *window-major*: ``(nW, B, N, C)`` with ``nW`` windows of ``N = window**2`` tokens.
With this order the shifted-window mask, which depends on the window but not on the image in the batch,
has shape ``(nW, 1, N, N)`` and broadcasts over ``B * heads`` inside ``scaled_dot_product_attention``.
A batch-major order would need the mask copied once per image, and a 5-D layout drops PyTorch's fused CPU
kernel for the slow reference path (about 4x slower on this project's CPU: `python bench/attention_layouts.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def window_partition(x: Tensor, window: int) -> Tensor:
    """Cut a feature map into non-overlapping windows.

    Args:
        x: ``(B, H, W, C)`` with ``H`` and ``W`` multiples of ``window``.
    Returns:
        ``(nW, B, window * window, C)``, windows in raster order.
    """
    B, H, W, C = x.shape
    x = x.view(B, H // window, window, W // window, window, C)
    return x.permute(1, 3, 0, 2, 4, 5).reshape(-1, B, window * window, C)


def window_reverse(windows: Tensor, window: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`window_partition`: ``(nW, B, window**2, C)`` -> ``(B, H, W, C)``."""
    nW, B, N, C = windows.shape
    x = windows.view(height // window, width // window, B, window, window, C)
    return x.permute(2, 0, 3, 1, 4, 5).reshape(B, height, width, C)


def enlarged_window_partition(x: Tensor, window: int, overlap: int) -> Tensor:
    """Cut a feature map into windows enlarged by ``overlap`` pixels on every side.

    Window ``i`` of :func:`window_partition` and window ``i`` here share a centre, so a query window can
    attend to its own pixels and to a band of ``overlap`` pixels of its neighbours. At the image border the
    band is filled by reflection, the same padding the network uses to reach a window multiple, so no key
    needs masking.

    Args:
        x: ``(B, H, W, C)`` with ``H`` and ``W`` multiples of ``window`` and ``overlap < min(H, W)``.
    Returns:
        ``(nW, B, (window + 2 * overlap) ** 2, C)``.
    """
    B, H, W, C = x.shape
    size = window + 2 * overlap
    padded = F.pad(x.permute(0, 3, 1, 2), (overlap, overlap, overlap, overlap), mode="reflect")
    # unfold returns views: (B, C, nH, nW, size, size); the reshape below is the single copy.
    patches = padded.unfold(2, size, window).unfold(3, size, window)
    return patches.permute(2, 3, 0, 4, 5, 1).reshape(-1, B, size * size, C)


def shifted_window_mask(height: int, width: int, window: int, shift: int, device: torch.device) -> Tensor:
    """Which token pairs may attend to each other after a cyclic shift by ``shift`` pixels.

    After ``torch.roll(x, (-shift, -shift))`` the windows on the last row and column hold pixels from
    opposite image borders; they must only attend within their own region, as in Swin Transformer.

    Returns:
        float ``(nW, 1, N, N)``: 0 where attention is allowed, -inf where it is not (``N = window ** 2``).
        An additive float mask, because a boolean one is converted to this on every attention call.
    """
    region = torch.zeros(height, width, dtype=torch.long, device=device)
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in bounds:
        for cols in bounds:
            region[rows, cols] = label
            label += 1
    windows = window_partition(region.view(1, height, width, 1), window).view(-1, window * window)
    allowed = (windows[:, :, None] == windows[:, None, :]).unsqueeze(1)
    return torch.zeros(allowed.shape, device=device).masked_fill_(~allowed, float("-inf"))


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``(nW, B, N, C)`` -> ``(nW, B * heads, N, C // heads)``."""
    nW, B, N, C = x.shape
    x = x.view(nW, B, N, num_heads, C // num_heads).permute(0, 1, 3, 2, 4)
    return x.reshape(nW, B * num_heads, N, C // num_heads)


def merge_heads(x: Tensor, batch: int) -> Tensor:
    """``(nW, B * heads, N, d)`` -> ``(nW, B, N, heads * d)``."""
    nW, BH, N, d = x.shape
    heads = BH // batch
    return x.view(nW, batch, heads, N, d).permute(0, 1, 3, 2, 4).reshape(nW, batch, N, heads * d)


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention, ``softmax(q k^T / sqrt(d)) v``.

    Args:
        q: ``(..., N, d)``; k, v: ``(..., M, d)``; mask: broadcastable to ``(..., N, M)``, either bool
            (True where attention is allowed) or float (added to the scores).
    Returns:
        ``(..., N, d)``.
    """
    if mask is not None and mask.is_floating_point() and mask.dtype != q.dtype:
        mask = mask.to(q.dtype)  # under autocast q is bf16/fp16; fused kernels want the mask to match
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def attention_weights(q: Tensor, k: Tensor, mask: Tensor | None = None) -> Tensor:
    """The softmax weights :func:`attention` applies, made explicit: ``(..., N, d), (..., M, d)`` -> ``(..., N, M)``.

    For inspection only (srformer.explain); the forward pass keeps the fused kernel.
    """
    scores = (q @ k.transpose(-2, -1)) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = (
            scores + mask.to(scores.dtype) if mask.is_floating_point() else scores.masked_fill(~mask, float("-inf"))
        )
    return scores.softmax(dim=-1)


@dataclass
class CapturedAttention:
    """One attention call seen from inside, for windows laid out ``(nW, B * heads, ...)``.

    Attributes:
        weights: ``(nW, B * heads, N, M)`` softmax weights, each row sums to 1.
        values: ``(nW, B * heads, M, d)`` the values they weight.
        output: ``(nW, B * heads, N, d)`` what the fused kernel returned (``weights @ values`` up to rounding).
    """

    weights: Tensor
    values: Tensor
    output: Tensor


class CapturingAttention(nn.Module):
    """Base of the attention modules: with ``capture = True`` each forward also stores its weights.

    Off by default, and then the forward is exactly the fused :func:`attention` call.
    """

    def __init__(self) -> None:
        super().__init__()
        self.capture = False
        self.captured: CapturedAttention | None = None

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        out = attention(q, k, v, mask)
        if self.capture:
            with torch.no_grad():
                self.captured = CapturedAttention(attention_weights(q, k, mask), v.detach(), out.detach())
        return out


class WindowSelfAttention(CapturingAttention):
    """Multi-head self-attention inside each window: queries, keys and values all come from the window."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, windows: Tensor, mask: Tensor | None = None) -> Tensor:
        """windows: ``(nW, B, N, C)``; mask: ``(nW, 1, N, N)`` or None -> ``(nW, B, N, C)``."""
        nW, B, N, C = windows.shape
        # One reshape for q, k and v together; it is a view (no copy) when B == 1.
        qkv = self.qkv(windows).view(nW, B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).reshape(3, nW, B * self.num_heads, N, -1).unbind(0)
        return self.proj(merge_heads(self._attend(q, k, v, mask), B))


class WindowCrossAttention(CapturingAttention):
    """Multi-head cross-attention: queries from a window, keys and values from an enlarged context window.

    Keys and values are projected on the whole context map *before* it is cut into overlapping windows:
    each context pixel is projected once instead of once per window that sees it, (1 + 2 * overlap /
    window) ** 2 times fewer FLOPs in that projection.
    """

    def __init__(self, dim: int, context_dim: int, num_heads: int, window: int, overlap: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.window = window
        self.overlap = overlap
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """x: ``(B, H, W, C)`` queries; context: ``(B, H, W, C_ctx)`` -> ``(B, H, W, C)``."""
        B, H, W, _ = x.shape
        q = split_heads(window_partition(self.q(x), self.window), self.num_heads)
        kv = enlarged_window_partition(self.kv(context), self.window, self.overlap)
        k, v = (split_heads(t, self.num_heads) for t in kv.chunk(2, dim=-1))
        out = merge_heads(self._attend(q, k, v), B)
        return window_reverse(self.proj(out), self.window, H, W)


class Mlp(nn.Module):
    """Position-wise feed-forward network: Linear -> GELU -> Linear, on ``(..., C)``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))
