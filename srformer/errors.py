"""User-facing errors, and the one way every entry point reports them.

Anything a user can cause (a bad path, an unreadable image, a checkpoint for another scale, a device this
machine lacks) raises a subclass of :class:`SRFormerError` with one clear sentence. Every command-line entry
point reports it the same way: ``error: <message>`` on stderr and exit status 2 (:data:`EXIT_USAGE`), never a
traceback. Two ways to get that, both through :func:`report_user_error`:

* decorate ``main`` with :func:`exit_on_user_error` (argparse entry points: ``infer``, ``evaluate``,
  ``compare``, ``export``, ...): ``sys.exit(main())``;
* call :func:`report_user_error` in an ``except SRFormerError`` where the entry point must decide what
  happens next (``train.py`` records a failed sweep job and lets the sweep go on).

Devices are validated in one place too: :func:`resolve_device` turns ``--device`` into a ``torch.device``
or raises an :class:`SRFormerError` naming what this machine has.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: Exit status of a command stopped by a user error (bad argument, missing file, ...), as argparse uses.
EXIT_USAGE = 2


class SRFormerError(Exception):
    """Base class for errors caused by user input rather than by a bug."""


class DataError(SRFormerError):
    """A dataset folder, archive or image set is missing, empty or malformed."""


class ImageError(SRFormerError):
    """An image file cannot be read, decoded or written."""


class CheckpointError(SRFormerError):
    """A weights or checkpoint file is missing, unsafe, or does not fit the requested model."""


class DeviceError(SRFormerError):
    """The requested device is unknown or not present on this machine."""


def report_user_error(error: SRFormerError, prefix: str = "") -> int:
    """Print ``error: <prefix><message>`` (one line) on stderr; returns :data:`EXIT_USAGE`."""
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"error: {prefix}{message}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def exit_on_user_error(main: Callable[..., int]) -> Callable[..., int]:
    """Decorator for command-line ``main`` functions: an :class:`SRFormerError` becomes one line
    ``error: <message>`` on stderr and exit status 2, instead of a traceback."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            return main(*args, **kwargs)
        except SRFormerError as err:
            return report_user_error(err)

    return wrapper


def resolve_device(name: str | None = None) -> torch.device:
    """The device for ``--device NAME``: ``None``/``"auto"`` picks CUDA when present, else the CPU.

    Accepts ``cpu``, ``cuda``, ``cuda:N`` and ``mps``; raises :class:`DeviceError` (one sentence) for an
    unknown name or a device this machine does not have.
    """
    import torch

    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name} was asked for, but PyTorch sees no CUDA GPU here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError(f"device {name} was asked for, but PyTorch sees no Apple GPU (MPS) here")
    elif device.type != "cpu":
        raise DeviceError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return device
