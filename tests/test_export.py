"""ONNX and TorchScript export: dynamic sizes, checked against PyTorch.

The ONNX checks run the exported graph with the ``onnx`` package's reference evaluator, so they need no
onnxruntime; one more test runs onnxruntime when it is installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from srformer.checkpoint import load_model, save_weights
from srformer.commands.export import main
from srformer.export import export_onnx, export_torchscript, onnx_runner
from srformer.models import SRFormer, build_model

pytest.importorskip("onnx")

#: Odd sizes other than the ones the export command verifies, two of them below one window (16) on a side.
ODD_SIZES = ((7, 13), (16, 17), (33, 50))


def _perturbed(model: SRFormer) -> SRFormer:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))  # every path, zero-initialised layers included, contributes
    return model.eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_weights(_perturbed(build_model("tiny", 3)), tmp_path_factory.mktemp("model") / "tiny_x3.safetensors")


@pytest.fixture(scope="module")
def narrow_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[SRFormer, Path]:
    """A narrow model with every kind of block and the presets' window (16), exported: quick to evaluate."""
    model = _perturbed(SRFormer(scale=2, dim=8, depths=[2], num_heads=2, window_size=16, context_overlap=4))
    return model, export_onnx(model, tmp_path_factory.mktemp("onnx") / "narrow.onnx")


def test_export_patches_nothing(weights: Path) -> None:
    """Export traces the model as it is: no method replaced on the instance, no module global rebound."""
    import srformer.models.attention as attention_module
    import srformer.models.geometry as geometry_module

    model = load_model(weights)
    globals_before = {m: dict(vars(m)) for m in (attention_module, geometry_module)}
    instance_before = {k: v for k, v in vars(model).items() if k != "_modules"}
    export_onnx(model, Path(weights).with_suffix(".onnx"))
    assert {m: dict(vars(m)) for m in (attention_module, geometry_module)} == globals_before
    assert {k: v for k, v in vars(model).items() if k != "_modules"}.keys() == instance_before.keys()


@pytest.mark.parametrize("size", ODD_SIZES)
def test_onnx_equals_eager_on_odd_sizes_with_the_reference_evaluator(narrow_onnx, size) -> None:
    from onnx.reference import ReferenceEvaluator

    model, path = narrow_onnx
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        expected = model(x).numpy()
    (got,) = ReferenceEvaluator(str(path)).run(["sr"], {"lr": x.numpy()})
    assert got.shape == expected.shape == (2, 3, 2 * size[0], 2 * size[1])
    assert np.abs(got - expected).max() < 1e-4


def test_onnx_matches_pytorch_with_onnxruntime(tmp_path: Path, weights: Path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "m.onnx"
    assert main(["--model", str(weights), "-o", str(onnx_path)]) == 0
    assert "max abs diff" in capsys.readouterr().out
    reference = load_model(weights)
    run = onnx_runner(onnx_path)
    for height, width in ODD_SIZES:
        x = torch.rand(2, 3, height, width)
        with torch.no_grad():
            expected = reference(x).numpy()
        got = run(x.numpy())
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
