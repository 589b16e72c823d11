"""The SRFormer network: CNN stem -> residual attention groups -> pixel-shuffle upsampler.

Shapes through the network for an input ``(B, 3, H, W)`` at scale ``s`` with ``C`` channels and window ``w``::

    input            (B, 3, H, W)           float in [0, 1]
    pad (reflect)    (B, 3, Hp, Wp)         Hp, Wp: H, W rounded up to a multiple of w (WindowGeometry.pad)
    stem             (B, C, Hp, Wp)         conv3x3 + residual conv blocks  -> "shallow" features
    body             (B, Hp, Wp, C)         residual groups of window attention, tokens-last layout
    conv + long skip (B, C, Hp, Wp)         conv3x3(body) + shallow
    upsampler        (B, 3, s*Hp, s*Wp)     pixel shuffle
    crop + residual  (B, 3, s*H, s*W)       + bicubic upscale of the input (optional)
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from srformer.models.blocks import (
    ContextKind,
    CrossAttentionBlock,
    ResBlock,
    ResidualGroup,
    to_channels_first,
    to_channels_last,
)
from srformer.models.geometry import WindowGeometry

UpsamplerKind = Literal["pixelshuffle_direct", "pixelshuffle"]


class PixelShuffleUpsampler(nn.Sequential):
    """Upsampler: ``(B, C, H, W)`` -> ``(B, out, s*H, s*W)``.

    ``pixelshuffle_direct``: one conv to ``out * s**2`` channels and one shuffle, cheap, for small models.
    ``pixelshuffle``: conv to ``features`` channels, then conv + shuffle by 2 (twice for x4) or by 3, then a
    conv to ``out`` channels, as in EDSR/SwinIR for large models.
    """

    def __init__(self, kind: UpsamplerKind, dim: int, scale: int, out_channels: int, features: int) -> None:
        if kind == "pixelshuffle_direct":
            layers: list[nn.Module] = [
                nn.Conv2d(dim, out_channels * scale**2, 3, padding=1),
                nn.PixelShuffle(scale),
            ]
        elif kind == "pixelshuffle":
            layers = [nn.Conv2d(dim, features, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            steps = [2, 2] if scale == 4 else [scale]
            for step in steps:
                layers += [nn.Conv2d(features, features * step**2, 3, padding=1), nn.PixelShuffle(step)]
            layers.append(nn.Conv2d(features, out_channels, 3, padding=1))
        else:
            raise ValueError(f"unknown upsampler {kind!r}; use 'pixelshuffle_direct' or 'pixelshuffle'")
        super().__init__(*layers)


class SRFormer(nn.Module):
    """Super-resolution transformer with windowed self- and cross-attention.

    Args:
        scale: upscaling factor, 2, 3 or 4.
        dim: feature channels ``C``.
        depths: self-attention blocks in each residual group (one entry per group).
        num_heads: attention heads in every block.
        window_size: attention window side in pixels.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        context: keys/values of each group's cross-attention block: ``"overlap"`` (enlarged window of the
            deep features), ``"shallow"`` (enlarged window of the stem features) or ``"none"``.
        context_overlap: pixels by which the context window extends the query window on each side.
        cross_every: which groups close with a cross-attention block: every ``cross_every``-th, counted back
            from the last group (1: all; 2: the 2nd and 4th of four; ``len(depths)``: the last only).
        stem_blocks: residual conv blocks after the first conv of the stem.
        upsampler: ``"pixelshuffle_direct"`` or ``"pixelshuffle"``, see :class:`PixelShuffleUpsampler`.
        upsampler_features: channels of the ``"pixelshuffle"`` upsampler.
        image_residual: add a bicubic upscale of the input to the output, so the network learns only the
            missing detail (faster convergence, same capacity).
        in_channels: image channels.
    """

    def __init__(
        self,
        scale: int = 4,
        dim: int = 64,
        depths: tuple[int, ...] | list[int] = (3, 3, 3, 3),
        num_heads: int = 2,
        window_size: int = 16,
        mlp_ratio: float = 2.0,
        context: ContextKind = "overlap",
        context_overlap: int = 4,
        cross_every: int = 1,
        stem_blocks: int = 1,
        upsampler: UpsamplerKind = "pixelshuffle_direct",
        upsampler_features: int = 64,
        image_residual: bool = True,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        if context not in ("overlap", "shallow", "none"):
            raise ValueError(f"context must be 'overlap', 'shallow' or 'none', got {context!r}")
        if not 1 <= cross_every <= max(len(depths), 1):
            raise ValueError(
                f"cross_every must be between 1 and the number of groups ({len(depths)}), got {cross_every}"
            )
        self.config = {
            "scale": scale,
            "dim": dim,
            "depths": list(depths),
            "num_heads": num_heads,
            "window_size": window_size,
            "mlp_ratio": mlp_ratio,
            "context": context,
            "context_overlap": context_overlap,
            "cross_every": cross_every,
            "stem_blocks": stem_blocks,
            "upsampler": upsampler,
            "upsampler_features": upsampler_features,
            "image_residual": image_residual,
            "in_channels": in_channels,
        }
        self.scale = scale
        self.window_size = window_size
        self.image_residual = image_residual
        # Padding, windows and the shift mask, for every block; holds no weights (only a per-size cache).
        self.geometry = WindowGeometry(window_size)

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, dim, 3, padding=1), *(ResBlock(dim) for _ in range(stem_blocks))
        )
        last = len(depths) - 1
        self.groups = nn.ModuleList(
            ResidualGroup(
                dim,
                depth,
                num_heads,
                self.geometry,
                mlp_ratio,
                context if (last - i) % cross_every == 0 else "none",
                context_overlap,
            )
            for i, depth in enumerate(depths)
        )
        self.norm = nn.LayerNorm(dim)
        self.conv_after_body = nn.Conv2d(dim, dim, 3, padding=1)
        self.upsampler = PixelShuffleUpsampler(upsampler, dim, scale, in_channels, upsampler_features)

        self.apply(_init_weights)
        for module in self.modules():
            if isinstance(module, CrossAttentionBlock):
                module.start_as_identity()
        if image_residual:
            # Start as exactly the bicubic upscale: the body then only has to learn the missing detail,
            # instead of first unlearning a random output (measured: 10 dB at init otherwise).
            last_conv = [m for m in self.upsampler.modules() if isinstance(m, nn.Conv2d)][-1]
            nn.init.zeros_(last_conv.weight)
            nn.init.zeros_(last_conv.bias)

    def pad_to_window(self, x: Tensor) -> Tensor:
        """Pad ``(B, C, H, W)`` on the bottom/right to a multiple of the window (see :meth:`WindowGeometry.pad`)."""
        return self.geometry.pad(x)

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Stem and body on a padded input ``(B, 3, Hp, Wp)`` -> (deep, shallow), both ``(B, C, Hp, Wp)``."""
        shallow = self.stem(x)
        # Contiguous once here: every LayerNorm downstream would otherwise copy a strided view of it.
        shallow_tokens = to_channels_last(shallow).contiguous()
        h = shallow_tokens
        for group in self.groups:
            h = group(h, shallow_tokens)
        return to_channels_first(self.norm(h)), shallow

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, H, W)`` in [0, 1], any ``H, W >= 1`` -> ``(B, in_channels, s*H, s*W)``."""
        H, W = x.shape[-2:]
        padded = self.pad_to_window(x)
        deep, shallow = self.forward_features(padded - 0.5)
        out = self.upsampler(self.conv_after_body(deep) + shallow)
        out = out[..., : H * self.scale, : W * self.scale]
        if self.image_residual:
            return out + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return out + 0.5


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
