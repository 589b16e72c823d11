"""``srformer export --model WEIGHTS -o model.onnx [--torchscript model.pt]``: export a model to ONNX (dynamic
batch, height and width) and optionally TorchScript, each checked against PyTorch on odd sizes
(:mod:`srformer.export`); fails if the largest absolute difference exceeds the tolerance."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from srformer.commands import options
from srformer.errors import exit_on_user_error
from srformer.export import (
    TOLERANCE,
    VERIFY_SIZES,
    ExportError,
    export_onnx,
    export_torchscript,
    verify_onnx,
    verify_torchscript,
)
from srformer.handle import open_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="srformer export", description="Export a model to ONNX (and TorchScript), checked against PyTorch."
    )
    options.add_model(parser, None, required=True)
    parser.add_argument("-o", "--output", required=True, type=Path, help="ONNX file to write")
    parser.add_argument("--torchscript", type=Path, default=None, help="also write a TorchScript file here")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--no-verify", action="store_true", help="skip the check against PyTorch")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return parser


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for target in filter(None, (args.output, args.torchscript)):
        if target.exists() and not args.overwrite:
            raise ExportError(f"{target} already exists (pass --overwrite to replace it)")
    handle = open_model(args.model)
    if handle.descriptor is None or handle.descriptor.architecture != "srformer":
        raise ExportError(
            f"{args.model} is a community {handle.name} checkpoint; export writes ONNX of srformer "
            "models only (their geometry is verified for every input size), so export it with its own project"
        )
    model = handle.module
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
