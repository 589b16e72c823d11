"""Named model sizes, from a CPU-trainable ``tiny`` to a SwinIR/HAT-class ``base``."""

from __future__ import annotations

from typing import Any

from srformer.models.network import SRFormer

#: Architecture settings of each preset (everything but the scale). ``build_model`` is the only consumer.
PRESETS: dict[str, dict[str, Any]] = {
    # ~0.2M parameters: trains on a laptop CPU.
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
    # ~0.4M parameters: tiny's width and blocks in twice the groups, so a trained tiny grows into it
    # (``init_weights``, the extra groups starting as identities). Chosen over the 0.83M C=64 [3, 3, 3, 3]
    # it replaced: the same scores at an equal training budget at half the FLOPs (docs/BENCHMARKS.md).
    "light": {
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


def build_model(preset: str, scale: int) -> SRFormer:
    """Build a freshly initialised model of a named size for a scale (2, 3 or 4)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return SRFormer(scale=scale, **PRESETS[preset])
