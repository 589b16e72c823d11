"""Upscale images with an SRFormer model: ``python infer.py INPUT [INPUT ...] -o OUTDIR`` (see --help)."""

from srformer.cli import exit_after
from srformer.commands.upscale import main

if __name__ == "__main__":
    exit_after(lambda: main(prog="infer.py"))
