"""One way for entry points to report user errors (``error: ...``, exit 2) and one place that validates devices."""

from __future__ import annotations

import pytest
import torch

from srformer.errors import (
    EXIT_USAGE,
    CheckpointError,
    DeviceError,
    SRFormerError,
    exit_on_user_error,
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
