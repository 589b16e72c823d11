"""Export a model to ONNX (dynamic height and width) and optionally TorchScript, verified against PyTorch.

    python -m srformer.export --model weights.safetensors -o model.onnx [--torchscript model.pt]

The network computes two things with Python control flow on the input size: the padding to a window multiple
(reflect, or replicate for inputs smaller than the pad) and the shifted-window mask (built once per size and
cached). For export both are replaced on the instance by tensor-only equivalents, so the exported graph stays
valid for every size. The ONNX graph always pads by reflection, so it needs inputs whose sides are larger
than the pad (any side >= ``window_size - 1`` works; the verification uses odd sizes).

After writing, the export is run with onnxruntime on a few odd sizes and compared with PyTorch: the command
fails if the largest absolute difference exceeds the tolerance (1e-4).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import types
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from srformer.checkpoint import load_model
from srformer.errors import SRFormerError, exit_on_user_error
from srformer.models import attention as attention_module
from srformer.models.attention import window_partition
from srformer.models.network import SRFormer

#: Sizes (height, width) the exported graph is checked on: odd, non-square, not window multiples.
VERIFY_SIZES: tuple[tuple[int, int], ...] = ((37, 53), (64, 31), (19, 27))
TOLERANCE = 1e-4


class ExportError(SRFormerError):
    """Export failed, or the exported model does not reproduce the PyTorch model."""


def _pad_to_window_traceable(self: SRFormer, x: Tensor) -> Tensor:
    height, width = x.shape[-2:]
    return F.pad(x, (0, (-width) % self.window_size, 0, (-height) % self.window_size), mode="reflect")


def _shift_mask_traceable(self: SRFormer, height: int, width: int, device: torch.device) -> Tensor:
    """Same mask as :func:`srformer.models.attention.shifted_window_mask`, from tensor comparisons only."""
    window, shift = self.window_size, self.window_size // 2
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    # Region label along an axis: 0 before the last window, 1 in it before the shift, 2 in the last `shift`.
    row_label = (rows >= height - window).long() + (rows >= height - shift).long()
    col_label = (cols >= width - window).long() + (cols >= width - shift).long()
    region = (row_label[:, None] * 3 + col_label[None, :]).view(1, height, width, 1)
    windows = window_partition(region, window).view(-1, window * window)
    allowed = (windows[:, :, None] == windows[:, None, :]).unsqueeze(1)
    return torch.zeros(allowed.shape, device=device).masked_fill(~allowed, float("-inf"))


def _enlarged_window_partition_traceable(x: Tensor, window: int, overlap: int) -> Tensor:
    """Same result as :func:`srformer.models.attention.enlarged_window_partition`, with gathers instead of
    ``unfold`` (which the ONNX exporter cannot handle for a dynamic size)."""
    B, H, W, C = x.shape
    size = window + 2 * overlap
    padded = F.pad(x.permute(0, 3, 1, 2), (overlap, overlap, overlap, overlap), mode="reflect")
    offsets = torch.arange(size, device=x.device)
    rows = (torch.arange(H // window, device=x.device)[:, None] * window + offsets[None, :]).reshape(-1)
    cols = (torch.arange(W // window, device=x.device)[:, None] * window + offsets[None, :]).reshape(-1)
    patches = padded.index_select(2, rows).index_select(3, cols)  # (B, C, nH * size, nW * size)
    patches = patches.reshape(B, C, H // window, size, W // window, size)
    return patches.permute(2, 4, 0, 3, 5, 1).reshape(-1, B, size * size, C)


@contextlib.contextmanager
def traceable(model: SRFormer) -> Iterator[SRFormer]:
    """Temporarily give ``model`` size-independent padding, mask and context-window code, undone afterwards.

    The padding and mask are replaced on the instance; the context windows through the attention module's
    global (the function it calls), restored on exit.
    """
    model.pad_to_window = types.MethodType(_pad_to_window_traceable, model)
    model._get_shift_mask = types.MethodType(_shift_mask_traceable, model)
    original_partition = attention_module.enlarged_window_partition
    attention_module.enlarged_window_partition = _enlarged_window_partition_traceable
    try:
        yield model
    finally:
        attention_module.enlarged_window_partition = original_partition
        del model.pad_to_window
        del model._get_shift_mask


def export_onnx(model: SRFormer, path: str | os.PathLike, opset: int = 18) -> Path:
    """Write ``model`` as ONNX with input ``lr`` ``(N, 3, H, W)`` and output ``sr`` ``(N, 3, sH, sW)``, N/H/W dynamic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.float().eval().cpu()
    example = torch.rand(1, model.config["in_channels"], 2 * model.window_size + 3, 2 * model.window_size + 5)
    tmp = path.with_name(path.name + ".tmp")
    with traceable(model), torch.no_grad():
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


def verify_onnx(
    model: SRFormer, path: str | os.PathLike, sizes: Sequence[tuple[int, int]] = VERIFY_SIZES, seed: int = 0
) -> float:
    """Largest absolute difference between onnxruntime and PyTorch outputs over random inputs of ``sizes``."""
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("verifying the ONNX file needs onnxruntime (pip install onnxruntime)") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for height, width in sizes:
        x = torch.rand(1, model.config["in_channels"], height, width, generator=generator)
        with torch.no_grad():
            expected = model(x).numpy()
        (got,) = session.run(["sr"], {"lr": x.numpy()})
        if got.shape != expected.shape:
            raise ExportError(
                f"ONNX output shape {got.shape} differs from PyTorch {expected.shape} at {height}x{width}"
            )
        worst = max(worst, float(abs(got - expected).max()))
    return worst


def export_torchscript(model: SRFormer, path: str | os.PathLike) -> Path:
    """Trace ``model`` (with the size-independent padding and mask) to a TorchScript file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.float().eval().cpu()
    example = torch.rand(1, model.config["in_channels"], 2 * model.window_size + 3, 2 * model.window_size + 5)
    with traceable(model), torch.no_grad(), _quiet_tracer():
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
    parser.add_argument("--model", required=True, type=Path, help="weights, Lightning checkpoint or run folder")
    parser.add_argument("-o", "--output", required=True, type=Path, help="ONNX file to write")
    parser.add_argument("--torchscript", type=Path, default=None, help="also write a TorchScript file here")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    args = parser.parse_args(argv)
    for target in filter(None, (args.output, args.torchscript)):
        if target.exists() and not args.overwrite:
            raise ExportError(f"{target} already exists (pass --overwrite to replace it)")
    model = load_model(args.model)
    export_onnx(model, args.output, args.opset)
    print(f"wrote {args.output}")
    if not args.no_verify:
        diff = verify_onnx(model, args.output)
        sizes = ", ".join(f"{h}x{w}" for h, w in VERIFY_SIZES)
        print(f"onnxruntime vs PyTorch on {sizes}: max abs diff {diff:.2e}")
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
