"""Named model sizes, from a CPU-trainable ``tiny`` to a SwinIR/HAT-class ``base``."""

from __future__ import annotations

from typing import Any

from srformer.models.blocks import ContextKind
from srformer.models.network import SRFormer

#: Architecture settings of each preset (everything but the scale).
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
    # ~0.3M parameters: tiny's width in twice the groups, self-attention only. Both choices measured at an
    # equal training budget (docs/BENCHMARKS.md): the 0.83M C=64 [3, 3, 3, 3] preset it replaced scored the
    # same at twice the FLOPs, and in this depth cross-attention blocks slowed learning (MHSA only: +0.38 dB
    # on Set5 at 1,500 steps, 1.6x the speed). ``context="overlap"`` gives tiny's groups, twice: a trained
    # tiny grows into that (``init_weights``, the extra groups starting as identities).
    "light": {
        "dim": 48,
        "depths": [2, 2, 2, 2],
        "num_heads": 2,
        "window_size": 16,
        "mlp_ratio": 2.0,
        "context": "none",
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
