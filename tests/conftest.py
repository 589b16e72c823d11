"""Fixtures shared by several test files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from srformer.checkpoint import save_weights
from srformer.models import build_model


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny x2 model whose body matters (its last conv is not left at zero)."""
    torch.manual_seed(0)
    model = build_model("tiny", 2)
    last = [m for m in model.upsampler.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.normal_(last.weight, std=0.02)
    return save_weights(model, tmp_path_factory.mktemp("model") / "tiny_x2.safetensors")
