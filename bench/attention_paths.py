"""Why bf16 training on the CPU takes the explicit attention path: PyTorch's fused kernel against the same
computation written out (``softmax(q k^T / sqrt(d)) v``), in fp32 and bf16, then whole training steps.

    python bench/attention_paths.py            # prints the tables and writes them to docs/BENCHMARKS.md
    python bench/attention_paths.py --no-write

Shapes are those of one `light` training step (batch 8, LR patch 32: 4 windows of 16x16 per image, 2 heads of
32 channels): 4 x 16 window-batches of 256 queries, against 256 keys (self-attention) or 576 (cross-attention's
enlarged 24x24 windows). One thread; CPU time (``time.process_time``), the best of ``--repeats`` rounds of
``--calls`` calls each, so other processes on the machine change the wall clock more than these numbers.
Ratios are explicit / fused within the same run.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from equal_budget import make_optimizer, train_step  # noqa: E402
from peers import build  # noqa: E402
from report import write_section  # noqa: E402

import srformer.models.attention as attention_module  # noqa: E402
from srformer.models.attention import attention_weights  # noqa: E402


def cpu_seconds(fn: Callable[[], object], calls: int, repeats: int) -> float:
    """Best mean CPU seconds per call of ``fn`` over ``repeats`` rounds of ``calls`` calls (after one warm-up)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - start) / calls)
    return best


def explicit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return attention_weights(q, k) @ v


def pass_of(fn: Callable, tensors: tuple[torch.Tensor, ...], backward: bool) -> Callable[[], None]:
    """One call of ``fn(q, k, v)``: forward and backward (training), or forward alone under no_grad."""

    def call() -> None:
        if backward:
            fn(*tensors).float().sum().backward()
        else:
            with torch.no_grad():
                fn(*tensors)

    return call


def kernel_rows(calls: int, repeats: int) -> list[str]:
    rows = []
    for keys, what in ((256, "self-attention, 256 keys"), (576, "cross-attention, 576 keys")):
        for dtype in (torch.float32, torch.bfloat16):
            torch.manual_seed(0)
            q = torch.randn(4, 16, 256, 32, dtype=dtype, requires_grad=True)
            k, v = (torch.randn(4, 16, keys, 32, dtype=dtype, requires_grad=True) for _ in range(2))
            for mode, backward in (("forward + backward", True), ("forward only", False)):
                fused = cpu_seconds(pass_of(F.scaled_dot_product_attention, (q, k, v), backward), calls, repeats)
                written = cpu_seconds(pass_of(explicit, (q, k, v), backward), calls, repeats)
                rows.append(
                    f"| {what} | {str(dtype).removeprefix('torch.')} | {mode} | {fused * 1e3:.1f} | "
                    f"{written * 1e3:.1f} | {written / fused:.2f} |"
                )
    return rows


def step_rows(calls: int, repeats: int) -> list[str]:
    rows = []
    for name in ("light", "light:none"):
        torch.manual_seed(0)
        model = build(name, 4).train()
        optimizer = make_optimizer(model, 1e-5)
        batch = {"lr": torch.rand(8, 3, 32, 32), "hr": torch.rand(8, 3, 128, 128)}
        timings = {}
        for label, amp, fused in (("fp32, fused", None, True), ("bf16, fused", torch.bfloat16, True),
                                  ("bf16, explicit", torch.bfloat16, False)):  # fmt: skip
            attention_module.FUSED = fused
            timings[label] = cpu_seconds(lambda: train_step(model, batch, optimizer, amp_dtype=amp), calls, repeats)  # noqa: B023
        attention_module.FUSED = None
        base = timings["fp32, fused"]
        cells = " | ".join(f"{t:.3f} ({t / base:.2f})" for t in timings.values())
        rows.append(f"| `{name}` | {cells} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    kernels = [
        "| attention | dtype | pass | fused ms | explicit ms | explicit / fused |",
        "|---|---|---|---:|---:|---:|",
        *kernel_rows(args.calls, args.repeats),
    ]
    steps = [
        "| model | fp32, fused: CPU s/step | bf16, fused (x fp32) | bf16, explicit (x fp32) |",
        "|---|---:|---:|---:|",
        *step_rows(max(2, args.calls // 2), args.repeats),
    ]
    body = (
        f"`python bench/attention_paths.py` ({datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, one thread, CPU time, best of {args.repeats} rounds)\n\n"
        "One attention call at the shapes of a `light` training step (4 x 16 window-batches of 256 queries, "
        "head size 32):\n\n" + "\n".join(kernels) + "\n\nWhole training steps (batch 8, LR patch 32, L1, Adam; "
        "what `bench/equal_time.py` and the campaign time):\n\n" + "\n".join(steps) + "\n\n"
        "`srformer.models.attention` uses the explicit path where it is faster: training (gradients on) at reduced "
        "precision on the CPU; the fused kernel everywhere else (fp32, inference, CUDA)."
    )
    print(body)
    if not args.no_write:
        write_section("Attention paths on the CPU (fused kernel or explicit)", body)


if __name__ == "__main__":
    main()
