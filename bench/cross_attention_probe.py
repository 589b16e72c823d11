"""How much a trained model relies on its cross-attention: score it as trained, with the cross-attention's
keys/values switched to the other context, and with the cross-attention's output zeroed (its MLP kept).

    python bench/cross_attention_probe.py --model srformer/weights/srformer_x4.safetensors --data ../shared/data/benchmark/Set5

This probes one trained model; it is not an ablation (the model never trained without the part removed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor, nn

from srformer.checkpoint import load_model
from srformer.data.cache import ImageCache, default_cache_dir
from srformer.evaluation import evaluate_folder
from srformer.handle import model_upscaler


class NoAttention(nn.Module):
    """Stands in for a ``WindowCrossAttention``: contributes nothing to the residual stream."""

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        return torch.zeros_like(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="srformer/weights/srformer_x4.safetensors")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/benchmark/Set5"))
    args = parser.parse_args()

    model = load_model(args.model)
    groups = [g for g in model.groups if g.cross is not None]
    if not groups:
        raise SystemExit(f"error: {args.model} has no cross-attention blocks (context 'none')")
    cache = ImageCache(default_cache_dir())

    def psnr() -> float:
        return evaluate_folder(model_upscaler(model), args.data, model.scale, cache, torch.device("cpu")).psnr

    trained_context = groups[0].context
    other = "shallow" if trained_context == "overlap" else "overlap"
    rows = [(f"as trained (context {trained_context})", psnr())]
    for group in groups:
        group.context = other
    rows.append((f"keys/values from the {other} context instead", psnr()))
    for group in groups:
        group.context = trained_context
        group.cross.attn = NoAttention()
    rows.append(("cross-attention output zeroed (its MLP kept)", psnr()))

    print(f"{args.model} on {args.data.name} x{model.scale}\n\n| variant | PSNR-Y (dB) | change |\n| --- | --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value:.2f} | {value - rows[0][1]:+.2f} |")


if __name__ == "__main__":
    main()
