"""User-facing errors, and the one way every entry point reports them.

Anything a user can cause (a bad path, an unreadable image, a checkpoint for another scale, a device this
machine lacks) raises a subclass of :class:`SRFormerError` with one clear sentence. Every command-line entry
point reports it the same way: ``error: <message>`` on stderr and exit status 2 (:data:`EXIT_USAGE`), never a
traceback. Two ways to get that, both through :func:`report_user_error`:

* decorate ``main`` with :func:`exit_on_user_error` (argparse entry points: ``infer``, ``evaluate``,
  ``compare``, ``export``, ...): ``sys.exit(main())``;
* call :func:`report_user_error` in an ``except SRFormerError`` where the entry point must decide what
  happens next (``train.py`` records a failed sweep job and lets the sweep go on).

Hydra's own errors (``model=nope``, a key the config lacks, an override it cannot parse) would be printed by
Hydra over several lines with exit status 1; :func:`hydra_errors_as_user_errors` turns them into a
:class:`ConfigError` so that ``train.py`` reports them the same way.

Devices are validated in one place too: :func:`resolve_device` turns ``--device`` into a ``torch.device``
or raises an :class:`SRFormerError` naming what this machine has.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
from collections.abc import Callable, Iterator
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


class ConfigError(SRFormerError):
    """A training command line Hydra cannot turn into a config: an unknown config group option (``model=nope``),
    a key the config lacks, an override it cannot parse, a target it cannot build."""


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


@contextlib.contextmanager
def hydra_errors_as_user_errors() -> Iterator[None]:
    """Around a call of a ``@hydra.main`` function: Hydra's composition errors (and a ``_target_`` it cannot
    build) raise :class:`ConfigError` with one sentence instead of Hydra's report and exit status 1.

    Hydra re-raises instead of reporting when ``HYDRA_FULL_ERROR`` is set, so it is set for the call; other
    exceptions (bugs) then keep their full traceback. A user who set ``HYDRA_FULL_ERROR`` gets Hydra's
    behaviour unchanged.
    """
    from hydra.errors import ConfigCompositionException, InstantiationException, OverrideParseException

    if os.environ.get("HYDRA_FULL_ERROR"):
        yield
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except (ConfigCompositionException, OverrideParseException, InstantiationException) as err:
        raise ConfigError(hydra_error_message(err)) from None
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


def hydra_error_message(err: Exception) -> str:
    """One sentence for a Hydra composition error; an unknown group option lists the group's options."""
    from hydra.errors import MissingConfigException

    if isinstance(err, MissingConfigException) and err.missing_cfg_file and err.options is not None:
        group, _, name = err.missing_cfg_file.rpartition("/")
        available = ", ".join(err.options) if err.options else "none"
        return f"there is no {group} config {name!r} (configs/{group}/{name}.yaml); available: {available}"
    text = str(err)
    cause = err.__cause__
    if cause is not None and type(cause).__module__.startswith("omegaconf"):  # as Hydra's own report shows it
        text += "\n" + str(cause)
    unknown_key = re.match(r"Could not override '([^']+)'\.\nTo append to your config use (\S+)", text)
    if unknown_key and "not in struct" in text:
        key, append = unknown_key.groups()
        return f"there is no key {key!r} in the config to override (to add one, use {append})"
    parts = []
    for line in text.splitlines():
        line = line.strip().rstrip(".:")
        if not line or line.startswith(("full_key:", "object_type=", "reference_type=", "See https://")):
            continue
        if line.startswith("Config search path"):
            break
        parts.append(line)
    text = "; ".join(parts)
    return text[:1].lower() + text[1:] if text else type(err).__name__


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
