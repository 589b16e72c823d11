"""Saving and safe loading: round trips, Lightning checkpoints, run folders, clear errors, no code execution."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import srformer
from srformer.checkpoint import load_any, load_model, save_weights
from srformer.errors import CheckpointError
from srformer.models import build_model


def _perturbed(preset: str, scale: int, seed: int) -> srformer.models.SRFormer:
    torch.manual_seed(seed)
    model = build_model(preset, scale)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _lightning_checkpoint(path: Path, net: torch.nn.Module, ema: torch.nn.Module | None) -> Path:
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    if ema is not None:
        state |= {f"net_ema.{k}": v for k, v in ema.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"arch": net.config, "lr": 1e-3}, "epoch": 3}, path)
    return path


def test_safetensors_round_trip(tmp_path: Path) -> None:
    model = _perturbed("tiny", 3, seed=1)
    save_weights(model, tmp_path / "w.safetensors", meta={"note": "test"})
    info = json.loads((tmp_path / "w.json").read_text())
    assert info["preset"] == "tiny" and info["scale"] == 3 and info["note"] == "test"
    loaded = srformer.load_model(tmp_path / "w.safetensors")
    assert not loaded.training and loaded.scale == 3 and _same_weights(model, loaded)
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_lightning_checkpoint_prefers_ema(tmp_path: Path) -> None:
    net, ema = _perturbed("tiny", 2, seed=1), _perturbed("tiny", 2, seed=2)
    assert _same_weights(load_model(_lightning_checkpoint(tmp_path / "a.ckpt", net, ema)), ema)
    assert _same_weights(load_model(_lightning_checkpoint(tmp_path / "b.ckpt", net, None)), net)


def test_run_folder_prefers_best_export_then_last_ckpt(tmp_path: Path) -> None:
    run = tmp_path / "run"
    net, best = _perturbed("tiny", 2, seed=1), _perturbed("tiny", 2, seed=2)
    (run / "checkpoints").mkdir(parents=True)
    _lightning_checkpoint(run / "checkpoints" / "last.ckpt", net, None)
    _lightning_checkpoint(run / "checkpoints" / "epoch=1.ckpt", best, None)
    os.utime(run / "checkpoints" / "epoch=1.ckpt", (time.time() - 100, time.time() - 100))
    assert _same_weights(load_model(run), net)  # no export yet: last.ckpt
    save_weights(best, run / "exports" / "best.safetensors")
    assert _same_weights(load_model(run), best)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no model in folder"):
        load_model(tmp_path / "empty")


def test_missing_and_non_checkpoint_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nothing.safetensors")
    (tmp_path / "notes.ckpt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a model file"):
        load_model(tmp_path / "notes.ckpt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    (tmp_path / "junk.json").write_text(json.dumps({"format": "srformer", "arch": {"scale": 4}}))
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_model(tmp_path / "junk.safetensors")
    # An older export: only {"format": "srformer"} in the metadata, so the .json is needed.
    save_file(build_model("tiny", 2).state_dict(), str(tmp_path / "alone.safetensors"), metadata={"format": "srformer"})
    with pytest.raises(CheckpointError, match="needs its architecture file alone.json"):
        load_model(tmp_path / "alone.safetensors")
    torch.save(build_model("tiny", 2).state_dict(), tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match=r"holds srformer weights \(they look like preset 'tiny' at x2\) but not"):
        load_model(tmp_path / "plain.pth")


def test_single_safetensors_file_is_enough(tmp_path: Path) -> None:
    """The architecture is embedded in the safetensors metadata: no .json sidecar needed."""
    model = _perturbed("tiny", 2, seed=3)
    save_weights(model, tmp_path / "w.safetensors", meta={"steps": 7})
    (tmp_path / "w.json").unlink()
    loaded = load_any(tmp_path / "w.safetensors")
    assert _same_weights(loaded.model, model)
    d = loaded.descriptor
    assert (d.architecture, d.preset, d.scale, d.source, d.size_multiple) == ("srformer", "tiny", 2, "safetensors", 16)
    assert (d.in_channels, d.out_channels, d.info["steps"], d.name) == (3, 3, 7, "srformer tiny x2")
    assert d.precisions == ("fp32", "bf16", "fp16") and d.tile_hint is None and d.tiling == "supported"
    assert d.params == sum(p.numel() for p in model.parameters())


def test_lightning_descriptor(tmp_path: Path) -> None:
    net = _perturbed("tiny", 3, seed=1)
    d = load_any(_lightning_checkpoint(tmp_path / "a.ckpt", net, None)).descriptor
    assert (d.architecture, d.preset, d.scale, d.source) == ("srformer", "tiny", 3, "lightning")


def test_mismatched_weights_name_what_differs(tmp_path: Path) -> None:
    save_weights(build_model("tiny", 4), tmp_path / "x4.safetensors")
    save_weights(build_model("tiny", 2), tmp_path / "x2.safetensors")
    save_weights(build_model("light", 4), tmp_path / "light.safetensors")
    shutil.copy(tmp_path / "x4.json", tmp_path / "x2.json")  # x2 weights described as x4
    with pytest.raises(CheckpointError) as scale_error:
        load_model(tmp_path / "x2.safetensors")
    message = str(scale_error.value)
    assert "preset 'tiny' at x4" in message and "look like preset 'tiny' at x2" in message
    assert "upsampler.0.weight (12, 48, 3, 3) vs (48, 48, 3, 3) expected" in message
    shutil.copy(tmp_path / "x4.json", tmp_path / "light.json")  # light weights described as tiny
    with pytest.raises(CheckpointError) as preset_error:
        load_model(tmp_path / "light.safetensors")
    message = str(preset_error.value)
    expected, found = build_model("tiny", 4).state_dict(), build_model("light", 4).state_dict()
    shared = set(expected) & set(found)
    counts = {
        "tensors differ in shape": sum(expected[k].shape != found[k].shape for k in shared),
        "missing": len(set(expected) - set(found)),
        "unexpected": len(set(found) - set(expected)),
    }
    assert "(preset 'tiny' at x4); the weights look like preset 'light' at x4" in message
    for what, count in counts.items():
        assert (f"; {count} {what}" in message) == (count > 0), (what, count, message)
    with pytest.raises(CheckpointError, match="is a x4 model, but x2 was asked for"):
        load_model(tmp_path / "x4.safetensors", scale=2)


def test_newer_format_and_bad_json_refused(tmp_path: Path) -> None:
    save_weights(build_model("tiny", 2), tmp_path / "w.safetensors", meta={"format_version": 99})
    with pytest.raises(CheckpointError, match="format version 99"):
        load_model(tmp_path / "w.safetensors")
    (tmp_path / "w.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read w.json"):
        load_model(tmp_path / "w.safetensors")


class _Payload:
    """Pickles to a call that would create ``marker`` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    model = build_model("tiny", 2)
    ckpt = {
        "state_dict": {f"net.{k}": v for k, v in model.state_dict().items()},
        "hyper_parameters": {"arch": model.config},
        "payload": _Payload(marker),
    }
    torch.save(ckpt, tmp_path / "evil.ckpt")
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refusing to load") as refused:
        load_model(tmp_path / "evil.ckpt")
    assert "system" in str(refused.value)  # names the callable it refused
    assert not marker.exists()
