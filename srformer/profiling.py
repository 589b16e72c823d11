"""Model cost figures shared by the benchmarks and ``srformer compare``: parameters, FLOPs, throughput."""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

aten = torch.ops.aten


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# PyTorch's FLOP counter knows the CUDA attention kernels but not the fused CPU one.
_EXTRA_FLOP_FORMULAS = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward pass on ``x``; matmuls, convolutions and attention only."""
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS) as counter:
        model(x)
    return counter.get_total_flops()


def flops_per_output_pixel(model: nn.Module, x: torch.Tensor, scale: int) -> float:
    """FLOPs of a forward pass divided by the number of output pixels (``H * W * scale**2`` per image)."""
    return count_flops(model, x) / (x.shape[0] * x.shape[-2] * x.shape[-1] * scale**2)


def seconds_per_call(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls (synchronising CUDA)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def matmul_flop_rate(size: int = 2048, device: str | torch.device = "cpu", repeats: int = 5) -> float:
    """FLOP/s of a large fp32 matrix multiply on ``device``: the practical peak the models are compared to."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    return 2 * size**3 / seconds_per_call(lambda: a @ b, repeats=repeats)
