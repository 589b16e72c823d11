"""Export a model to ONNX (dynamic batch, height and width) and optionally TorchScript, verified against PyTorch.

    python -m srformer.export --model weights.safetensors -o model.onnx [--torchscript model.pt]

The network's size-dependent parts (padding to a window multiple, shifted and enlarged windows, the shift
mask) are written once, in :class:`srformer.models.geometry.WindowGeometry`, with tensor operations on the
sizes, so tracing the model as it is gives a graph valid for every input size, with the eager model's
padding rule (reflection, or replication for inputs smaller than the pad). Nothing is patched for export.

After writing, the export is run on a few odd sizes and compared with PyTorch (with onnxruntime when it is
installed, else with the ``onnx`` package's reference evaluator): the command fails if the largest absolute
difference exceeds the tolerance (1e-4).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from srformer.checkpoint import load_any
from srformer.errors import SRFormerError, exit_on_user_error
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
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad(), _quiet_tracer():
        try:
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
            tmp.unlink(missing_ok=True)
            raise ExportError(f"ONNX export failed: {err}") from err
    os.replace(tmp, path)
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
    tmp = path.with_name(path.name + ".tmp")
    traced.save(str(tmp))
    os.replace(tmp, path)
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


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m srformer.export", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", required=True, type=Path, help="srformer weights, Lightning checkpoint or run folder"
    )
    parser.add_argument("-o", "--output", required=True, type=Path, help="ONNX file to write")
    parser.add_argument("--torchscript", type=Path, default=None, help="also write a TorchScript file here")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--no-verify", action="store_true", help="skip the check against PyTorch")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    args = parser.parse_args(argv)
    for target in filter(None, (args.output, args.torchscript)):
        if target.exists() and not args.overwrite:
            raise ExportError(f"{target} already exists (pass --overwrite to replace it)")
    loaded = load_any(args.model)
    if loaded.descriptor.architecture != "srformer":
        raise ExportError(
            f"{args.model} is a community {loaded.descriptor.name} checkpoint; export writes ONNX of srformer "
            "models only (their geometry is verified for every input size), so export it with its own project"
        )
    model = loaded.model
    export_onnx(model, args.output, args.opset)
    print(f"wrote {args.output}")
    if not args.no_verify:
        diff = verify_onnx(model, args.output)
        sizes = ", ".join(f"{h}x{w}" for h, w in VERIFY_SIZES)
        print(f"ONNX vs PyTorch on {sizes}: max abs diff {diff:.2e}")
        if diff > TOLERANCE:
            raise ExportError(f"the ONNX model differs from PyTorch by {diff:.2e} (> {TOLERANCE:.0e})")
    if args.torchscript:
        export_torchscript(model, args.torchscript)
        diff = verify_torchscript(model, args.torchscript)
        print(f"wrote {args.torchscript}; TorchScript vs PyTorch max abs diff {diff:.2e}")
        if diff > TOLERANCE:
            raise ExportError(f"the TorchScript model differs from PyTorch by {diff:.2e} (> {TOLERANCE:.0e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
