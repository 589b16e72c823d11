"""``srformer evaluate``: score a model (or bicubic upscaling) on benchmark folders with the classical SR protocol.

    srformer evaluate --model bicubic --data ../shared/data/benchmark/Set5 --scale 2 3 4
    srformer evaluate --model logs/.../checkpoints/best.safetensors --data DIR [DIR ...] --json
    srformer evaluate --model x4 --data DIR --degradation D1 --lpips
    srformer evaluate --model SwinIR-light_x4.pth --data DIR --scale 4   # a community checkpoint

The protocol is :mod:`srformer.evaluation`'s. Prints a table, or with ``--json`` one JSON object per dataset
and scale: ``{"dataset", "scale", "psnr", "ssim", "images", "degradation"}`` (and ``"lpips"`` when measured).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict

from srformer.commands import options
from srformer.errors import exit_on_user_error, resolve_device
from srformer.evaluation import evaluate_folder, format_table, lpips_metric
from srformer.handle import BICUBIC, model_upscaler, open_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srformer evaluate", description=__doc__.split("\n")[0])
    options.add_model(parser, None, extra="'bicubic'", required=True)
    parser.add_argument("--data", nargs="+", required=True, help="benchmark folders (HR images, or HR/ + LR_bicubic/)")
    options.add_scale(parser, "scales (default: the model's; 4 for bicubic)", several=True)
    parser.add_argument("--space", choices=["y", "rgb"], default="y", help="score the Y channel (default) or RGB")
    options.add_device(parser)
    options.add_benchmark_data(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per dataset and scale on stdout")
    parser.add_argument("--tta", action="store_true", help="x8 self-ensemble (flips/rotations), 8 times slower")
    parser.add_argument("--lpips", action="store_true", help="also LPIPS (AlexNet), if its weights are present")
    return parser


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    handle = open_model(args.model, scale=args.scale[0] if args.scale else None, device=device)
    handles = {scale: handle.at_scale(scale) for scale in args.scale or [handle.scale]}  # every scale refused first
    upscalers = {scale: model_upscaler(each, tta=args.tta) for scale, each in handles.items()}
    label = BICUBIC if handle.source == BICUBIC else f"{handle.name} ({args.model})"
    lpips = None
    if args.lpips:
        lpips, reason = lpips_metric(device)
        if lpips is None:
            print(reason, file=sys.stderr)
    results = []
    with options.image_cache(args, prefix="srformer-eval-") as cache:
        for folder in args.data:
            for scale, upscaler in upscalers.items():
                result = evaluate_folder(upscaler, folder, scale, cache, device, args.space, args.degradation, lpips)
                results.append(result)
                if args.json:
                    print(json.dumps({k: v for k, v in asdict(result).items() if v is not None}), flush=True)
    if not args.json:
        print(format_table(results, label + (" (x8 self-ensemble)" if args.tta else ""), args.space))
    return 0


if __name__ == "__main__":
    sys.exit(main())
