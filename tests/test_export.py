"""ONNX and TorchScript export: dynamic sizes, checked against PyTorch with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from srformer.checkpoint import load_model, save_weights
from srformer.export import (
    _enlarged_window_partition_traceable,
    _shift_mask_traceable,
    export_torchscript,
    main,
    traceable,
)
from srformer.models import build_model
from srformer.models.attention import enlarged_window_partition, shifted_window_mask

onnxruntime = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model("tiny", 3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))  # every path, the last conv included, contributes
    return save_weights(model, tmp_path_factory.mktemp("model") / "tiny_x3.safetensors")


def test_traceable_helpers_equal_the_model_code() -> None:
    model = build_model("tiny", 2)
    for height, width in ((16, 48), (64, 32)):
        expected = shifted_window_mask(height, width, 16, 8, torch.device("cpu"))
        assert torch.equal(_shift_mask_traceable(model, height, width, torch.device("cpu")), expected)
    x = torch.rand(2, 32, 48, 6)
    assert torch.equal(_enlarged_window_partition_traceable(x, 16, 4), enlarged_window_partition(x, 16, 4))
    with traceable(model):
        assert "pad_to_window" in vars(model)
    assert "pad_to_window" not in vars(model)  # the override is undone


ODD_SIZES = ((23, 41), (17, 16), (50, 29))  # sizes other than the ones the export command verifies


def test_onnx_matches_pytorch_on_odd_sizes(tmp_path: Path, weights: Path, capsys) -> None:
    onnx_path = tmp_path / "m.onnx"
    assert main(["--model", str(weights), "-o", str(onnx_path)]) == 0
    assert "max abs diff" in capsys.readouterr().out
    reference = load_model(weights)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for height, width in ODD_SIZES:
        x = torch.rand(2, 3, height, width)
        with torch.no_grad():
            expected = reference(x).numpy()
        (got,) = session.run(["sr"], {"lr": x.numpy()})
        assert got.shape == expected.shape == (2, 3, 3 * height, 3 * width)
        assert np.abs(got - expected).max() < 1e-4


def test_torchscript_matches_pytorch_on_odd_sizes(tmp_path: Path, weights: Path) -> None:
    export_torchscript(load_model(weights), tmp_path / "m.pt")
    scripted, reference = torch.jit.load(str(tmp_path / "m.pt")), load_model(weights)
    for height, width in ODD_SIZES:
        x = torch.rand(1, 3, height, width)
        with torch.no_grad():
            assert (scripted(x) - reference(x)).abs().max() < 1e-4


def test_export_refuses_to_overwrite(tmp_path: Path, weights: Path, capsys) -> None:
    (tmp_path / "m.onnx").write_bytes(b"keep")
    assert main(["--model", str(weights), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "m.onnx").read_bytes() == b"keep"
    assert main(["--model", str(tmp_path / "none.safetensors"), "-o", str(tmp_path / "x.onnx")]) == 2
