"""Community checkpoints through ``load_any``: random-weight spandrel models saved in their official layouts
(SwinIR's ``{"params": ...}``, Real-ESRGAN's ``{"params_ema": ...}``, SPAN's plain state dict); no downloads."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from srformer.checkpoint import ZooModel, load_any, load_model
from srformer.errors import CheckpointError

pytest.importorskip("spandrel")


def _swinir_light() -> torch.nn.Module:
    """SwinIR-light's layout (pixelshuffledirect, window 8), shrunk to stay fast."""
    from spandrel.architectures.SwinIR import SwinIR

    return SwinIR(
        upscale=4, img_size=32, window_size=8, img_range=1.0, depths=[2, 2], embed_dim=12, num_heads=[2, 2],
        mlp_ratio=2, upsampler="pixelshuffledirect",
    )  # fmt: skip


def _esrgan() -> torch.nn.Module:
    from spandrel.architectures.ESRGAN import ESRGAN

    return ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4)


def _span() -> torch.nn.Module:
    from spandrel.architectures.SPAN import SPAN

    return SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2)


def _random(build) -> torch.nn.Module:
    torch.manual_seed(0)
    return build().eval()


def _same_output(original: torch.nn.Module, loaded: torch.nn.Module, height: int, width: int) -> None:
    x = torch.rand(1, 3, height, width)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), original(x), rtol=0, atol=0)


def test_swinir_official_params_layout(tmp_path: Path) -> None:
    net = _random(_swinir_light)
    torch.save({"params": net.state_dict()}, tmp_path / "SwinIR-light_x4.pth")
    loaded = load_any(tmp_path / "SwinIR-light_x4.pth")
    d = loaded.descriptor
    assert (d.architecture, d.scale, d.in_channels, d.out_channels, d.source) == ("SwinIR", 4, 3, 3, "zoo")
    assert d.size_multiple == 8 and d.preset is None and d.name == "SwinIR x4"
    assert d.precisions == ("fp32", "bf16")  # spandrel: SwinIR is not fp16-safe
    assert d.tiling == "discouraged" and d.tile_hint is None
    assert d.params == sum(p.numel() for p in net.parameters())
    assert isinstance(loaded.model, ZooModel) and not loaded.model.training
    assert loaded.model.scale == 4 and loaded.model.window_size == 8
    _same_output(net, loaded.model, 16, 24)
    x = torch.rand(1, 3, 13, 21)  # any size: padded to the requirements, cropped back
    with torch.no_grad():
        assert loaded.model(x).shape == (1, 3, 52, 84)
    assert load_model(tmp_path / "SwinIR-light_x4.pth", scale=4).scale == 4
    with pytest.raises(CheckpointError, match="is a x4 model, but x2 was asked for"):
        load_any(tmp_path / "SwinIR-light_x4.pth", scale=2)


def test_real_esrgan_prefers_params_ema(tmp_path: Path) -> None:
    net = _random(_esrgan)
    raw = {k: v + 1 for k, v in net.state_dict().items()}
    torch.save({"params_ema": net.state_dict(), "params": raw}, tmp_path / "RealESRGAN_x4plus.pth")
    loaded = load_any(tmp_path / "RealESRGAN_x4plus.pth")
    assert (loaded.descriptor.architecture, loaded.descriptor.scale) == ("ESRGAN", 4)
    assert loaded.descriptor.supports_fp16 and loaded.descriptor.supports_bf16
    _same_output(net, loaded.model, 10, 12)


def test_span_plain_state_dict_pth_and_safetensors(tmp_path: Path) -> None:
    net = _random(_span)
    torch.save(net.state_dict(), tmp_path / "span.pth")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "span.safetensors"))
    for name in ("span.pth", "span.safetensors"):
        loaded = load_any(tmp_path / name)
        assert (loaded.descriptor.architecture, loaded.descriptor.scale, loaded.descriptor.size_multiple) == (
            "SPAN",
            2,
            1,
        )
        _same_output(net, loaded.model, 11, 9)


def test_swinir_pads_to_its_window_and_runs_on_inputs_smaller_than_a_window(tmp_path: Path) -> None:
    """SwinIR pads to a multiple of its window (8; spandrel's ``multiple_of`` is 1), up to spandrel's minimum
    side (16) for small inputs; inputs smaller than one window, down to 1x1, are upscaled."""
    net = _random(_swinir_light_small)
    torch.save({"params": net.state_dict()}, tmp_path / "SwinIR-light_x4.pth")
    loaded = load_any(tmp_path / "SwinIR-light_x4.pth")
    assert (loaded.descriptor.size_multiple, loaded.descriptor.min_size) == (8, 16)
    seen: list[tuple[int, int]] = []
    loaded.model.net.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    for (height, width), padded in [((20, 25), (24, 32)), ((17, 9), (24, 16)), ((1, 1), (16, 16)), ((3, 5), (16, 16))]:
        with torch.no_grad():
            out = loaded.model(torch.rand(1, 3, height, width))
        assert out.shape == (1, 3, 4 * height, 4 * width) and bool(torch.isfinite(out).all())
        assert seen[-1] == padded
    _same_output(net, loaded.model, 24, 16)  # no padding needed: SwinIR's own result


def test_missing_spandrel_is_one_clear_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.save(_random(_span).state_dict(), tmp_path / "span.pth")
    monkeypatch.setitem(sys.modules, "spandrel", None)  # import spandrel -> ImportError
    with pytest.raises(CheckpointError, match=r'needs the optional spandrel package: pip install "srformer\[zoo\]"'):
        load_any(tmp_path / "span.pth")


def test_unknown_community_weights_are_refused(tmp_path: Path) -> None:
    torch.save({"params": {"foo.weight": torch.zeros(2, 2)}}, tmp_path / "mystery.pth")
    with pytest.raises(CheckpointError, match="nor a community architecture that spandrel recognises"):
        load_any(tmp_path / "mystery.pth")
    torch.save({"params": {"note": "no tensors"}}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="holds no weights"):
        load_any(tmp_path / "empty.pth")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_community_pickle_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"params": _random(_span).state_dict(), "extra": _Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_any(tmp_path / "evil.pth")
    assert not marker.exists()


def _swinir_light_small() -> torch.nn.Module:
    """SwinIR-light's layout at its smallest (depths [1, 1]): fast enough for the command-line tests."""
    from spandrel.architectures.SwinIR import SwinIR

    return SwinIR(
        upscale=4, img_size=32, window_size=8, img_range=1.0, depths=[1, 1], embed_dim=12, num_heads=[2, 2],
        mlp_ratio=2, upsampler="pixelshuffledirect",
    )  # fmt: skip


def _photo_dir(folder: Path) -> Path:
    """Two small generated PNGs: sides not multiples of 4 or 8 (cropping and padding are exercised), the x4 LR
    at least 16 pixels (SwinIR's minimum, below which the loaded model pads further than SwinIR itself)."""
    from srformer.imageio import write_image

    rng = np.random.default_rng(0)
    for name, (height, width) in {"a.png": (74, 69), "b.png": (66, 90)}.items():
        ramp = np.linspace(0, 255, width)[None, :, None] * np.linspace(0.3, 1, height)[:, None, None]
        noise = rng.integers(0, 40, (height, width, 3))
        write_image(folder / name, np.clip(ramp + noise, 0, 255).astype(np.uint8))
    return folder


def test_evaluate_scores_an_official_swinir_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    from srformer.commands.evaluate import main as evaluate_main
    from srformer.data.cache import ImageCache
    from srformer.metrics import psnr_y
    from srformer.scoring import benchmark_dataset

    net = _random(_swinir_light_small)
    weights = tmp_path / "SwinIR-light_x4.pth"
    torch.save({"params": net.state_dict()}, weights)
    data = _photo_dir(tmp_path / "Photos")
    args = ["--model", str(weights), "--data", str(data), "--scale", "4", "--no-cache", "--device", "cpu"]
    assert evaluate_main([*args, "--json"]) == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (result["scale"], result["images"]) == (4, 2)

    # The same score as upscaling the protocol's LR with the SwinIR module itself (it pads to its window).
    dataset = benchmark_dataset(data, 4, ImageCache(tmp_path / "cache"))
    scores = []
    for index in range(len(dataset)):
        lr, hr = dataset[index]["lr"].unsqueeze(0), dataset[index]["hr"].unsqueeze(0)
        with torch.no_grad():
            sr = net(lr)
        scores.append(float(psnr_y(sr.clamp(0, 1).mul(255).round().div(255), hr, 4)[0]))
    assert result["psnr"] == pytest.approx(sum(scores) / len(scores), abs=1e-4)

    assert evaluate_main(args) == 0
    assert "model: SwinIR x4" in capsys.readouterr().out
    assert evaluate_main([*args[:5], "2", *args[6:]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is a x4 model, but x2 was asked for" in err and "Traceback" not in err


def test_compare_puts_a_community_checkpoint_next_to_ours(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from srformer.checkpoint import save_weights
    from srformer.commands.compare import main as compare_main
    from srformer.models import build_model

    torch.save({"params": _random(_swinir_light_small).state_dict()}, tmp_path / "SwinIR-light_x4.pth")
    torch.manual_seed(0)
    ours = save_weights(build_model("tiny", 4), tmp_path / "ours" / "srformer_x4_tiny.safetensors")
    data = _photo_dir(tmp_path / "Photos")
    args = [str(tmp_path / "SwinIR-light_x4.pth"), str(ours), "--data", str(data), "--scale", "4"]
    options = ["-o", str(tmp_path / "cmp"), "--no-cache", "--wandb-mode", "disabled", "--device", "cpu"]
    assert compare_main([*args, *options, "--repeats", "1", "--cost-size", "32", "--crop", "32"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert lines[0].endswith("| model |")
    rows = {line.split(" | ")[0][2:]: line for line in lines[1:]}
    assert list(rows) == ["bicubic", "SwinIR-light_x4", "srformer_x4_tiny"]
    assert rows["SwinIR-light_x4"].endswith("| SwinIR x4 |")
    assert rows["srformer_x4_tiny"].endswith("| srformer tiny x4 |") and rows["bicubic"].endswith("| - |")
    for name in ("a", "b"):
        grid = (tmp_path / "cmp" / "grids" / "Photos" / f"{name}.png").read_bytes()
        assert grid[:8] == b"\x89PNG\r\n\x1a\n"


def test_infer_upscales_with_a_community_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from srformer import handle, upscaling
    from srformer.commands import upscale
    from srformer.data.io import read_rgb_uint8
    from srformer.imageio import write_image
    from srformer.inference import upscale_tensor

    net = _random(_swinir_light_small)
    weights = tmp_path / "SwinIR-light_x4.pth"
    torch.save({"params": net.state_dict()}, weights)
    rng = np.random.default_rng(0)
    write_image(tmp_path / "a.png", rng.integers(0, 256, (19, 27, 3)).astype(np.uint8))
    lr = torch.from_numpy(read_rgb_uint8(tmp_path / "a.png")).permute(2, 0, 1)[None].float().div(255)

    # Whole image: the SwinIR module's own result, rounded to 8 bits.
    assert upscale.main([str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--model", str(weights), "--tile", "0",
                           "--device", "cpu", "--quiet"]) == 0  # fmt: skip
    with torch.no_grad():
        expected = net(lr).clamp(0, 1).mul(255).round()[0].permute(1, 2, 0).numpy()
    assert np.array_equal(read_rgb_uint8(tmp_path / "o" / "a_x4.png"), expected.astype(np.uint8))

    # Tiles aligned to the descriptor's size multiple (the SwinIR window, 8), not a guess.
    seen = []
    real_bands = upscaling.upscale_bands

    def spy(*args, **kwargs):
        seen.append(args[0].size_multiple)
        return real_bands(*args, **kwargs)

    monkeypatch.setattr(upscaling, "upscale_bands", spy)
    args = [str(tmp_path / "a.png"), "-o", str(tmp_path / "t"), "--model", str(weights), "--device", "cpu", "--quiet"]
    assert upscale.main([*args, "--tile", "12", "--tile-overlap", "4"]) == 0
    assert seen == [8]
    loaded = load_any(weights)
    tiled = upscale_tensor(loaded.model, lr, tile=16, tile_overlap=8)
    assert np.array_equal(
        read_rgb_uint8(tmp_path / "t" / "a_x4.png"), tiled.mul(255).round()[0].permute(1, 2, 0).byte().numpy()
    )

    # A precision the model is not safe in: one sentence, exit 2 (fp16 passes the device check here).
    monkeypatch.setattr(upscale, "check_precision", lambda *args: None)
    monkeypatch.setattr(handle, "check_precision", lambda *args: None)
    assert upscale.main([*args, "--precision", "fp16", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err == "error: SwinIR x4 does not give correct output in fp16; use --precision fp32 or bf16\n"


def test_export_refuses_a_community_checkpoint_in_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from srformer.commands.export import main as export_main

    torch.save({"params": _random(_swinir_light_small).state_dict()}, tmp_path / "SwinIR-light_x4.pth")
    assert export_main(["--model", str(tmp_path / "SwinIR-light_x4.pth"), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "is a community SwinIR x4 checkpoint; export writes ONNX of srformer models only" in err
    assert err.count("\n") == 1 and not (tmp_path / "m.onnx").exists()
