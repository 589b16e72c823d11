"""Community checkpoints through ``load_any``: random-weight spandrel models saved in their official layouts
(SwinIR's ``{"params": ...}``, Real-ESRGAN's ``{"params_ema": ...}``, SPAN's plain state dict); no downloads."""

from __future__ import annotations

import os
import sys
from pathlib import Path

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
