"""Export a model to ONNX (dynamic batch, height and width) and optionally TorchScript, verified against PyTorch.

    srformer export --model weights.safetensors -o model.onnx [--torchscript model.pt]

The network's size-dependent parts (padding to a window multiple, shifted and enlarged windows, the shift
mask) are written once, in :class:`srformer.models.geometry.WindowGeometry`, with tensor operations on the
sizes, so tracing the model as it is gives a graph valid for every input size, with the eager model's
padding rule (reflection, or replication for inputs smaller than the pad). Nothing is patched for export.

After writing, the export is run on a few odd sizes and compared with PyTorch (with onnxruntime when it is
installed, else with the ``onnx`` package's reference evaluator): the command fails if the largest absolute
difference exceeds the tolerance (1e-4).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from srformer.atomic import atomic_path
from srformer.errors import SRFormerError
from srformer.models.network import SRFormer

#: Sizes (height, width) the exported graph is checked on: odd, non-square, not window multiples, one below a window.
VERIFY_SIZES: tuple[tuple[int, int], ...] = ((37, 53), (64, 31), (7, 13))
TOLERANCE = 1e-4


class ExportError(SRFormerError):
    """Export failed, or the exported model does not reproduce the PyTorch model."""


def export_onnx(model: SRFormer, path: str | os.PathLike, opset: int = 18) -> Path:
    """Write ``model`` as ONNX with input ``lr`` ``(N, 3, H, W)`` and output ``sr`` ``(N, 3, sH, sW)``, N/H/W dynamic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.float().eval().cpu()
    example = torch.rand(1, model.config["in_channels"], 2 * model.window_size + 3, 2 * model.window_size + 5)
    with torch.no_grad(), _quiet_tracer():
        try:
            with atomic_path(path) as tmp:
                torch.onnx.export(
                    model,
                    (example,),
                    str(tmp),
                    input_names=["lr"],
                    output_names=["sr"],
                    dynamic_axes={
                        "lr": {0: "batch", 2: "height", 3: "width"},
                        "sr": {0: "batch", 2: "out_height", 3: "out_width"},
                    },
                    opset_version=opset,
                    dynamo=False,
                )
        except Exception as err:
            raise ExportError(f"ONNX export failed: {err}") from err
    return path


def onnx_runner(path: str | os.PathLike) -> Callable[[np.ndarray], np.ndarray]:
    """A function running the ONNX file at ``path`` on an ``lr`` array: onnxruntime when installed, else the
    ``onnx`` package's reference evaluator (slow, pure NumPy, but needs nothing else)."""
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    if onnxruntime is not None:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda lr: session.run(["sr"], {"lr": lr})[0]
    try:
        from onnx.reference import ReferenceEvaluator
    except ImportError:
        raise ExportError("verifying the ONNX file needs onnxruntime or onnx (pip install onnxruntime)") from None
    evaluator = ReferenceEvaluator(str(path))
    return lambda lr: evaluator.run(["sr"], {"lr": lr})[0]


def verify_onnx(
    model: SRFormer, path: str | os.PathLike, sizes: Sequence[tuple[int, int]] = VERIFY_SIZES, seed: int = 0
) -> float:
    """Largest absolute difference between the ONNX file's and PyTorch's outputs on random inputs of ``sizes``."""
    run = onnx_runner(path)
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for height, width in sizes:
        x = torch.rand(1, model.config["in_channels"], height, width, generator=generator)
        with torch.no_grad():
            expected = model(x).numpy()
        got = run(x.numpy())
        if got.shape != expected.shape:
            raise ExportError(
                f"ONNX output shape {got.shape} differs from PyTorch {expected.shape} at {height}x{width}"
            )
        worst = max(worst, float(abs(got - expected).max()))
    return worst


def export_torchscript(model: SRFormer, path: str | os.PathLike) -> Path:
    """Trace ``model`` to a TorchScript file (valid for every input size, as the ONNX export)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.float().eval().cpu()
    example = torch.rand(1, model.config["in_channels"], 2 * model.window_size + 3, 2 * model.window_size + 5)
    with torch.no_grad(), _quiet_tracer():
        traced = torch.jit.trace(model, (example,), check_trace=False)
    with atomic_path(path) as tmp:
        traced.save(str(tmp))
    return path


def verify_torchscript(
    model: SRFormer, path: str | os.PathLike, sizes: Sequence[tuple[int, int]] = VERIFY_SIZES
) -> float:
    """Largest absolute difference between the TorchScript file and ``model`` on random inputs of ``sizes``."""
    scripted = torch.jit.load(str(path))
    generator = torch.Generator().manual_seed(1)
    worst = 0.0
    for height, width in sizes:
        x = torch.rand(1, model.config["in_channels"], height, width, generator=generator)
        with torch.no_grad():
            worst = max(worst, float((scripted(x) - model(x)).abs().max()))
    return worst


@contextlib.contextmanager
def _quiet_tracer() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield
