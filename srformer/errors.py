"""User-facing errors.

Anything a user can cause (a bad path, an unreadable image, a checkpoint for another scale) raises a
subclass of :class:`SRFormerError` with one clear sentence. The command-line entry points catch it and
print ``error: <message>`` with a non-zero exit instead of a traceback.
"""

import functools
import sys
from collections.abc import Callable
from typing import Any


class SRFormerError(Exception):
    """Base class for errors caused by user input rather than by a bug."""


class DataError(SRFormerError):
    """A dataset folder, archive or image set is missing, empty or malformed."""


class ImageError(SRFormerError):
    """An image file cannot be read, decoded or written."""


class CheckpointError(SRFormerError):
    """A weights or checkpoint file is missing, unsafe, or does not fit the requested model."""


def exit_on_user_error(main: Callable[..., int]) -> Callable[..., int]:
    """Decorator for command-line ``main`` functions: an :class:`SRFormerError` becomes one line
    ``error: <message>`` on stderr and exit status 2, instead of a traceback."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            return main(*args, **kwargs)
        except SRFormerError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    return wrapper
