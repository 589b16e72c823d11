"""Model cost table: parameters, FLOPs per output pixel, CPU throughput, against peers measured in the same run.

    python bench/model_cost.py                    # prints the table, writes it into docs/BENCHMARKS.md
    python bench/model_cost.py --size 128 --repeats 5 --no-write

Peers (SwinIR-light, SRFormer-light, HAT-S) are built with random weights from the ``spandrel`` and
``spandrel-extra-arches`` packages (dev extras); speed does not depend on the weights. Throughput is output
megapixels per second at x4 for one ``size x size`` input on ``--threads`` CPU threads, median of ``--repeats``
runs, the models taking turns in each round so that a change in the machine's load touches them all alike.
"Matmul %" is the model's FLOP rate as a share of a large fp32 matrix multiply's rate measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

from srformer.models import build_model  # noqa: E402
from srformer.profiling import (  # noqa: E402
    count_flops,
    count_parameters,
    matmul_flop_rate,
    seconds_per_call,
)


def peer_models(scale: int) -> dict[str, nn.Module]:
    """The peers' published light/small configurations, from spandrel's architecture code."""
    from spandrel.architectures.HAT.__arch.HAT import HAT
    from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR
    from spandrel_extra_arches.architectures.SRFormer.__arch.SRFormer import SRFormer as PeerSRFormer

    return {
        "SwinIR-light": SwinIR(
            upscale=scale, img_size=64, window_size=8, img_range=1.0, depths=[6, 6, 6, 6], embed_dim=60,
            num_heads=[6, 6, 6, 6], mlp_ratio=2, upsampler="pixelshuffledirect",
        ),
        "SRFormer-light (paper)": PeerSRFormer(
            upscale=scale, img_size=64, window_size=16, img_range=1.0, depths=[6, 6, 6, 6], embed_dim=60,
            num_heads=[6, 6, 6, 6], mlp_ratio=2, upsampler="pixelshuffledirect",
        ),
        "HAT-S": HAT(
            upscale=scale, img_size=64, window_size=16, img_range=1.0, depths=[6] * 6, embed_dim=144,
            num_heads=[6] * 6, compress_ratio=24, squeeze_factor=24, conv_scale=0.01, overlap_ratio=0.5,
            mlp_ratio=2, upsampler="pixelshuffle", resi_connection="1conv",
        ),
    }  # fmt: skip


def measure(models: dict[str, nn.Module], x: torch.Tensor, scale: int, repeats: int) -> tuple[list[dict], float]:
    """Cost rows of ``models`` and the large-matmul FLOP rate, timed in ``repeats`` rounds of one call each.

    Taking turns spreads a change in the machine's load over every model instead of one; each model's time
    is its median over the rounds, the matmul rate the best round's (its practical peak).
    """
    seconds: dict[str, list[float]] = {name: [] for name in models}
    peaks = []
    with torch.inference_mode():
        for model in models.values():
            model.eval()(x)  # warm-up
        for _ in range(repeats):
            peaks.append(matmul_flop_rate(repeats=1))
            for name, model in models.items():
                seconds[name].append(seconds_per_call(lambda model=model: model(x), repeats=1, warmup=0))
    out_pixels = x.shape[-2] * x.shape[-1] * scale**2
    rows = []
    for name, model in models.items():
        median = sorted(seconds[name])[len(seconds[name]) // 2]
        flops = count_flops(model, x)
        rows.append(
            {
                "model": name,
                "params": count_parameters(model),
                "flops_per_px": flops / out_pixels,
                "mpix_per_s": out_pixels / median / 1e6,
                "flop_rate": flops / median,
            }
        )
    return rows, max(peaks)


# Where a forward pass spends its time, by kind of operator (for --profile).
OP_KINDS = {
    "attention kernel (QK^T, softmax, AV)": ("scaled_dot_product",),
    "matmul (linear layers)": ("addmm", "aten::mm", "bmm"),
    "convolution": ("convolution",),
    "LayerNorm": ("layer_norm",),
    "copies (windows, shifts, gathers, padding)": ("copy_", "aten::cat", "clone", "contiguous", "index", "roll", "pad"),
    "element-wise (residual adds, GELU)": ("aten::add", "gelu", "aten::mul", "aten::sub", "where"),
}


def profile_by_kind(model: nn.Module, x: torch.Tensor, repeats: int = 3) -> dict[str, float]:
    """Share of self CPU time per operator kind over ``repeats`` forward passes."""
    from torch.profiler import ProfilerActivity, profile

    model.eval()
    with torch.inference_mode():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                model(x)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    shares = dict.fromkeys([*OP_KINDS, "other"], 0.0)
    for e in events:
        kind = next((k for k, keys in OP_KINDS.items() if any(key in e.key for key in keys)), "other")
        shares[kind] += e.self_cpu_time_total / total
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128, help="input side in pixels")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "light", "base"])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--no-peers", action="store_true", help="skip the spandrel peers")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/BENCHMARKS.md")
    parser.add_argument("--profile", action="store_true", help="also break down srformer-light's time by operator kind")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(1, 3, args.size, args.size)
    models = {f"srformer-{p}": build_model(p, args.scale) for p in args.presets}
    if not args.no_peers:
        models.update(peer_models(args.scale))
    rows, peak = measure(models, x, args.scale, args.repeats)

    reference = next((r for r in rows if r["model"] == "SwinIR-light"), None)
    lines = [
        "| model | params | FLOPs / output px | CPU Mpx/s | vs SwinIR-light | matmul % |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r['mpix_per_s'] / reference['mpix_per_s']:.2f}x" if reference else "-"
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.3f}M | {r['flops_per_px'] / 1e3:.1f}K | "
            f"{r['mpix_per_s']:.3f} | {ratio} | {100 * r['flop_rate'] / peak:.0f}% |"
        )
    table = "\n".join(lines)
    header = (
        f"Input {args.size}x{args.size}, x{args.scale}, fp32, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{datetime.date.today()}; large fp32 matmul: {peak / 1e9:.0f} GFLOP/s. "
        "FLOPs count matmuls, convolutions and attention (2 per multiply-add)."
    )
    if args.profile:
        shares = profile_by_kind(build_model("light", args.scale), x)
        table += "\n\nWhere srformer-light's forward pass spends its CPU time (torch.profiler, self time):\n\n"
        table += "| operator kind | share |\n|---|---:|\n"
        table += "\n".join(f"| {kind} | {100 * share:.0f}% |" for kind, share in shares.items())
    print(header)
    print(table)
    if not args.no_write:
        command = "python bench/model_cost.py " + " ".join(sys.argv[1:])
        write_section("Model cost", f"`{command.strip()}`\n\n{header}\n\n{table}\n")


if __name__ == "__main__":
    main()
