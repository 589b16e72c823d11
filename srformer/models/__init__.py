"""Model code: attention and window helpers, blocks, the network and its presets."""

from srformer.models.network import SRFormer
from srformer.models.presets import PRESETS, build_model, preset_settings

__all__ = ["PRESETS", "SRFormer", "build_model", "preset_settings"]
