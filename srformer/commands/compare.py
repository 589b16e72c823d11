"""``srformer compare MODEL [MODEL ...] --data DIR [DIR ...] --scale S``: compare checkpoints side by side.

A MODEL is a weights file, run folder, community checkpoint, shipped name, or a W&B artifact reference
(``entity/project/weights-<run id>:best``, as training logs them; downloaded, so ``--wandb-mode online``).

Every model, and MATLAB bicubic as the baseline, is scored on every benchmark folder with the project's
protocol (:mod:`srformer.evaluation`). Prints a markdown table with PSNR/SSIM per dataset, parameters, FLOPs per
output pixel and CPU/GPU throughput (``--per-image``: and a row per image, with the method ahead); writes
``per_image.csv`` (every image's scores) and one PNG grid of crops per image; logs one W&B run per method
(offline unless ``--wandb-mode online``), all in one group (:mod:`srformer.comparison`).
``--degradation D1|jpeg30|noise10|noise20`` makes the LR with that fixed benchmark degradation instead of bicubic,
as ``srformer evaluate`` does.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from srformer.commands import options
from srformer.comparison import (
    build_methods,
    grid_image,
    log_wandb,
    markdown_table,
    per_image_csv,
    per_image_table,
    score_methods,
)
from srformer.errors import SRFormerError, exit_on_user_error, resolve_device
from srformer.imageio import write_image


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srformer compare", description=__doc__.split("\n")[0])
    parser.add_argument(
        "models",
        nargs="+",
        help=f"{options.MODEL_KINDS}, or W&B artifacts ([entity/]project/weights-RUNID:best; needs --wandb-mode"
        " online)",
    )
    parser.add_argument("--data", nargs="+", required=True, type=Path, help="benchmark folders (HR images)")
    options.add_scale(parser, "upscaling factor; every model must have it", required=True)
    parser.add_argument("-o", "--output", type=Path, default=Path("compare"), help="folder for grids and the wandb run")
    options.add_device(parser)
    options.add_tiles(parser, default="0", overlap_and_precision=False)
    parser.add_argument(
        "--per-image", action="store_true", help="also print each image's scores and which method is ahead"
    )
    parser.add_argument("--crop", type=int, default=96, help="side of the HR crops in the grids (pixels)")
    parser.add_argument("--cost-size", type=int, default=128, help="input side for FLOPs and throughput")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs for throughput (median)")
    parser.add_argument(
        "--wandb-mode",
        choices=["offline", "online", "disabled"],
        default="offline",
        help="offline (default): runs under OUTPUT/wandb, upload later with `wandb sync`; online also downloads"
        " W&B artifact models",
    )
    parser.add_argument("--wandb-project", default="srformer-compare")
    parser.add_argument("--wandb-entity", default=None, help="W&B team or user of the runs (default: yours)")
    parser.add_argument("--wandb-group", default=None, help="runs' W&B group (default: compare-TIME-ID)")
    options.add_benchmark_data(parser)
    return parser


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for folder in args.data:
        if not folder.is_dir():
            raise SRFormerError(f"data folder not found: {folder}")
    device = resolve_device(args.device)
    tile = options.tile_of(args.tile)
    methods = build_methods(args.models, args.scale, device, tile, args.cost_size, args.repeats, args.wandb_mode)
    with options.image_cache(args, prefix="srformer-compare-") as cache:
        rows = score_methods(methods, args.data, args.scale, cache, device, args.crop, args.degradation)
    datasets = list(dict.fromkeys(row.dataset for row in rows))
    table = markdown_table(methods, datasets, args.scale, device)
    print(f"LR: {args.degradation}\n{table}")
    names = [m.name for m in methods]
    if args.per_image:
        print(f"\n{per_image_table(rows, names)}")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "per_image.csv").write_text(per_image_csv(rows, names))
    for row in rows:
        path = args.output / "grids" / row.dataset / f"{Path(row.name).stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, np.asarray(grid_image(row, names).convert("RGB")), overwrite=True)
    config = {
        "models": args.models,
        "data": [str(d) for d in args.data],
        "scale": args.scale,
        "degradation": args.degradation,
        "table": table,
    }
    group = args.wandb_group or f"compare-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    run_dirs = log_wandb(
        rows, methods, datasets, config, args.wandb_mode, args.wandb_project, group, args.output, args.wandb_entity
    )
    print(f"\nper image: {args.output / 'per_image.csv'}; grids: {args.output / 'grids'}", file=sys.stderr)
    if run_dirs:
        sync = f"; upload: wandb sync {args.output / 'wandb'}/offline-run-*" if args.wandb_mode == "offline" else ""
        print(f"W&B: {len(run_dirs)} runs in group {group} under {args.output / 'wandb'}{sync}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
