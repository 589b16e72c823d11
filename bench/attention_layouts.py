"""Why the positional encoding is a convolution: the fused CPU attention kernel with each mask layout.

    python bench/attention_layouts.py

16 windows x 4 images x 2 heads of 256 tokens (16x16 windows), head size 32, fp32 CPU, median of 10 calls.
A relative-position bias is per head and the shifted-window mask per window, so together they need either a
5-D (window, image, head, N, N) layout or the mask copied for every image; with no bias, the shift mask
broadcasts over images and heads in the window-major 4-D layout srformer uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from srformer.profiling import seconds_per_call


def main() -> None:
    torch.manual_seed(0)
    windows, images, heads, tokens, head_dim = 16, 4, 2, 256, 32
    q, k, v = (torch.randn(windows, images, heads, tokens, head_dim) for _ in range(3))
    bias_and_shift = torch.randn(windows, 1, heads, tokens, tokens)  # per window and per head
    shift_only = torch.zeros(windows, 1, tokens, tokens)  # per window, shared by heads

    def flat(t: torch.Tensor) -> torch.Tensor:  # window-major 4-D: (windows, images * heads, N, d)
        return t.reshape(windows, images * heads, tokens, head_dim)

    per_image_mask = bias_and_shift.expand(windows, images, heads, tokens, tokens).reshape(
        windows * images, heads, tokens, tokens
    )
    cases = {
        "no mask, 4-D (regular windows)": lambda: F.scaled_dot_product_attention(flat(q), flat(k), flat(v)),
        "shift mask broadcast, 4-D (srformer)": lambda: F.scaled_dot_product_attention(
            flat(q), flat(k), flat(v), attn_mask=shift_only
        ),
        "bias + shift, mask copied per image, 4-D": lambda: F.scaled_dot_product_attention(
            *(t.reshape(windows * images, heads, tokens, head_dim) for t in (q, k, v)), attn_mask=per_image_mask
        ),
        "bias + shift, 5-D layout": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias_and_shift),
    }
    print("| layout | ms per call |\n|---|---:|")
    for name, call in cases.items():
        print(f"| {name} | {1e3 * seconds_per_call(call, repeats=10):.1f} |")


if __name__ == "__main__":
    main()
