"""srformer.explain: captured attention weights are the real ones, LAM respects a known receptive field, CLIs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from srformer.checkpoint import save_weights
from srformer.commands.explain import main
from srformer.explain import attention_maps, capturing, gini, local_attribution_map
from srformer.models import SRFormer
from srformer.models.attention import WindowCrossAttention, merge_heads


def small_model(window: int = 8) -> SRFormer:
    torch.manual_seed(0)
    model = SRFormer(scale=2, dim=16, depths=[2], num_heads=2, window_size=window, context_overlap=2).eval()
    for p in model.upsampler.parameters():  # the output conv starts at zero; give LAM a gradient to follow
        nn.init.normal_(p, std=0.1)
    return model


@pytest.mark.parametrize("block", [0, 1])  # regular and shifted windows
def test_captured_weights_sum_to_one_and_reproduce_the_block_output(block):
    model = small_model()
    group = model.groups[0]
    attn_modules = [group.blocks[block].attn, group.cross.attn]
    outputs = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out: outputs.__setitem__(mod, out)) for m in attn_modules]
    with capturing(attn_modules), torch.no_grad():
        model(torch.rand(1, 3, 13, 19))  # padded to 16 x 24: 2 x 3 windows
    for h in hooks:
        h.remove()
    for module in attn_modules:
        c = module.captured
        assert c.weights.shape[:2] == (6, 2)  # (windows, batch * heads)
        torch.testing.assert_close(c.weights.sum(-1), torch.ones(c.weights.shape[:-1]))
        torch.testing.assert_close(c.weights @ c.values, c.output, atol=1e-5, rtol=1e-4)
        # ... and that output is what the module went on to project and return.
        projected = module.proj(merge_heads(c.output, 1))
        returned = outputs[module]
        if isinstance(module, WindowCrossAttention):  # returns (B, H, W, C), not windows
            returned = model.geometry.partition(returned)
        torch.testing.assert_close(projected, returned, atol=1e-5, rtol=1e-4)
    assert not any(m.capture for m in attn_modules)  # switched off again


def test_shifted_block_masks_keys_across_the_wrap():
    model = small_model()
    # Pixel (0, 0) sits in a shifted window that wraps around the image corner: only its own region may be seen.
    self_maps, cross_maps = attention_maps(model, torch.rand(1, 3, 16, 16), (0, 0), group=0, block=1)
    assert self_maps.maps.shape == (2, 16, 16)
    np.testing.assert_allclose(self_maps.maps.sum(axis=(1, 2)), 1, rtol=1e-5)
    seen = self_maps.maps.sum(0) > 0
    assert seen[:4, :4].all() and not seen[4:].any() and not seen[:, 4:].any()
    np.testing.assert_allclose(cross_maps.maps.sum(axis=(1, 2)), 1, rtol=1e-5)
    assert cross_maps.context.sum() == 10 * 10  # 8 + 2 * 2 overlap, clipped at the top-left corner


class ConvStack(nn.Module):
    """Three 3x3 convolutions: each output pixel sees exactly a 7x7 input neighbourhood."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(8, 3, 3, padding=1),
        )

    def forward(self, x):
        return self.body(x)


def test_lam_stays_inside_the_receptive_field():
    torch.manual_seed(1)
    image = torch.rand(1, 3, 32, 32)
    y, x, h, w = 12, 10, 4, 5
    result = local_attribution_map(ConvStack(), image, (y, x, h, w), scale=1, steps=10)
    # The objective reads output rows y .. y + h (forward differences add one), each seeing 3 pixels around.
    inside = np.zeros((32, 32), dtype=bool)
    inside[y - 3 : y + h + 1 + 3, x - 3 : x + w + 1 + 3] = True
    assert result.attribution[~inside].max() == 0
    assert result.attribution[y : y + h, x : x + w].min() > 0
    assert 0 < result.diffusion_index < 100


def test_gini_known_values():
    assert gini(np.ones(100)) == pytest.approx(0, abs=1e-6)
    one_hot = np.zeros(100)
    one_hot[3] = 1
    assert gini(one_hot) == pytest.approx(0.99, abs=1e-4)  # (n - 1) / n


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain")
    save_weights(small_model(), folder / "tiny.safetensors")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)).save(folder / "in.png")
    return folder


def test_cli_attention_and_lam_end_to_end(files, capsys):
    out = files / "att.png"
    assert (
        main(
            [
                "attention",
                "--image",
                str(files / "in.png"),
                "--pixel",
                "5",
                "9",
                "--model",
                str(files / "tiny.safetensors"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert Image.open(out).size[0] > 100
    out = files / "lam.png"
    code = main(
        [
            "lam",
            "--image",
            str(files / "in.png"),
            "--box",
            "6",
            "8",
            "4",
            "4",
            "--steps",
            "8",
            "--model",
            str(files / "tiny.safetensors"),
            "-o",
            str(out),
        ]
    )
    assert code == 0 and out.exists()
    assert "diffusion index" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["attention", "--pixel", "50", "0"], "outside"),
        (["lam", "--box", "0", "0", "40", "4"], "does not fit"),
        (["attention", "--pixel", "0", "0", "--block", "7"], "block 7"),
        (["lam", "--box", "0", "0", "4", "4", "--model", "missing.safetensors"], "error:"),
    ],
)
def test_cli_errors_are_one_line(files, capsys, argv, message):
    argv = argv[:1] + ["--image", str(files / "in.png"), "-o", str(files / "x.png")] + argv[1:]
    if "--model" not in argv:
        argv += ["--model", str(files / "tiny.safetensors")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


# --------------------------------------------------------------------------- community models, chunked LAM


def swinir_checkpoint(folder) -> str:
    """A small random SwinIR (SwinIR-light's layout) saved in the official ``{"params": ...}`` layout."""
    SwinIR = pytest.importorskip("spandrel.architectures.SwinIR").SwinIR
    torch.manual_seed(0)
    net = SwinIR(
        upscale=4, img_size=32, window_size=8, img_range=1.0, depths=[1, 1], embed_dim=12, num_heads=[2, 2],
        mlp_ratio=2, upsampler="pixelshuffledirect",
    )  # fmt: skip
    path = folder / "SwinIR-light_x4.pth"
    torch.save({"params": net.state_dict()}, path)
    return str(path)


def test_attention_of_a_community_model_is_one_sentence(files, capsys):
    from srformer import load_model
    from srformer.explain import NotAnSRFormerError

    path = swinir_checkpoint(files)
    expected = "attention maps need an srformer model; {} is a SwinIR checkpoint; `explain lam` works on any model"
    with pytest.raises(NotAnSRFormerError) as raised:
        attention_maps(load_model(path), torch.rand(1, 3, 20, 28), (5, 9), group=-1, block=0, name=path)
    assert str(raised.value) == expected.format(path)
    argv = ["attention", "--image", str(files / "in.png"), "--pixel", "5", "9", "--model", path]
    assert main([*argv, "-o", str(files / "swinir_attention.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a SwinIR checkpoint; `explain lam` works on any model" in err
    assert not (files / "swinir_attention.png").exists()


def test_lam_of_a_community_model(files, capsys):
    from srformer import load_model

    path = swinir_checkpoint(files)
    model = load_model(path)
    image = torch.rand(1, 3, 20, 28, generator=torch.Generator().manual_seed(3))
    chunked = local_attribution_map(model, image, (6, 8, 4, 4), model.scale, steps=4)
    assert np.isfinite(chunked.attribution).all() and chunked.attribution[6:10, 8:12].max() > 0
    one_pass = local_attribution_map(model, image, (6, 8, 4, 4), model.scale, steps=4, batch=4, recompute=False)
    np.testing.assert_allclose(chunked.attribution, one_pass.attribution, rtol=1e-4, atol=1e-6)
    out = files / "swinir_lam.png"
    argv = ["lam", "--image", str(files / "in.png"), "--box", "6", "8", "4", "4", "--steps", "4", "--model", path]
    assert main([*argv, "-o", str(out)]) == 0 and out.exists()
    assert "diffusion index" in capsys.readouterr().out


@pytest.mark.parametrize("batch", [1, 3])
def test_chunked_lam_with_recomputation_equals_one_pass(batch):
    """Chunks of path points with the body recomputed in the backward give the one-pass attribution; the
    recomputation really happens (a block inside a residual group runs twice per pass) and is undone after."""
    torch.manual_seed(0)
    model = SRFormer(scale=2, dim=16, depths=[2, 2], num_heads=2, window_size=8, context_overlap=2).eval()
    for p in model.upsampler.parameters():
        nn.init.normal_(p, std=0.1)
    image = torch.rand(1, 3, 20, 28, generator=torch.Generator().manual_seed(2))
    box, steps = (6, 8, 4, 4), 6
    calls = []
    hook = model.groups[0].blocks[0].attn.register_forward_hook(lambda *_: calls.append(1))
    one_pass = local_attribution_map(model, image, box, 2, steps=steps, batch=steps, recompute=False)
    assert len(calls) == 1
    calls.clear()
    chunked = local_attribution_map(model, image, box, 2, steps=steps, batch=batch)
    hook.remove()
    # per chunk: the forward, the group's recomputation, then the block's own recomputation within it
    assert len(calls) == 3 * -(-steps // batch)
    assert "forward" not in vars(model.groups[0])
    np.testing.assert_allclose(chunked.attribution, one_pass.attribution, rtol=1e-5, atol=1e-6)
    assert chunked.diffusion_index == pytest.approx(one_pass.diffusion_index, rel=1e-5)
