"""See what the network does: per-head attention maps and Local Attribution Maps (LAM).

Two commands::

    srformer explain attention --image PATH --pixel Y X [--group G] [--block B] [--model PATH] -o OUT.png
    srformer explain lam --image PATH --box Y X H W [--model PATH] -o OUT.png

``attention`` draws, for one input (LR) pixel, the softmax weights of every head of a self-attention block and
of the cross-attention block of the same residual group, laid over the image, with the query window (cyan)
and, for cross-attention, the enlarged context window (yellow). The weights are captured from the real forward
pass (``capture`` option of the attention modules in :mod:`srformer.models.attention`).

``lam`` computes a Local Attribution Map (Gu and Dong, CVPR 2021): integrated gradients of the gradient
magnitude of an output patch along a path from a blurred to the real input, shown over the LR image, with the
diffusion index ``DI = (1 - Gini) * 100`` (higher: the model draws on a wider area). ``--box`` is given in input
(LR) pixels; the output patch is that box times the scale.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from srformer.checkpoint import ZooModel
from srformer.errors import SRFormerError
from srformer.models import SRFormer
from srformer.models.attention import CapturingAttention
from srformer.models.blocks import SelfAttentionBlock
from srformer.pixels import to_uint8_array

WINDOW_COLOUR = (0, 230, 255)
CONTEXT_COLOUR = (255, 220, 0)
QUERY_COLOUR = (255, 40, 40)
BOX_COLOUR = (0, 255, 80)


# ----------------------------------------------------------------------------------------------- attention maps


@contextmanager
def capturing(modules: list[CapturingAttention]) -> Iterator[None]:
    """Turn weight capture on for ``modules`` for the duration of the block, and off again after."""
    for module in modules:
        module.capture, module.captured = True, None
    try:
        yield
    finally:
        for module in modules:
            module.capture = False


@dataclass
class HeadMaps:
    """Attention of one query pixel, spread back onto the padded input grid.

    Attributes:
        maps: ``(heads, Hp, Wp)`` weight each head gives to each pixel (sums to 1 per head; pixels seen twice
            through the reflected border band add up).
        window: ``(Hp, Wp)`` bool, the query's window.
        context: ``(Hp, Wp)`` bool, the pixels keys/values come from, or None for self-attention.
    """

    maps: np.ndarray
    window: np.ndarray
    context: np.ndarray | None


def _spread(weights: Tensor, key_coords: Tensor, height: int, width: int) -> np.ndarray:
    """weights ``(heads, M)`` over keys at ``key_coords`` ``(M, 2)`` -> ``(heads, H, W)`` by summation."""
    flat = (key_coords[:, 0] * width + key_coords[:, 1]).long()
    maps = torch.zeros(weights.shape[0], height * width, dtype=weights.dtype)
    maps.index_add_(1, flat, weights)
    return maps.view(-1, height, width).numpy()


def _mask_of(coords: Tensor, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    c = coords.long().numpy()
    mask[c[:, 0], c[:, 1]] = True
    return mask


class NotAnSRFormerError(SRFormerError):
    """Attention maps were asked of a model that is not an :class:`SRFormer` (a community checkpoint)."""


def attention_maps(
    model: nn.Module, image: Tensor, pixel: tuple[int, int], group: int, block: int, name: str | None = None
) -> tuple[HeadMaps, HeadMaps | None]:
    """Per-head attention of one input pixel in self-attention block ``block`` and the cross block of ``group``.

    Args:
        model: an :class:`SRFormer` (others raise :class:`NotAnSRFormerError`: their attention is not captured).
        image: ``(1, 3, H, W)`` in [0, 1], the model's input.
        pixel: ``(y, x)`` in input pixels.
        name: what the user called the model (a file, a shipped name), for that error's sentence.
    Returns:
        (self-attention maps, cross-attention maps or None when the model has no cross-attention), both on the
        padded grid ``(Hp, Wp)``.
    """
    if not isinstance(model, SRFormer):
        architecture = type(model.net if isinstance(model, ZooModel) else model).__name__
        raise NotAnSRFormerError(
            f"attention maps need an srformer model; {name or 'this model'} is a {architecture} checkpoint;"
            " `explain lam` works on any model"
        )
    H, W = image.shape[-2:]
    y, x = pixel
    if not (0 <= y < H and 0 <= x < W):
        raise SRFormerError(f"pixel ({y}, {x}) is outside the {H}x{W} image")
    groups = model.groups
    if not -len(groups) <= group < len(groups):
        raise SRFormerError(f"group {group} does not exist; the model has {len(groups)} groups")
    residual_group = groups[group]
    if not -len(residual_group.blocks) <= block < len(residual_group.blocks):
        raise SRFormerError(f"block {block} does not exist; group {group} has {len(residual_group.blocks)} blocks")
    self_block: SelfAttentionBlock = residual_group.blocks[block]
    cross = residual_group.cross
    modules = [self_block.attn] + ([cross.attn] if cross is not None else [])
    with capturing(modules), torch.no_grad():
        model(image)
    geometry = model.geometry
    Hp, Wp = geometry.padded_size(H, W)

    # Self-attention: the geometry says which pixel each slot of the (possibly shifted) windows holds.
    token_coords = geometry.token_positions(Hp, Wp, shifted=self_block.shifted)  # (nW, N, 2)
    w_index, n_index = _find(token_coords, y, x)
    captured = self_block.attn.captured
    self_maps = HeadMaps(
        maps=_spread(captured.weights[w_index, :, n_index], token_coords[w_index], Hp, Wp),
        window=_mask_of(token_coords[w_index], Hp, Wp),
        context=None,
    )
    if cross is None:
        return self_maps, None
    # Cross-attention: unshifted windows for queries, reflected enlarged windows for keys and values.
    overlap = cross.attn.overlap
    query_coords = geometry.token_positions(Hp, Wp)
    key_coords = geometry.token_positions(Hp, Wp, overlap=overlap)  # (nW, M, 2)
    w_index, n_index = _find(query_coords, y, x)
    captured = cross.attn.captured
    unreflected = geometry.token_positions(Hp, Wp, overlap=overlap, reflect=False)[w_index]
    inside = (unreflected >= 0).all(-1) & (unreflected[:, 0] < Hp) & (unreflected[:, 1] < Wp)
    cross_maps = HeadMaps(
        maps=_spread(captured.weights[w_index, :, n_index], key_coords[w_index], Hp, Wp),
        window=_mask_of(query_coords[w_index], Hp, Wp),
        # The enlarged window before reflection, clipped to the image: what the border line should enclose.
        context=_mask_of(unreflected[inside], Hp, Wp),
    )
    return self_maps, cross_maps


def _find(token_coords: Tensor, y: int, x: int) -> tuple[int, int]:
    """(window index, token index) of pixel (y, x) in ``(nW, N, 2)`` coordinates."""
    hit = ((token_coords[..., 0] == y) & (token_coords[..., 1] == x)).nonzero()
    return int(hit[0, 0]), int(hit[0, 1])


# ------------------------------------------------------------------------------------------------------- drawing

# Anchors of a dark-to-bright heat colour map (close to matplotlib's "inferno"), interpolated linearly.
_HEAT_ANCHORS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float32,
)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """``(H, W)`` in [0, 1] -> ``(H, W, 3)`` float RGB in [0, 255]."""
    position = np.clip(values, 0, 1) * (len(_HEAT_ANCHORS) - 1)
    low = np.floor(position).astype(int).clip(0, len(_HEAT_ANCHORS) - 2)
    frac = (position - low)[..., None]
    return _HEAT_ANCHORS[low] * (1 - frac) + _HEAT_ANCHORS[low + 1] * frac


def overlay(rgb: np.ndarray, heat: np.ndarray, zoom: int) -> Image.Image:
    """Image ``(H, W, 3)`` in [0, 1] dimmed to grey, heat ``(H, W)`` in [0, 1] blended over it, zoomed (nearest)."""
    grey = rgb.mean(axis=-1, keepdims=True) * 255
    alpha = np.clip(heat, 0, 1)[..., None] ** 0.5  # square root: faint weights stay visible
    blended = grey * 0.45 * (1 - alpha) + heat_colours(heat) * alpha
    panel = Image.fromarray(to_uint8_array(blended, peak=255.0))
    return panel.resize((panel.width * zoom, panel.height * zoom), Image.NEAREST)


def draw_outline(draw: ImageDraw.ImageDraw, mask: np.ndarray, zoom: int, colour: tuple[int, int, int]) -> None:
    """Draw the border of a boolean ``(H, W)`` region (any shape, e.g. a window wrapped by the shift)."""
    padded = np.pad(mask, 1)
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        # Edge between pixel p (in the region) and its neighbour p + (dy, dx) (outside).
        neighbour = padded[1 + dy : padded.shape[0] - 1 + dy, 1 + dx : padded.shape[1] - 1 + dx]
        for py, px in zip(*np.nonzero(mask & ~neighbour), strict=True):
            y0, x0 = py * zoom, px * zoom
            if dy:
                yy = y0 + (zoom - 1 if dy > 0 else 0)
                draw.line([(x0, yy), (x0 + zoom - 1, yy)], fill=colour, width=1)
            else:
                xx = x0 + (zoom - 1 if dx > 0 else 0)
                draw.line([(xx, y0), (xx, y0 + zoom - 1)], fill=colour, width=1)


def _crop_box(
    window: np.ndarray, context: np.ndarray | None, margin: int, height: int, width: int
) -> tuple[int, int, int, int]:
    region = window if context is None else window | context
    ys, xs = np.nonzero(region)
    return (
        max(ys.min() - margin, 0),
        max(xs.min() - margin, 0),
        min(ys.max() + margin + 1, height),
        min(xs.max() + margin + 1, width),
    )


def head_panels(
    rgb: np.ndarray, maps: HeadMaps, pixel: tuple[int, int], title: str, crop: tuple[int, int, int, int], zoom: int
) -> list[Image.Image]:
    """One panel per head: weights (scaled to the head's maximum) over the cropped image, borders, the query."""
    top, left, bottom, right = crop
    panels = []
    for head, weights in enumerate(maps.maps):
        heat = weights / max(weights.max(), 1e-12)
        panel = overlay(rgb[top:bottom, left:right], heat[top:bottom, left:right], zoom)
        draw = ImageDraw.Draw(panel)
        draw_outline(draw, maps.window[top:bottom, left:right], zoom, WINDOW_COLOUR)
        if maps.context is not None:
            draw_outline(draw, maps.context[top:bottom, left:right], zoom, CONTEXT_COLOUR)
        qy, qx = (pixel[0] - top) * zoom, (pixel[1] - left) * zoom
        draw.rectangle([qx, qy, qx + zoom - 1, qy + zoom - 1], outline=QUERY_COLOUR, width=max(zoom // 4, 1))
        draw.text((4, 2), f"{title} head {head}  max {weights.max():.3f}", fill=(255, 255, 255))
        panels.append(panel)
    return panels


def grid(rows: list[list[Image.Image]], gap: int = 4) -> Image.Image:
    """Paste rows of panels on a black sheet."""
    width = max(sum(p.width for p in row) + gap * (len(row) - 1) for row in rows)
    height = sum(max(p.height for p in row) for row in rows) + gap * (len(rows) - 1)
    sheet = Image.new("RGB", (width, height))
    y = 0
    for row in rows:
        x = 0
        for panel in row:
            sheet.paste(panel, (x, y))
            x += panel.width + gap
        y += max(p.height for p in row) + gap
    return sheet


# ------------------------------------------------------------------------------------------------------------ LAM


def gaussian_kernel(size: int, sigma: float) -> Tensor:
    """``(size, size)`` isotropic Gaussian summing to 1; ``sigma == 0`` gives the identity (a centred delta)."""
    if sigma <= 0:
        kernel = torch.zeros(size, size)
        kernel[size // 2, size // 2] = 1
        return kernel
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return (g / g.sum()).float()


def filter2d(image: Tensor, kernel: Tensor) -> Tensor:
    """Per-channel ``(B, C, H, W)`` correlation with a ``(k, k)`` kernel, reflected borders (as cv2.filter2D)."""
    k = kernel.shape[-1]
    channels = image.shape[1]
    padded = F.pad(image, (k // 2,) * 4, mode="reflect")
    return F.conv2d(padded, kernel.expand(channels, 1, k, k).to(image), groups=channels)


def gradient_magnitude_objective(output: Tensor, box: tuple[int, int, int, int]) -> Tensor:
    """LAM's objective: sum over the output box of ``sqrt(dy**2 + dx**2)`` (forward differences, channels summed).

    Args:
        output: ``(B, C, H, W)``; box: ``(y, x, h, w)`` in output pixels.
    Returns:
        ``(B,)``.
    """
    y, x, h, w = box
    dy = (output[:, :, :-1, :] - output[:, :, 1:, :]) ** 2
    dx = (output[:, :, :, :-1] - output[:, :, :, 1:]) ** 2
    magnitude = (dy[:, :, :, :-1] + dx[:, :, :-1, :] + 1e-12) ** 0.5  # epsilon: finite gradient at zero
    return magnitude[:, :, y : y + h, x : x + w].sum(dim=(1, 2, 3))


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: all equal, towards 1: all mass on one value), as in LAM."""
    v = np.sort(values.ravel().astype(np.float64) - min(values.min(), 0) + 1e-7)
    n = v.size
    index = np.arange(1, n + 1)
    return float(np.sum((2 * index - n - 1) * v) / (n * np.sum(v)))


@dataclass
class LocalAttribution:
    """Result of :func:`local_attribution_map`.

    Attributes:
        attribution: ``(H, W)`` absolute attribution summed over channels, scaled to [0, 1].
        diffusion_index: ``(1 - gini(attribution)) * 100``.
        seconds: wall time of the path integration.
    """

    attribution: np.ndarray
    diffusion_index: float
    seconds: float


@contextmanager
def recomputed_in_backward(model: nn.Module) -> Iterator[None]:
    """Activation checkpointing of the model's repeated blocks for the duration of the block.

    Each module kept in an ``nn.ModuleList`` of two or more (SRFormer's residual groups and the blocks inside
    them, SwinIR's RSTB layers and their Swin blocks), and each part with weights of the outermost of them
    (a group's cross-attention block and closing convolution), keeps only its inputs for the backward pass
    and recomputes its activations there, nested: the backward holds one block's activations at a time
    instead of the whole network's (SRFormer-small at 256x256: 3.6 GB for one path point, 0.9 GB per
    residual group). The recomputation repeats the same operations on the same inputs, so the gradients are
    the same. A model without such lists runs as it is.
    """
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 1]
    inner = {id(m) for lst in lists for element in lst for m in element.modules() if m is not element}
    outermost = [element for lst in lists for element in lst if id(element) not in inner]
    parts = [
        child
        for element in outermost
        for child in element.children()
        if not isinstance(child, nn.ModuleList) and next(child.parameters(), None) is not None
    ]
    repeated = list({id(m): m for m in [*(element for lst in lists for element in lst), *parts]}.values())
    own = [module.__dict__.get("forward") for module in repeated]  # a forward set on the instance, kept
    for module in repeated:
        module.forward = functools.partial(checkpoint, module.forward, use_reentrant=False)
    try:
        yield
    finally:
        for module, forward in zip(repeated, own, strict=True):
            del module.forward
            if forward is not None:
                module.forward = forward


def local_attribution_map(
    model: nn.Module,
    image: Tensor,
    box: tuple[int, int, int, int],
    scale: int,
    steps: int = 20,
    sigma: float = 1.2,
    kernel_size: int = 9,
    batch: int = 1,
    recompute: bool = True,
) -> LocalAttribution:
    """Integrated gradients along a blur path (Gu and Dong 2021, "Interpreting Super-Resolution Networks with
    Local Attribution Maps"; sigma 1.2 and the 9x9 kernel of the paper's code; 20 steps instead of its 50, for CPU time).

    Path point ``i`` is the input blurred with ``sigma_i = sigma * (1 - (i + 1) / steps)`` (the last is the real
    input); the attribution is ``sum_i grad F(x_i) * (x_i - x_{i-1})``, which adds up to
    ``F(image) - F(blurred)`` as the steps get finer.

    Args:
        model: ``(B, 3, H, W)`` -> ``(B, 3, s*H, s*W)``.
        image: ``(1, 3, H, W)`` in [0, 1].
        box: ``(y, x, h, w)`` in input pixels; the objective is on the output box ``s`` times larger.
        batch: path points per forward/backward pass; their gradients are accumulated chunk by chunk.
        recompute: recompute the body's activations in the backward pass (:func:`recomputed_in_backward`).

    Memory: one chunk's activations at a time. With ``batch=1`` and ``recompute``, the shipped x4 model on a
    256x256 input peaks at about 1.2 GB of resident memory (4 path points per pass with every activation
    kept: 10.8 GB); the attribution is the same to float rounding, the time about 1.6 times as long.
    """
    H, W = image.shape[-2:]
    y, x, h, w = box
    if h < 1 or w < 1 or y < 0 or x < 0 or y + h > H or x + w > W:
        raise SRFormerError(f"box (y={y}, x={x}, h={h}, w={w}) does not fit in the {H}x{W} image")
    if min(H, W) <= kernel_size // 2:
        raise SRFormerError(f"the image ({H}x{W}) is too small for a {kernel_size}x{kernel_size} blur path")
    output_box = (y * scale, x * scale, h * scale, w * scale)
    sigmas = np.linspace(sigma, 0, steps + 1)
    kernels = [gaussian_kernel(kernel_size, float(s)) for s in sigmas]
    start = time.perf_counter()
    total = torch.zeros_like(image[0])
    with recomputed_in_backward(model) if recompute else nullcontext():
        for first in range(0, steps, batch):
            idx = range(first, min(first + batch, steps))
            points = torch.cat([filter2d(image, kernels[i + 1]) for i in idx])
            deltas = torch.cat([filter2d(image, kernels[i + 1] - kernels[i]) for i in idx])
            points.requires_grad_(True)
            objective = gradient_magnitude_objective(model(points), output_box).sum()
            (grads,) = torch.autograd.grad(objective, points)  # input gradients only; weight gradients are pruned
            total += (grads * deltas).sum(dim=0)
    seconds = time.perf_counter() - start
    attribution = total.abs().sum(dim=0).numpy()
    attribution = attribution / max(attribution.max(), 1e-30)
    return LocalAttribution(attribution, (1 - gini(attribution)) * 100, seconds)


def lam_figure(rgb: np.ndarray, result: LocalAttribution, box: tuple[int, int, int, int], zoom: int) -> Image.Image:
    """Input with the box | attribution heat map over the input (with the box) and the diffusion index."""
    y, x, h, w = box
    plain = Image.fromarray(to_uint8_array(rgb))
    plain = plain.resize((plain.width * zoom, plain.height * zoom), Image.NEAREST)
    heat = overlay(rgb, result.attribution**0.5, zoom)  # square root spreads the long tail (LAM shows it so too)
    for panel, label in ((plain, "input (LR) and output box"), (heat, f"LAM, DI = {result.diffusion_index:.2f}")):
        draw = ImageDraw.Draw(panel)
        draw.rectangle([x * zoom, y * zoom, (x + w) * zoom - 1, (y + h) * zoom - 1], outline=BOX_COLOUR, width=2)
        draw.text((4, 2), label, fill=(255, 255, 255))
    return grid([[plain, heat]])


# ------------------------------------------------------------------------------------------------------ figures


def _zoom_for(height: int, width: int, target: int) -> int:
    return max(1, math.ceil(target / max(height, width)))


def _as_batch(rgb: np.ndarray) -> Tensor:
    """``(H, W, 3)`` float in [0, 1] -> ``(1, 3, H, W)``."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0)


def attention_figure(
    model: nn.Module,
    rgb: np.ndarray,
    pixel: tuple[int, int],
    group: int = -1,
    block: int = 0,
    panel_size: int = 256,
    name: str | None = None,
) -> Image.Image:
    """Per-head attention maps of input pixel ``pixel`` (y, x) of ``rgb`` ``(H, W, 3)``: a row for self-attention
    block ``block`` of residual group ``group``, and one for the group's cross-attention block when it has one,
    each panel about ``panel_size`` pixels, cropped to the windows involved. ``model`` must be an SRFormer
    (``name``, what the user called it, goes into the sentence that says so)."""
    self_maps, cross_maps = attention_maps(model, _as_batch(rgb), pixel, group, block, name=name)
    # Display on the padded grid cut back to the image (padding pixels are reflections, never shown).
    H, W = rgb.shape[:2]
    self_maps = HeadMaps(self_maps.maps[:, :H, :W], self_maps.window[:H, :W], None)
    region = (self_maps.window, None)
    if cross_maps is not None:
        cross_maps = HeadMaps(cross_maps.maps[:, :H, :W], cross_maps.window[:H, :W], cross_maps.context[:H, :W])
        region = (cross_maps.window | self_maps.window, cross_maps.context)
    crop = _crop_box(region[0], region[1], margin=4, height=H, width=W)
    zoom = _zoom_for(crop[2] - crop[0], crop[3] - crop[1], panel_size)
    rows = [head_panels(rgb, self_maps, pixel, f"self g{group} b{block}", crop, zoom)]
    if cross_maps is not None:
        rows.append(head_panels(rgb, cross_maps, pixel, f"cross g{group}", crop, zoom))
    return grid(rows)


def lam_of_image(
    model: nn.Module,
    rgb: np.ndarray,
    box: tuple[int, int, int, int],
    steps: int = 20,
    sigma: float = 1.2,
    panel_size: int = 384,
) -> tuple[Image.Image, LocalAttribution]:
    """The Local Attribution Map of output patch ``box`` (y, x, h, w in input pixels) of ``rgb`` ``(H, W, 3)``
    and its figure (panels about ``panel_size`` pixels)."""
    result = local_attribution_map(model, _as_batch(rgb), box, model.scale, steps=steps, sigma=sigma)
    return lam_figure(rgb, result, box, _zoom_for(*rgb.shape[:2], panel_size)), result
