"""Named model sizes, from a CPU-trainable ``tiny`` to a SwinIR/HAT-class ``base``.

Every preset has windowed self-attention (MHSA) blocks and, closing each residual group, one windowed
cross-attention (MHCA) block; ``context="none"`` (``build_model(..., context="none")``) drops the latter for
ablations. Every shipped model's architecture is a preset, so ``build_model(name, scale)`` rebuilds it.
"""

from __future__ import annotations

from typing import Any

from srformer.models.blocks import ContextKind
from srformer.models.network import SRFormer

#: Architecture settings of each preset (everything but the scale).
PRESETS: dict[str, dict[str, Any]] = {
    # ~0.24M parameters: trains on a laptop CPU. The shipped x4_tiny and x2 models (srformer/weights/).
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
    # ~0.40M parameters: tiny's groups, twice. The shipped x4 model (srformer/weights/srformer_x4.*), grown
    # from a trained tiny (``init_weights``: every tensor of tiny has a place, the extra groups start as
    # identities).
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
    # ~0.83M parameters: the class of SwinIR-light (0.93M) and SRFormer-light (0.87M) at several times their
    # CPU throughput (docs/BENCHMARKS.md, "Model cost"). Four groups of three self-attention blocks and one
    # cross-attention block at C = 64: chosen among 0.7-0.9M layouts at 2.5x SwinIR-light or more as the one
    # with the most attention blocks; two heads of 32 channels ran faster than four of 16 at equal FLOPs.
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
