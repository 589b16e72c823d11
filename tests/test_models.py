"""The network: presets, shapes, gradients, attention maths, window geometry, cross-attention context, round trips."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

from srformer import shipped
from srformer.checkpoint import load_model, preset_of, save_weights
from srformer.models import PRESETS, SRFormer, build_model
from srformer.models.attention import WindowSelfAttention, attention, attention_weights
from srformer.models.blocks import CrossAttentionBlock, SelfAttentionBlock
from srformer.models.geometry import WindowGeometry


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


@pytest.mark.parametrize("preset", ["tiny", "small", "light"])
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
    ("preset", "low", "high"),
    [("tiny", 0, 250_000), ("small", 350_000, 450_000), ("light", 700_000, 900_000), ("base", 10e6, 12e6)],
)
def test_preset_parameter_budgets(preset, low, high):
    for scale in (2, 3, 4):
        n = sum(p.numel() for p in build_model(preset, scale).parameters())
        assert low <= n <= high, (preset, scale, n)


def _attention_kinds(model) -> tuple[int, int]:
    """(self-attention modules, modules whose class name says cross-attention) in ``model``."""
    names = [type(m).__name__ for m in model.modules()]
    return sum(name == "WindowSelfAttention" for name in names), sum("CrossAttention" in name for name in names)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_has_self_and_cross_attention_unless_asked_not_to(preset):
    model = build_model(preset, 4)
    self_attention, cross_attention = _attention_kinds(model)
    assert self_attention > 0 and cross_attention > 0
    # An MHCA block closes the last group (the one feeding the upsampler), and every `cross_every`-th before it.
    every = model.config["cross_every"]
    last = len(model.groups) - 1
    assert [g.cross is not None for g in model.groups] == [(last - i) % every == 0 for i in range(last + 1)]
    ablation = build_model(preset, 4, context="none")
    assert _attention_kinds(ablation) == (self_attention, 0)
    assert {k: v for k, v in ablation.config.items() if k != "context"} == {
        k: v for k, v in model.config.items() if k != "context"
    }


def test_preset_context_can_be_replaced():
    assert build_model("light", 4, context="shallow").config["context"] == "shallow"
    with pytest.raises(ValueError, match="context"):
        build_model("tiny", 4, context="global")


@pytest.mark.parametrize("name", shipped.names())
def test_shipped_models_are_named_presets(name, tmp_path):
    """Every shipped architecture is a preset (recorded as such): ``build_model(preset, scale)`` loads its
    weights strictly, and the ``.safetensors`` file alone (its description embedded) rebuilds the model."""
    import shutil

    from safetensors.torch import load_file

    path = shipped.model_path(name)
    info = json.loads(path.with_suffix(".json").read_text())
    preset = preset_of(info["arch"])
    assert preset in PRESETS and info["preset"] == preset
    model = build_model(preset, info["arch"]["scale"])
    model.load_state_dict(load_file(str(path)), strict=True)
    assert load_model(path).config == model.config
    alone = shutil.copy(path, tmp_path / path.name)
    assert load_model(alone).config == model.config


def test_cross_every_places_the_cross_attention_blocks_counting_back_from_the_last_group(tmp_path):
    def crosses(every: int) -> list[bool]:
        return [g.cross is not None for g in SRFormer(dim=16, depths=[1, 1, 1, 1], cross_every=every).groups]

    assert crosses(1) == [True] * 4
    assert crosses(2) == [False, True, False, True]
    assert crosses(3) == [True, False, False, True]
    assert crosses(4) == [False, False, False, True]
    for bad in (0, 5):
        with pytest.raises(ValueError, match="cross_every"):
            SRFormer(dim=16, depths=[1, 1, 1, 1], cross_every=bad)
    model = SRFormer(scale=2, dim=16, depths=[1, 1], window_size=8, cross_every=2).eval()
    loaded = load_model(save_weights(model, tmp_path / "m.safetensors")).eval()
    assert [g.cross is not None for g in loaded.groups] == [False, True]
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    # Files written before the setting existed have no "cross_every": every group keeps its block, so such
    # a file is still `small`, and the earlier four-MHCA `light` layout is no preset any more.
    assert preset_of({k: v for k, v in build_model("small", 4).config.items() if k != "cross_every"}) == "small"
    assert preset_of({k: v for k, v in build_model("light", 4).config.items() if k != "cross_every"}) is None
    assert preset_of(build_model("light", 4).config) == "light"


def test_unknown_preset_and_scale_are_rejected():
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("huge", 4)
    with pytest.raises(ValueError, match="scale"):
        build_model("tiny", 5)


@pytest.mark.parametrize("context", ["overlap", "shallow", "none"])
def test_gradients_reach_every_parameter(context):
    model = small_model(context=context)
    with torch.no_grad():  # zero-initialised layers (output conv, cross-attention branches) block gradients
        for p in model.parameters():  # until their first update: move every weight off its initial value
            p.add_(0.01 * torch.randn_like(p))
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


def test_geometry_is_derived_not_saved():
    model = small_model()
    assert not any("geometry" in k or "mask" in k for k in model.state_dict())
    with torch.no_grad():
        model(torch.rand(1, 3, 8, 8))
        small = model.geometry.shift_mask(8, 8, torch.device("cpu"))
        model(torch.rand(1, 3, 20, 30))
    large = model.geometry.shift_mask(24, 32, torch.device("cpu"))
    assert large.shape[0] == 24 // 8 + 32 // 8 - 1 != small.shape[0]  # the border windows only
    assert model.geometry.shift == model.window_size // 2


@pytest.mark.parametrize("shifted", [False, True])
def test_window_partition_round_trip(shifted):
    geometry = WindowGeometry(8)
    x = torch.randn(2, 16, 24, 5)
    windows = geometry.partition(x, shifted)
    assert windows.shape == (6, 2, 64, 5)
    if not shifted:
        assert torch.equal(windows[1, 1].view(8, 8, 5), x[1, 0:8, 8:16])
    else:  # after the cyclic shift by 4, window 0 starts at pixel (4, 4)
        assert torch.equal(windows[0, 1].view(8, 8, 5), x[1, 4:12, 4:12])
    assert torch.equal(geometry.merge(windows, 16, 24, shifted), x)


@pytest.mark.parametrize(("shifted", "overlap"), [(False, 0), (True, 0), (False, 3)])
def test_token_positions_are_what_the_windows_hold(shifted, overlap):
    """The positions srformer.explain asks for are the ones the forward pass gathers."""
    geometry = WindowGeometry(8)
    ys, xs = torch.meshgrid(torch.arange(16), torch.arange(24), indexing="ij")
    coordinates = torch.stack([ys, xs], dim=-1).unsqueeze(0)  # (1, H, W, 2): each pixel's own position
    cut = geometry.enlarged_partition(coordinates, overlap) if overlap else geometry.partition(coordinates, shifted)
    assert torch.equal(geometry.token_positions(16, 24, shifted=shifted, overlap=overlap), cut[:, 0])


def test_enlarged_windows_are_centred_on_the_windows():
    geometry = WindowGeometry(8)
    x = torch.randn(2, 16, 24, 3)
    overlap = 3
    big = geometry.enlarged_partition(x, overlap)
    size = 8 + 2 * overlap
    assert big.shape == (6, 2, size * size, 3)
    centre = big.view(6, 2, size, size, 3)[:, :, overlap:-overlap, overlap:-overlap]
    assert torch.equal(centre.reshape(6, 2, -1, 3), geometry.partition(x))
    # Window (row 1, col 1) = index 4: its band reaches 3 pixels into every neighbour.
    padded = F.pad(x.permute(0, 3, 1, 2), (3, 3, 3, 3), mode="reflect").permute(0, 2, 3, 1)
    expected = padded[:, 8 : 8 + size, 8 : 8 + size]
    assert torch.equal(big[4].view(2, size, size, 3), expected)
    # At the top-left corner the band is reflected: positions before reflection reach outside the map.
    unreflected = geometry.token_positions(16, 24, overlap=overlap, reflect=False)
    assert unreflected[0].min() == -overlap and unreflected[-1].max() == 24 + overlap - 1


@pytest.mark.parametrize("size", [(7, 13), (16, 17), (33, 50), (1, 1), (5, 40), (40, 5), (16, 16), (15, 2)])
def test_padding_reflects_unless_the_input_is_smaller_than_the_pad(size):
    geometry = WindowGeometry(16)
    x = torch.rand(2, 3, *size)
    height, width = size
    pad_h, pad_w = -height % 16, -width % 16
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    assert torch.equal(geometry.pad(x), F.pad(x, (0, pad_w, 0, pad_h), mode=mode))
    assert geometry.padded_size(height, width) == (height + pad_h, width + pad_w)


def naive_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


def test_attention_matches_naive_reference():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 4, 10, 8), torch.randn(3, 4, 14, 8), torch.randn(3, 4, 14, 8)
    allowed = torch.rand(3, 1, 10, 14) > 0.3
    allowed[..., 0] = True  # every query keeps at least one key
    torch.testing.assert_close(attention(q, k, v), naive_attention(q, k, v))
    # A mask for the last two windows only: the first is attended unmasked.
    tail_mask = torch.zeros(2, 1, 10, 14).masked_fill(~allowed[1:], float("-inf"))
    allowed[0] = True
    torch.testing.assert_close(attention(q, k, v, tail_mask), naive_attention(q, k, v, allowed))
    weights = attention_weights(q, k, tail_mask)
    torch.testing.assert_close(weights @ v, naive_attention(q, k, v, allowed))


@pytest.mark.parametrize("fused", [True, False])
def test_both_attention_paths_give_the_reference_values_and_gradients(fused: bool, monkeypatch) -> None:
    import srformer.models.attention as attention_module

    monkeypatch.setattr(attention_module, "FUSED", fused)
    torch.manual_seed(1)
    q, k, v = (torch.randn(3, 4, 10, 8, requires_grad=True) for _ in range(3))
    allowed = torch.rand(3, 1, 10, 10) > 0.3
    allowed[..., 0] = True
    tail_mask = torch.zeros(2, 1, 10, 10).masked_fill(~allowed[1:], float("-inf"))
    allowed[0] = True
    grad = torch.randn(3, 4, 10, 8)
    ours = torch.autograd.grad(attention(q, k, v, tail_mask), (q, k, v), grad)
    reference = torch.autograd.grad(naive_attention(q, k, v, allowed), (q, k, v), grad)
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b)


def test_attention_leaves_the_fused_kernel_only_for_reduced_precision_training_on_cpu(monkeypatch) -> None:
    """PyTorch's fused CPU kernel is slower in bf16 than in fp32, its backward above all, so bf16 training takes
    the explicit path; fp32, inference and (untested here) CUDA keep the fused kernel."""
    import srformer.models.attention as attention_module

    calls: list[str] = []
    real_sdpa = attention_module.F.scaled_dot_product_attention
    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention",
                        lambda *a, **kw: calls.append("fused") or real_sdpa(*a, **kw))  # fmt: skip
    model = build_model("tiny", 2)
    x = torch.rand(1, 3, 20, 20)
    model(x).mean().backward()
    assert calls and set(calls) == {"fused"}  # fp32 training
    calls.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert not calls  # bf16 training: explicit everywhere, self- and cross-attention alike
    out.float().mean().backward()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    assert calls  # bf16 inference: the fused kernel (faster forward)
    q = torch.rand(1, 2, 4, 8, dtype=torch.bfloat16, requires_grad=True)
    assert not attention_module.fused_kernel_is_faster(q)
    assert attention_module.fused_kernel_is_faster(q.detach())
    assert attention_module.fused_kernel_is_faster(q.float())


def test_shift_mask_keeps_apart_pixels_that_the_shift_wrapped():
    """Independent reference: in a shifted window two tokens may attend to each other iff both or neither of
    their original rows (and columns) wrapped around, i.e. lie in the first ``shift`` rows (columns)."""
    geometry = WindowGeometry(8)
    height, width = 24, 32
    positions = geometry.token_positions(height, width, shifted=True)  # (nW, N, 2) original pixels
    label = (positions[..., 0] < geometry.shift) * 2 + (positions[..., 1] < geometry.shift)
    allowed = label[:, :, None] == label[:, None, :]
    tail_mask = geometry.shift_mask(height, width, torch.device("cpu"))
    border = tail_mask.shape[0]
    assert border == geometry.border_windows(height, width) == 3 + 4 - 1
    assert allowed[:-border].all()  # every window before the border windows holds one region
    assert not allowed[-border:].all(dim=(1, 2)).any()  # every border window holds two or four
    assert torch.equal(tail_mask[:, 0] == 0, allowed[-border:])
    assert torch.isneginf(tail_mask[tail_mask != 0]).all()
    torch.manual_seed(0)
    q, k, v = (torch.randn(len(positions), 2, 64, 4) for _ in range(3))
    torch.testing.assert_close(attention(q, k, v, tail_mask), naive_attention(q, k, v, allowed[:, None]))


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


def test_geometry_keeps_the_tile_shapes_it_alternates_between(monkeypatch):
    geometry = WindowGeometry(8)
    cpu = torch.device("cpu")
    first = geometry.shift_mask(32, 32, cpu)
    geometry.shift_mask(32, 48, cpu)
    geometry.shift_mask(48, 32, cpu)
    assert geometry.shift_mask(32, 32, cpu) is first  # cached across the other sizes, not recomputed
    monkeypatch.setattr("srformer.models.geometry.CACHE_BYTES", 0)
    geometry.shift_mask(32, 48, cpu)  # only the current size stays when others may take no memory
    assert geometry.shift_mask(32, 32, cpu) is not first
    assert list(geometry._cache) == [(32, 32, cpu)]


def test_shifted_window_mask_regions():
    mask = WindowGeometry(8).shift_mask(16, 16, torch.device("cpu"))
    assert mask.shape == (3, 1, 64, 64)  # 2 x 2 windows: the top-left one needs no mask
    allowed = mask == 0
    # The top-right and bottom-left windows hold 2 regions of 32 pixels, the bottom-right one 4 of 16:
    # each token sees exactly its own region.
    assert (allowed[0, 0].sum(-1) == 32).all() and (allowed[1, 0].sum(-1) == 32).all()
    assert (allowed[2, 0].sum(-1) == 16).all()
    assert torch.isneginf(mask[~allowed]).all()


def _shifted_block(window=16):
    torch.manual_seed(0)
    return SelfAttentionBlock(dim=8, num_heads=2, geometry=WindowGeometry(window), shifted=True, mlp_ratio=2.0).eval()


def test_shifted_windows_do_not_attend_across_regions(monkeypatch):
    """Perturbation test: after the cyclic shift, original pixel (0, 0) lands in the same window as pixel
    (31, 31) but in another region; it must not influence (31, 31). Pixel (24, 24) (same region) must."""
    block = _shifted_block()
    x = torch.randn(1, 32, 32, 8)

    def change_at_31_31(pixel):
        y = x.clone()
        y[0, pixel[0], pixel[1]] += 5.0 * torch.randn(8)
        with torch.no_grad():
            return (block(x)[0, 31, 31] - block(y)[0, 31, 31]).abs().max().item()

    assert change_at_31_31((0, 0)) == 0.0
    assert change_at_31_31((24, 24)) > 1e-4
    # Control: without the mask the wrapped pixel does leak in, so the test above can fail.
    monkeypatch.setattr(block.geometry, "shift_mask", lambda *size: None)
    assert change_at_31_31((0, 0)) > 1e-4


def test_cross_attention_context_inside_window_matters_outside_does_not():
    """The centre window (rows/cols 16..31) sees context rows/cols 12..35 (overlap 4)."""
    torch.manual_seed(0)
    geometry = WindowGeometry(16)
    block = CrossAttentionBlock(dim=8, context_dim=8, num_heads=2, geometry=geometry, overlap=4, mlp_ratio=2.0).eval()
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


def test_cross_attention_blocks_start_as_identities_and_learn():
    """Zero-initialised residual branches (HAT-style): a new MHCA block passes its input on unchanged, and its
    zeroed layers receive gradients, so it starts learning at the first step."""
    model = build_model("tiny", 2)
    h = torch.randn(1, 32, 16, 48)
    for group in model.groups:
        with torch.no_grad():
            assert torch.equal(group.cross(h, h), h)
    with torch.no_grad():
        model.upsampler[0].weight.normal_(std=0.01)
    model(torch.rand(1, 3, 20, 20)).square().mean().backward()
    cross = model.groups[0].cross
    for layer in (cross.pos.conv, cross.attn.proj, cross.mlp.fc2):
        assert layer.weight.grad.abs().sum() > 0


# output[(image, channel, row, col)] at four points, recorded before window geometry moved (later files: when shipped)
SHIPPED_OUTPUTS = {
    ("srformer_x4", (7, 13)): [0.798162, 0.389442, 0.073253, 0.529955],
    ("srformer_x4", (16, 17)): [0.902951, 0.36694, 0.288373, 0.879109],
    ("srformer_x4", (33, 50)): [0.877074, 1.131626, 0.127559, 0.658834],
    ("srformer_x4_small", (7, 13)): [0.836072, 0.485068, 0.148218, 0.522564],  # the x4 default until 2026-12-06
    ("srformer_x4_small", (16, 17)): [0.983443, 0.509084, 0.260447, 0.89511],
    ("srformer_x4_small", (33, 50)): [0.636541, 1.067068, 0.158377, 0.874524],
    ("srformer_x4_tiny", (7, 13)): [0.840007, 0.480754, 0.154755, 0.518497],
    ("srformer_x4_tiny", (16, 17)): [0.999916, 0.530269, 0.20877, 0.883338],
    ("srformer_x4_tiny", (33, 50)): [0.622256, 1.082827, 0.15207, 0.88996],
    ("srformer_x3", (7, 13)): [0.86982, 0.34478, 0.080151, 0.354759],
    ("srformer_x3", (16, 17)): [0.87, 0.40061, 0.294533, 0.776317],
    ("srformer_x3", (33, 50)): [0.852638, 0.971004, 0.124967, 0.609228],
    ("srformer_x3_small", (7, 13)): [0.845985, 0.493945, 0.174776, 0.384274],  # the x3 model until 2026-12-07
    ("srformer_x3_small", (16, 17)): [0.967306, 0.497841, 0.316354, 0.801437],
    ("srformer_x3_small", (33, 50)): [0.656728, 0.892654, 0.17481, 0.69363],
    ("srformer_x2", (7, 13)): [0.858614, 0.382228, 0.171041, 0.75013],
    ("srformer_x2", (16, 17)): [0.941664, 0.465064, 0.346219, 0.635731],
    ("srformer_x2", (33, 50)): [0.72039, 0.909021, 0.171745, 0.73378],
    ("srformer_x2_tiny", (7, 13)): [0.81903, 0.412444, 0.184601, 0.705295],  # the x2 model until 2026-12-06
    ("srformer_x2_tiny", (16, 17)): [1.006089, 0.508803, 0.373887, 0.425868],
    ("srformer_x2_tiny", (33, 50)): [0.599617, 0.945709, 0.213297, 0.809191],
    ("srformer_x4_real", (7, 13)): [0.71709, 0.434956, 0.394725, 0.353821],
    ("srformer_x4_real", (16, 17)): [0.704637, 0.548473, 0.517353, 0.561903],
    ("srformer_x4_real", (33, 50)): [0.659601, 0.621028, 0.158107, 0.755225],
    ("srformer_x4_real_small", (7, 13)): [0.80825, 0.437995, 0.211571, 0.456485],  # the real model until 2026-12-06
    ("srformer_x4_real_small", (16, 17)): [0.900838, 0.480975, 0.346033, 0.833861],
    ("srformer_x4_real_small", (33, 50)): [0.659463, 0.994045, 0.2462, 0.80004],
}


#: The input sizes each shipped model's outputs are recorded at.
RECORDED_SIZES = [(7, 13), (16, 17), (33, 50)]


def test_recorded_outputs_are_those_of_shipped_models():
    assert {name for name, _ in SHIPPED_OUTPUTS} <= set(shipped.SHIPPED.values())
    assert {size for _, size in SHIPPED_OUTPUTS} == set(RECORDED_SIZES)


@pytest.mark.parametrize("size", RECORDED_SIZES)
@pytest.mark.parametrize("name", sorted(shipped.SHIPPED.values()))
def test_shipped_models_give_their_recorded_outputs(name, size):
    """Every shipped file, at three odd sizes: a new one is recorded when it ships (``SRFORMER_RECORD=1 pytest
    -rs -k recorded_outputs`` prints the lines to paste into :data:`SHIPPED_OUTPUTS`)."""
    model = load_model(shipped.model_path(name)).eval()
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(size[0] * 100 + size[1]))
    with torch.no_grad():
        y = model(x)
    H, W = y.shape[-2:]
    points = [(1, 0, 0, 0), (0, 1, H // 2, W // 3), (1, 2, H - 1, W - 1), (0, 0, H - 3, 5)]
    got = torch.tensor([y[p].item() for p in points])
    if os.environ.get("SRFORMER_RECORD") == "1":
        pytest.skip(f"({name!r}, {size}): {[round(v, 6) for v in got.tolist()]},")
    assert (name, size) in SHIPPED_OUTPUTS, f"{name} ships without recorded outputs: record them (SRFORMER_RECORD=1)"
    torch.testing.assert_close(got, torch.tensor(SHIPPED_OUTPUTS[name, size]), atol=1e-5, rtol=0)


def test_presets_are_plain_data():
    for preset in PRESETS.values():
        assert all(isinstance(v, (int, float, str, bool, list)) for v in preset.values())
