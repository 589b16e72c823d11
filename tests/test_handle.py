"""srformer.handle: every kind of model reference opens into one handle that runs on any size and knows how to
be run; every bad reference, scale or precision is refused with one sentence."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from srformer import shipped
from srformer.errors import CheckpointError, SRFormerError
from srformer.handle import ModelHandle, bicubic, open_model
from srformer.imresize import imresize
from srformer.inference import InferenceError
from srformer.models import build_model
from srformer.pixels import to_uint8

INSTALLED = shipped.installed()


def _runs_on_any_size(handle: ModelHandle) -> None:
    x = torch.rand(2, 3, 5, 11)
    with torch.no_grad():
        out = handle(x)
    assert out.shape == (2, 3, 5 * handle.scale, 11 * handle.scale)


@pytest.mark.parametrize(
    ("reference", "name", "scale"),
    [("x4", "x4", 4), ("x4_tiny", "x4_tiny", 4), ("x3", "x3", 3), ("x2", "x2", 2), ("real", "real", 4),
     ("srformer_x4_real", "real", 4), ("srformer_x2.safetensors", "x2", 2)],
)  # fmt: skip
def test_shipped_names(reference: str, name: str, scale: int) -> None:
    if name not in INSTALLED:
        pytest.skip(f"the shipped model {name} is not installed here")
    handle = open_model(reference)
    assert (handle.source, handle.scale, handle.path) == (f"shipped {name}", scale, INSTALLED[name])
    assert handle.name.startswith("srformer ") and handle.name.endswith(f" x{scale}")
    assert (handle.size_multiple, handle.precisions, handle.tile_hint) == (16, ("fp32", "bf16", "fp16"), None)
    _runs_on_any_size(handle)


@pytest.mark.parametrize(("scale", "name"), [(None, "x4"), (4, "x4"), (3, "x3"), (2, "x2")])
def test_the_default_per_scale_is_the_shipped_table(scale: int | None, name: str) -> None:
    assert shipped.DEFAULT_BY_SCALE[scale or 4] == name
    if name not in INSTALLED:
        pytest.skip(f"the shipped model {name} is not installed here")
    handle = open_model(None, scale=scale)
    assert handle.source == f"shipped {name}" and handle.path == shipped.default_model(scale)


def test_a_file_and_a_run_folder(tmp_path: Path, weights: Path) -> None:
    handle = open_model(weights)
    assert (handle.name, handle.source, handle.scale, handle.path) == ("srformer tiny x2", str(weights), 2, weights)
    assert handle.bytes_per_pixel == 90 * 48  # this network's measured memory per pixel and channel, C = 48
    _runs_on_any_size(handle)
    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy(weights.with_suffix(suffix), run / f"best{suffix}")
    from_folder = open_model(tmp_path / "run", scale=2)
    assert from_folder.path == run / "best.safetensors" and from_folder.name == "srformer tiny x2"
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(from_folder(x), handle(x), rtol=0, atol=0)


def test_an_existing_path_wins_over_a_shipped_name(tmp_path: Path, weights: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x4").mkdir()
    shutil.copy(weights, tmp_path / "x4" / "best.safetensors")
    shutil.copy(weights.with_suffix(".json"), tmp_path / "x4" / "best.json")
    assert open_model("x4").scale == 2  # the folder named x4, not the shipped x4 model


def test_bicubic_is_matlab_imresize_of_the_8_bit_levels() -> None:
    handle = open_model("bicubic", scale=3)
    assert (handle.name, handle.source, handle.scale, handle.size_multiple) == ("bicubic x3", "bicubic", 3, 1)
    assert (handle.precisions, handle.tile_hint, handle.descriptor, handle.path) == (("fp32",), 0, None, None)
    lr = torch.rand(1, 3, 7, 9)
    expected = imresize(to_uint8(lr), scale=3).float() / 255
    torch.testing.assert_close(handle(lr), expected, rtol=0, atol=0)
    torch.testing.assert_close(handle.upscale(lr, tile="auto"), expected, rtol=0, atol=0)  # never tiled
    assert open_model("BICUBIC").scale == 4 and handle.at_scale(2).scale == 2 and handle.tile_for(64) is None


def test_a_community_checkpoint_through_spandrel(tmp_path: Path) -> None:
    spandrel = pytest.importorskip("spandrel")
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(0)
    net = SwinIR(upscale=2, img_size=32, window_size=8, img_range=1.0, depths=[1], embed_dim=12, num_heads=[2],
                 mlp_ratio=2, upsampler="pixelshuffledirect").eval()  # fmt: skip
    torch.save({"params": net.state_dict()}, tmp_path / "SwinIR-light_x2.pth")
    handle = open_model(tmp_path / "SwinIR-light_x2.pth", scale=2)
    assert spandrel is not None and (handle.name, handle.scale, handle.size_multiple) == ("SwinIR x2", 2, 8)
    assert "fp16" not in handle.precisions and handle.bytes_per_pixel == 145 * 12  # the conservative estimate
    x = torch.rand(1, 3, 16, 24)  # a multiple of the window: nothing padded, the network's own output
    with torch.no_grad():
        torch.testing.assert_close(handle(x), net(x), rtol=0, atol=0)
    _runs_on_any_size(handle)
    with pytest.raises(InferenceError, match=r"^SwinIR x2 does not give correct output in fp16; use --precision"):
        handle.check_precision("fp16", torch.device("cuda"))


def test_a_wandb_artifact_reference(tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wandb = pytest.importorskip("wandb")

    class Artifact:
        qualified_name = "me/train/weights-abc:v3"

        def download(self, root: str) -> str:
            Path(root).mkdir(parents=True)
            for suffix in (".safetensors", ".json"):
                shutil.copy(weights.with_suffix(suffix), Path(root) / f"best{suffix}")
            return root

    artifact = Artifact()
    monkeypatch.setattr(wandb, "Api", lambda: type("Api", (), {"artifact": lambda self, name: artifact})())
    monkeypatch.setenv("SRFORMER_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(CheckpointError, match=r"^me/train/weights-abc:best is not a file here.*--wandb-mode online"):
        open_model("me/train/weights-abc:best")  # offline by default: no network
    handle = open_model("me/train/weights-abc:best", wandb_mode="online")
    assert (handle.source, handle.artifact, handle.scale) == ("me/train/weights-abc:v3", artifact, 2)


def test_wrap_a_module_built_in_this_process() -> None:
    model = build_model("tiny", 3)
    handle = ModelHandle.wrap(model)
    assert (handle.name, handle.scale, handle.size_multiple, handle.source) == ("srformer x3", 3, 16, "module")
    tile = handle.tile_for("auto")
    assert isinstance(tile, int) and tile % 16 == 0 and handle.tile_for(0) is None and handle.tile_for(48) == 48


@pytest.mark.parametrize(
    ("reference", "scale", "error", "message"),
    [
        ("x8_huge", None, CheckpointError, r"model file not found: x8_huge \(nor is it a shipped model: x4, "),
        ("nowhere/best.safetensors", None, CheckpointError, "model file not found: nowhere/best.safetensors"),
        ("", None, CheckpointError, "the model reference is empty"),
        ("auto", None, SRFormerError, "'auto' chooses a model per input file"),
        (None, 8, CheckpointError, r"no shipped x8 model \(shipped scales: x2, x3, x4\); pass --model"),
        ("bicubic", 0, SRFormerError, "the scale must be a positive integer, got 0"),
        ("WEIGHTS", 3, CheckpointError, r"tiny_x2\.safetensors is a x2 model, but x3 was asked for"),
        ("NOT_A_MODEL", None, CheckpointError, "is not a model file"),
    ],
)
def test_bad_references_are_one_sentence(
    tmp_path: Path, weights: Path, reference, scale, error: type[Exception], message: str
) -> None:
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    reference = {"WEIGHTS": weights, "NOT_A_MODEL": tmp_path / "notes.ckpt"}.get(reference, reference)
    with pytest.raises(error, match=message) as caught:
        open_model(reference, scale=scale)
    assert "\n" not in str(caught.value)


def test_a_shipped_model_not_installed_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path)
    for reference in (None, "x4", "real"):
        with pytest.raises(CheckpointError, match=r"the shipped model '(x4|real)' is not installed .*--model"):
            open_model(reference)


def test_a_handle_refuses_another_scale_and_a_precision(weights: Path) -> None:
    handle = open_model(weights)
    assert handle.at_scale(2) is handle and handle.at_scale(None) is handle
    with pytest.raises(CheckpointError, match=r"^tiny_x2\.safetensors is a x2 model, but x4 was asked for"):
        handle.at_scale(4)
    with pytest.raises(InferenceError, match="^fp16 is not supported on the CPU"):
        handle.check_precision("fp16")
    with pytest.raises(InferenceError, match="^unknown precision 'fp8'"):
        handle.check_precision("fp8")
    with pytest.raises(InferenceError, match=r"^bicubic x4 does not give correct output in bf16"):
        bicubic().check_precision("bf16")
