"""``srformer preview-degradation``: save one batch of degraded training patches as PNGs, to look at what a
degradation config makes (:func:`srformer.data.degradation_preview.write_preview`).

    srformer preview-degradation --degradation photo --data ../shared/data/train/BSD400 --out preview
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from srformer.data.degradation_preview import write_preview
from srformer.errors import exit_on_user_error


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="srformer preview-degradation", description=__doc__.split("\n")[0])
    parser.add_argument("--degradation", required=True, help="a config of configs/degradation/ (photo, realesrgan)")
    parser.add_argument("--data", required=True, help="folder of HR training images")
    parser.add_argument("--out", required=True, type=Path, help="folder for the PNGs")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=32, help="LR patch side (HR: patch size * scale)")
    parser.add_argument("--count", type=int, default=16, help="patches in the batch")
    parser.add_argument("--seed", type=int, default=0, help="picks the patches and the degradations")
    parser.add_argument("--cache-dir", default=None, help="decoded-image cache (default: ~/.cache/srformer)")
    args = parser.parse_args(argv)

    count = write_preview(
        args.degradation, args.data, args.out, args.scale, args.patch_size, args.count, args.seed, args.cache_dir
    )
    print(f"{count} {args.degradation} LR patches and their HR in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from srformer.cli import exit_after

    exit_after(main)
