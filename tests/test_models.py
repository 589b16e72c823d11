"""The network: shapes, gradients, attention maths, shifted-window masks, cross-attention context, round trips."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from srformer.checkpoint import load_model, save_weights
from srformer.models import PRESETS, SRFormer, build_model
from srformer.models.attention import (
    WindowSelfAttention,
    attention,
    enlarged_window_partition,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from srformer.models.blocks import CrossAttentionBlock, SelfAttentionBlock


def small_model(scale: int = 2, context: str = "overlap", window: int = 8) -> SRFormer:
    return SRFormer(
        scale=scale,
        dim=16,
        depths=[2, 2],
        num_heads=2,
        window_size=window,
        context=context,
        context_overlap=2,
        stem_blocks=1,
    )


@pytest.mark.parametrize("preset", ["tiny", "light"])
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("size", [(1, 1), (7, 13), (17, 16), (3, 40)])
def test_output_shape_any_size(preset, scale, size):
    model = build_model(preset, scale).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 3, size[0] * scale, size[1] * scale)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_base_preset_shape(scale):
    model = build_model("base", scale).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 9, 5))
    assert y.shape == (1, 3, 9 * scale, 5 * scale)


@pytest.mark.parametrize(
    ("preset", "low", "high"), [("tiny", 0, 250_000), ("light", 280_000, 360_000), ("base", 10e6, 12e6)]
)
def test_preset_parameter_budgets(preset, low, high):
    for scale in (2, 3, 4):
        n = sum(p.numel() for p in build_model(preset, scale).parameters())
        assert low <= n <= high, (preset, scale, n)


def test_preset_context_can_be_replaced():
    light = build_model("light", 4)
    assert light.config["context"] == "none" and all(group.cross is None for group in light.groups)
    grown = build_model("light", 4, context="overlap")
    assert all(group.cross is not None for group in grown.groups)
    assert {k: v for k, v in grown.config.items() if k != "context"} == {
        k: v for k, v in light.config.items() if k != "context"
    }
    with pytest.raises(ValueError, match="context"):
        build_model("tiny", 4, context="global")


def test_unknown_preset_and_scale_are_rejected():
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("huge", 4)
    with pytest.raises(ValueError, match="scale"):
        build_model("tiny", 5)


@pytest.mark.parametrize("context", ["overlap", "shallow", "none"])
def test_gradients_reach_every_parameter(context):
    model = small_model(context=context)
    with torch.no_grad():  # the zero-initialised output conv blocks gradients until its first update
        model.upsampler[0].weight.normal_(std=0.01)
    model(torch.rand(2, 3, 12, 20)).square().mean().backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead


def test_config_rebuilds_the_same_architecture():
    model = build_model("tiny", 3)
    clone = SRFormer(**model.config)
    assert clone.config == model.config
    assert [(k, v.shape) for k, v in clone.state_dict().items()] == [
        (k, v.shape) for k, v in model.state_dict().items()
    ]


def test_shift_mask_is_derived_not_saved():
    model = small_model()
    assert "shift_mask" not in model.state_dict()
    with torch.no_grad():
        model(torch.rand(1, 3, 8, 8))
        small = model.shift_mask.shape
        model(torch.rand(1, 3, 20, 30))
    assert model.shift_mask.shape != small
    assert model.shift_mask.shape[0] == (24 // 8) * (32 // 8)


def test_window_partition_round_trip():
    x = torch.randn(2, 16, 24, 5)
    windows = window_partition(x, 8)
    assert windows.shape == (6, 2, 64, 5)
    assert torch.equal(windows[1, 1].view(8, 8, 5), x[1, 0:8, 8:16])
    assert torch.equal(window_reverse(windows, 8, 16, 24), x)


def test_enlarged_windows_are_centred_on_the_windows():
    x = torch.randn(2, 16, 24, 3)
    window, overlap = 8, 3
    big = enlarged_window_partition(x, window, overlap)
    size = window + 2 * overlap
    assert big.shape == (6, 2, size * size, 3)
    centre = big.view(6, 2, size, size, 3)[:, :, overlap:-overlap, overlap:-overlap]
    assert torch.equal(centre.reshape(6, 2, -1, 3), window_partition(x, window))
    # Window (row 1, col 1) = index 4: its band reaches 3 pixels into every neighbour.
    padded = F.pad(x.permute(0, 3, 1, 2), (3, 3, 3, 3), mode="reflect").permute(0, 2, 3, 1)
    expected = padded[:, 8 : 8 + size, 8 : 8 + size]
    assert torch.equal(big[4].view(2, size, size, 3), expected)


def naive_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


def test_attention_matches_naive_reference():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 4, 10, 8), torch.randn(3, 4, 14, 8), torch.randn(3, 4, 14, 8)
    mask = torch.rand(3, 1, 10, 14) > 0.3
    mask[..., 0] = True  # every query keeps at least one key
    torch.testing.assert_close(attention(q, k, v), naive_attention(q, k, v))
    torch.testing.assert_close(attention(q, k, v, mask), naive_attention(q, k, v, mask))


def test_window_self_attention_matches_per_head_reference():
    torch.manual_seed(0)
    dim, heads = 12, 3
    module = WindowSelfAttention(dim, heads)
    windows = torch.randn(4, 2, 9, dim)  # (nW, B, N, C)
    out = module(windows)
    q, k, v = module.qkv(windows).chunk(3, dim=-1)
    d = dim // heads
    per_head = [
        naive_attention(q[..., h * d : (h + 1) * d], k[..., h * d : (h + 1) * d], v[..., h * d : (h + 1) * d])
        for h in range(heads)
    ]
    expected = module.proj(torch.cat(per_head, dim=-1))
    torch.testing.assert_close(out, expected)


def test_shifted_window_mask_regions():
    mask = shifted_window_mask(16, 16, 8, 4, torch.device("cpu"))
    assert mask.shape == (4, 1, 64, 64)
    allowed = mask == 0
    assert allowed[0].all()  # the top-left window holds a single region
    # The bottom-right window holds 4 regions of 16 pixels: each token sees exactly its own region.
    assert (allowed[3, 0].sum(-1) == 16).all()
    assert torch.isneginf(mask[~allowed]).all()


def _shifted_block(window=16):
    torch.manual_seed(0)
    return SelfAttentionBlock(dim=8, num_heads=2, window=window, shift=window // 2, mlp_ratio=2.0).eval()


def test_shifted_windows_do_not_attend_across_regions():
    """Perturbation test: after the cyclic shift, original pixel (0, 0) lands in the same window as pixel
    (31, 31) but in another region; it must not influence (31, 31). Pixel (24, 24) (same region) must."""
    block = _shifted_block()
    x = torch.randn(1, 32, 32, 8)
    mask = shifted_window_mask(32, 32, 16, 8, x.device)

    def change_at_31_31(pixel, use_mask):
        y = x.clone()
        y[0, pixel[0], pixel[1]] += 5.0 * torch.randn(8)
        with torch.no_grad():
            a = block(x, mask if use_mask else None)
            b = block(y, mask if use_mask else None)
        return (a[0, 31, 31] - b[0, 31, 31]).abs().max().item()

    assert change_at_31_31((0, 0), use_mask=True) == 0.0
    assert change_at_31_31((24, 24), use_mask=True) > 1e-4
    # Control: without the mask the wrapped pixel does leak in, so the test above can fail.
    assert change_at_31_31((0, 0), use_mask=False) > 1e-4


def test_cross_attention_context_inside_window_matters_outside_does_not():
    """The centre window (rows/cols 16..31) sees context rows/cols 12..35 (overlap 4)."""
    torch.manual_seed(0)
    block = CrossAttentionBlock(dim=8, context_dim=8, num_heads=2, window=16, overlap=4, mlp_ratio=2.0).eval()
    x = torch.randn(1, 48, 48, 8)
    context = torch.randn(1, 48, 48, 8)
    with torch.no_grad():
        reference = block(x, context)

    def change_in_centre_window(row, col):
        c = context.clone()
        c[0, row, col] += 5.0 * torch.randn(8)  # a random direction: a constant shift would be normalised away
        with torch.no_grad():
            out = block(x, c)
        return (out - reference)[0, 16:32, 16:32].abs().max().item()

    assert change_in_centre_window(12, 20) > 1e-4  # inside the enlarged window (top band)
    assert change_in_centre_window(35, 35) > 1e-4  # inside (bottom-right corner of the band)
    assert change_in_centre_window(11, 20) == 0.0  # one pixel outside
    assert change_in_centre_window(20, 36) == 0.0
    assert change_in_centre_window(0, 0) == 0.0


def test_shallow_context_reaches_the_deep_path():
    """With context='shallow' the cross-attention reads the stem features; with 'none' there is no block."""
    model = small_model(context="shallow")
    assert all(group.cross is not None for group in model.groups)
    assert all(group.cross is None for group in small_model(context="none").groups)
    calls = []
    hook = model.groups[0].cross.attn.kv.register_forward_hook(lambda m, i, o: calls.append(i[0].clone()))
    with torch.no_grad():
        model(torch.rand(1, 3, 16, 16))
    hook.remove()
    shallow = model.stem(model.pad_to_window(torch.zeros(1, 3, 16, 16)))  # shape check only
    assert calls and calls[0].shape == (1, 16, 16, shallow.shape[1])


def test_eval_is_deterministic_and_batch_independent():
    model = build_model("tiny", 4).eval()
    x = torch.rand(3, 3, 20, 18)
    with torch.no_grad():
        a, b = model(x), model(x)
        single = model(x[1:2])
    assert torch.equal(a, b)
    torch.testing.assert_close(a[1:2], single, atol=1e-5, rtol=1e-5)


def test_safetensors_round_trip_gives_identical_outputs(tmp_path):
    model = build_model("tiny", 3).eval()
    with torch.no_grad():  # move weights away from their initial values
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = save_weights(model, tmp_path / "m.safetensors", {"preset": "tiny"})
    loaded = load_model(path)
    x = torch.rand(1, 3, 11, 9)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_channels_last_and_bf16_autocast():
    model = build_model("tiny", 2).eval()
    x = torch.rand(2, 3, 20, 24)
    with torch.no_grad():
        ref = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    torch.testing.assert_close(cl, ref, atol=1e-5, rtol=1e-4)
    assert low.shape == ref.shape and torch.isfinite(low).all()
    assert (low.float() - ref).abs().mean() < 0.02


def test_starts_as_bicubic_with_image_residual():
    """The last upsampler conv starts at zero, so an untrained model returns the bicubic upscale."""
    model = build_model("light", 2).eval()
    x = torch.rand(1, 3, 16, 16)
    bicubic = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(model(x), bicubic)
        model.upsampler[0].weight.add_(0.01)
        assert (model(x) - bicubic).abs().max() > 1e-3
    # Gradients still reach the whole body through the zero-initialised conv after one step.
    model = small_model().train()
    model(x).mean().backward()
    assert model.groups[0].blocks[0].attn.qkv.weight.grad.abs().sum() == 0  # blocked by the zero conv...
    assert model.upsampler[0].weight.grad.abs().sum() > 0  # ...which itself learns first


def test_presets_are_plain_data():
    for preset in PRESETS.values():
        assert all(isinstance(v, (int, float, str, bool, list)) for v in preset.values())
