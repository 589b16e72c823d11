"""Upscale images with an SRFormer model: ``python infer.py INPUT [INPUT ...] -o OUTDIR`` (see --help)."""

import sys

from srformer.infer_cli import main

if __name__ == "__main__":
    sys.exit(main())
