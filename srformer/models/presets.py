"""Named model sizes, from a CPU-trainable ``tiny`` to a SwinIR/HAT-class ``base``.

Every preset has windowed self-attention (MHSA) blocks and windowed cross-attention (MHCA) blocks, an MHCA
block closing a residual group (each group in ``tiny``, ``small`` and ``base``; the last one in ``light``);
``context="none"`` (``build_model(..., context="none")``) drops them for ablations. Every shipped model's
architecture is a preset, so ``build_model(name, scale)`` rebuilds it.
"""

from __future__ import annotations

from typing import Any

from srformer.models.blocks import ContextKind
from srformer.models.network import SRFormer

#: Architecture settings of each preset (everything but the scale).
PRESETS: dict[str, dict[str, Any]] = {
    # ~0.24M parameters: trains on a laptop CPU. The shipped x4_tiny and x2_tiny models (srformer/weights/).
    "tiny": {
        "dim": 48,
        "depths": [2, 2],
        "num_heads": 2,
        "window_size": 16,
        "mlp_ratio": 2.0,
        "context": "overlap",
        "context_overlap": 4,
        "stem_blocks": 1,
        "upsampler": "pixelshuffle_direct",
    },
    # ~0.40M parameters: tiny's groups, twice. The shipped x4_small (the x4 default until 2026-12-06), x3_small
    # and real_small models (srformer/weights/), grown from a trained tiny (``init_weights``: every tensor of tiny
    # has a place, the extra groups start as identities).
    "small": {
        "dim": 48,
        "depths": [2, 2, 2, 2],
        "num_heads": 2,
        "window_size": 16,
        "mlp_ratio": 2.0,
        "context": "overlap",
        "context_overlap": 4,
        "stem_blocks": 1,
        "upsampler": "pixelshuffle_direct",
    },
    # ~0.73M parameters: the class of SwinIR-light (0.93M) and SRFormer-light (0.87M) at twice their CPU
    # throughput or more (docs/BENCHMARKS.md, "Model cost"). Four groups of three self-attention blocks at
    # C = 64, the last group closed by one cross-attention block: at equal CPU time (docs/BENCHMARKS.md,
    # "Equal CPU time") an MHCA block in every group (0.83M) cost 45% more per training step than none and
    # trailed it by 0.1-0.3 dB, one block cost 11% and kept level. Two heads of 32 channels ran faster
    # than four of 16 at equal FLOPs. The shipped x4 default, x2 and real-world models (srformer/weights/,
    # issue 23's campaign).
    "light": {
        "dim": 64,
        "depths": [3, 3, 3, 3],
        "num_heads": 2,
        "window_size": 16,
        "mlp_ratio": 2.0,
        "context": "overlap",
        "context_overlap": 4,
        "stem_blocks": 1,
        "upsampler": "pixelshuffle_direct",
        "cross_every": 4,
    },
    # ~11M parameters: the class of SwinIR (11.8M) and HAT-S (9.6M).
    "base": {
        "dim": 180,
        "depths": [4, 4, 4, 4, 4, 4],
        "num_heads": 6,
        "window_size": 16,
        "mlp_ratio": 2.0,
        "context": "overlap",
        "context_overlap": 4,
        "stem_blocks": 1,
        "upsampler": "pixelshuffle",
        "upsampler_features": 64,
    },
}


def preset_settings(preset: str, context: ContextKind | None = None) -> dict[str, Any]:
    """The constructor settings of a preset (all but the scale), its context replaced unless ``context`` is None."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    settings = dict(PRESETS[preset])
    if context is not None:
        settings["context"] = context
    return settings


def build_model(preset: str, scale: int, context: ContextKind | None = None) -> SRFormer:
    """Build a freshly initialised model of a named size for a scale (2, 3 or 4).

    ``context`` replaces the preset's cross-attention context (``"none"``, ``"overlap"``, ``"shallow"``);
    ``None`` keeps the preset's own.
    """
    return SRFormer(scale=scale, **preset_settings(preset, context))
