"""Attention: the one shared home for every attention block (window geometry: :mod:`srformer.models.geometry`).

Feature maps inside the transformer body are kept as ``(B, H, W, C)`` ("tokens last"), so that LayerNorm and
the linear layers work on contiguous rows and no block converts layouts back and forth.

Windows are laid out *window-major*: ``(nW, B, N, C)`` with ``nW`` windows of ``N = window**2`` tokens.
With this order the shifted-window mask, which depends on the window but not on the image in the batch,
has shape ``(nT, 1, N, N)`` for the ``nT`` border windows (the shifted partition puts them last) and
broadcasts over ``B * heads`` inside ``scaled_dot_product_attention``; the other windows need none.
A batch-major order would need the mask copied once per image, and a 5-D layout drops PyTorch's fused CPU
kernel for the slow reference path (about 4x slower on this project's CPU: `python bench/attention_layouts.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from srformer.models.geometry import WindowGeometry


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


# Which computation :func:`attention` uses: None chooses per call (:func:`fused_kernel_is_faster`), True always
# the fused kernel, False always the explicit one (for benchmarks and tests).
FUSED: bool | None = None


def fused_kernel_is_faster(q: Tensor) -> bool:
    """Whether :func:`attention` should use the fused kernel for ``q``: everywhere but in training at reduced
    precision on the CPU. There PyTorch's fused flash-attention kernel is slower in bf16 than in fp32, its
    backward above all (``python bench/attention_paths.py``, one thread, at a `light` training step's shapes:
    forward + backward 42 ms fused against 20 ms explicit with 256 keys, 89 against 69 ms with the
    cross-attention's 576; a whole bf16 `light` step 0.94 against 0.62 CPU s). In fp32, and for the forward pass
    alone (inference), the fused kernel is as fast or faster. The explicit path keeps the softmax weights for
    the backward pass instead of recomputing them: (nW, B * heads, N, M) bf16 per call, a few MB at
    training-patch sizes."""
    if FUSED is not None:
        return FUSED
    reduced = q.dtype in (torch.bfloat16, torch.float16)
    return not (q.device.type == "cpu" and reduced and q.requires_grad and torch.is_grad_enabled())


def attention(q: Tensor, k: Tensor, v: Tensor, tail_mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention of windows, ``softmax(q k^T / sqrt(d)) v``: PyTorch's fused kernel, or
    the same computation written out where that is faster (:func:`fused_kernel_is_faster`).

    Args:
        q: ``(nW, BH, N, d)``; k, v: ``(nW, BH, M, d)``.
        tail_mask: float ``(nT, 1, N, M)`` added to the scores of the *last* ``nT`` windows (a shifted
            partition's border windows, :meth:`WindowGeometry.shift_mask`); the windows before them are
            attended without a mask, on the fused kernel's unmasked path.
    Returns:
        ``(nW, BH, N, d)``.
    """
    if not fused_kernel_is_faster(q):
        return attention_weights(q, k, tail_mask) @ v
    if tail_mask is None:
        return F.scaled_dot_product_attention(q, k, v)
    if tail_mask.dtype != q.dtype:
        tail_mask = tail_mask.to(q.dtype)  # under autocast q is bf16/fp16; fused kernels want the mask to match
    head = q.shape[0] - tail_mask.shape[0]
    return torch.cat(
        [
            F.scaled_dot_product_attention(q[:head], k[:head], v[:head]),
            F.scaled_dot_product_attention(q[head:], k[head:], v[head:], attn_mask=tail_mask),
        ]
    )


def attention_weights(q: Tensor, k: Tensor, tail_mask: Tensor | None = None) -> Tensor:
    """The softmax weights of :func:`attention`, made explicit: ``(nW, BH, N, d), (nW, BH, M, d)`` ->
    ``(nW, BH, N, M)``. The explicit path of :func:`attention`, and what srformer.explain inspects."""
    scores = (q @ k.transpose(-2, -1)) / q.shape[-1] ** 0.5
    if tail_mask is not None:
        head = scores.shape[0] - tail_mask.shape[0]
        scores = torch.cat([scores[:head], scores[head:] + tail_mask.to(scores.dtype)])
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

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, tail_mask: Tensor | None = None) -> Tensor:
        out = attention(q, k, v, tail_mask)
        if self.capture:
            with torch.no_grad():
                self.captured = CapturedAttention(attention_weights(q, k, tail_mask), v.detach(), out.detach())
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

    def forward(self, windows: Tensor, tail_mask: Tensor | None = None) -> Tensor:
        """windows: ``(nW, B, N, C)``; tail_mask: ``(nT, 1, N, N)`` for the last ``nT`` windows, or None ->
        ``(nW, B, N, C)``."""
        nW, B, N, C = windows.shape
        # One reshape for q, k and v together; it is a view (no copy) when B == 1.
        qkv = self.qkv(windows).view(nW, B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).reshape(3, nW, B * self.num_heads, N, -1).unbind(0)
        return self.proj(merge_heads(self._attend(q, k, v, tail_mask), B))


class WindowCrossAttention(CapturingAttention):
    """Multi-head cross-attention: queries from a window, keys and values from an enlarged context window.

    Keys and values are projected on the whole context map *before* it is cut into overlapping windows:
    each context pixel is projected once instead of once per window that sees it, (1 + 2 * overlap /
    window) ** 2 times fewer FLOPs in that projection.

    Args:
        dim: channels of the queries and of the output.
        context_dim: channels of the context.
        num_heads: attention heads.
        geometry: the network's window geometry (window size, enlarged windows).
        overlap: pixels by which the context window extends the query window on each side.
    """

    def __init__(self, dim: int, context_dim: int, num_heads: int, geometry: WindowGeometry, overlap: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.geometry = geometry
        self.overlap = overlap
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """x: ``(B, H, W, C)`` queries; context: ``(B, H, W, C_ctx)`` -> ``(B, H, W, C)``."""
        B, H, W, _ = x.shape
        q = split_heads(self.geometry.partition(self.q(x)), self.num_heads)
        kv = self.geometry.enlarged_partition(self.kv(context), self.overlap)
        k, v = (split_heads(t, self.num_heads) for t in kv.chunk(2, dim=-1))
        out = merge_heads(self._attend(q, k, v), B)
        return self.geometry.merge(self.proj(out), H, W)


class Mlp(nn.Module):
    """Position-wise feed-forward network: Linear -> GELU -> Linear, on ``(..., C)``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))
