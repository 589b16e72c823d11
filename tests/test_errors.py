"""One way for entry points to report user errors (``error: ...``, exit 2) and one place that validates devices."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from srformer.errors import (
    EXIT_USAGE,
    CheckpointError,
    ConfigError,
    DeviceError,
    SRFormerError,
    exit_on_user_error,
    hydra_errors_as_user_errors,
    report_user_error,
    resolve_device,
)


def test_report_user_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture) -> None:
    assert report_user_error(CheckpointError("w.pth is missing\n  really"), prefix="job 3 failed: ") == EXIT_USAGE == 2
    assert capsys.readouterr().err == "error: job 3 failed: w.pth is missing really\n"


def test_decorated_main_turns_user_errors_into_exit_2(capsys: pytest.CaptureFixture) -> None:
    @exit_on_user_error
    def main(fail: bool) -> int:
        if fail:
            raise SRFormerError("bad input")
        return 0

    assert main(False) == 0
    assert main(True) == 2
    assert capsys.readouterr().err == "error: bad input\n"

    @exit_on_user_error
    def buggy() -> int:
        raise ValueError("a bug")

    with pytest.raises(ValueError):  # bugs keep their traceback
        buggy()


def test_resolve_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected and resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="unknown device 'gpu0'; use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")
    with pytest.raises(DeviceError, match="unsupported device 'meta'"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="PyTorch sees no CUDA GPU here"):
            resolve_device("cuda:0")
    else:
        with pytest.raises(DeviceError, match="does not exist; this machine has"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    assert issubclass(DeviceError, SRFormerError)


def test_hydra_composition_errors_become_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra.errors import MissingConfigException

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    unknown = MissingConfigException("In 'train.yaml': Could not find 'model/huge'", "model/huge", ["base", "tiny"])
    with pytest.raises(ConfigError) as caught, hydra_errors_as_user_errors():
        assert os.environ["HYDRA_FULL_ERROR"] == "1"  # Hydra re-raises instead of printing its report
        raise unknown
    assert str(caught.value) == "there is no model config 'huge' (configs/model/huge.yaml); available: base, tiny"
    assert "HYDRA_FULL_ERROR" not in os.environ
    with pytest.raises(KeyError), hydra_errors_as_user_errors():  # bugs keep their traceback
        raise KeyError("a bug")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # the user asked for Hydra's full errors: unchanged
    with pytest.raises(MissingConfigException), hydra_errors_as_user_errors():
        raise unknown
    assert os.environ["HYDRA_FULL_ERROR"] == "1"


@pytest.mark.parametrize(
    "main_and_args",
    [
        ("srformer.commands.evaluate", ["--model", "bicubic", "--data", "nowhere", "--device", "tpu"]),
        ("srformer.commands.compare", ["nowhere.safetensors", "--data", "{tmp}", "--scale", "4", "--device", "tpu"]),
        ("srformer.commands.upscale", ["in.png", "-o", "out", "--device", "tpu"]),
    ],
)
def test_every_entry_point_reports_a_bad_device_the_same_way(
    main_and_args: tuple[str, list[str]], capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    import importlib

    module, argv = main_and_args
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    assert importlib.import_module(module).main(argv) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: unknown device 'tpu'; use auto, cpu, cuda or cuda:N", err


@pytest.mark.parametrize(
    "module",
    [
        "srformer.commands.evaluate",
        "srformer.commands.explain",
        "srformer.commands.prepare_div2k",
        "srformer.commands.preview_degradation",
        "srformer.commands.compare",
        "srformer.commands.upscale",
        "srformer.commands.export",
    ],
)
def test_argparse_entry_points_use_the_one_decorator(module: str) -> None:
    import importlib

    main = importlib.import_module(module).main
    assert getattr(main, "__wrapped__", None) is not None, f"{module}.main is not wrapped by exit_on_user_error"
