"""``srformer explain attention|lam``: see what the network does (:mod:`srformer.explain`).

    srformer explain attention --image PATH --pixel Y X [--group G] [--block B] [--model REF] -o OUT.png
    srformer explain lam --image PATH --box Y X H W [--model REF] -o OUT.png

``attention`` draws, for one input (LR) pixel, the softmax weights of every head of a self-attention block and
of the cross-attention block of the same residual group; ``lam`` a Local Attribution Map of an output patch
(``--box`` in input pixels) with its diffusion index.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from srformer.allocator import serve_large_blocks_from_mmap
from srformer.commands import options
from srformer.errors import SRFormerError, exit_on_user_error
from srformer.explain import attention_figure, lam_of_image
from srformer.handle import open_model
from srformer.imageio import read_image, write_image


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srformer explain", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    attn = commands.add_parser("attention", help="per-head attention maps of one input pixel")
    attn.add_argument("--image", required=True, help="input (LR) image")
    attn.add_argument("--pixel", nargs=2, type=int, required=True, metavar=("Y", "X"), help="query pixel")
    attn.add_argument("--group", type=int, default=-1, help="residual group (default: the last)")
    attn.add_argument("--block", type=int, default=0, help="self-attention block in the group (odd: shifted)")
    attn.add_argument("--panel-size", type=int, default=256, help="approximate panel side in pixels")
    lam = commands.add_parser("lam", help="Local Attribution Map of an output patch")
    lam.add_argument("--image", required=True, help="input (LR) image")
    lam.add_argument("--box", nargs=4, type=int, required=True, metavar=("Y", "X", "H", "W"), help="in LR pixels")
    lam.add_argument("--steps", type=int, default=20, help="path steps (default 20; the LAM paper uses 50)")
    lam.add_argument("--sigma", type=float, default=1.2, help="blur of the path's start (default 1.2, as LAM)")
    lam.add_argument("--panel-size", type=int, default=384, help="approximate panel side in pixels")
    for sub in (attn, lam):
        options.add_model(sub, None)
        sub.add_argument("-o", "--output", required=True, help="PNG to write")
    return parser


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if Path(args.output).suffix.lower() != ".png":
        raise SRFormerError(f"output must be a .png file, got {args.output}")
    if not Path(args.output).resolve().parent.is_dir():
        raise SRFormerError(f"the folder of {args.output} does not exist")
    handle = open_model(args.model)  # None: the shipped default model
    model, rgb = handle.module, read_image(args.image).rgb
    if args.command == "attention":
        pixel = (args.pixel[0], args.pixel[1])
        figure = attention_figure(model, rgb, pixel, args.group, args.block, args.panel_size, name=handle.source)
        write_image(args.output, np.asarray(figure.convert("RGB")), overwrite=True)
        print(f"wrote {args.output} ({figure.height} x {figure.width} pixels)")
    else:
        serve_large_blocks_from_mmap()  # the path integral's peak memory: 2.2 -> 1.1 GB at 256x256 (allocator.py)
        figure, result = lam_of_image(model, rgb, tuple(args.box), args.steps, args.sigma, args.panel_size)
        write_image(args.output, np.asarray(figure.convert("RGB")), overwrite=True)
        print(
            f"wrote {args.output}: diffusion index {result.diffusion_index:.2f},"
            f" path integration {result.seconds:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
