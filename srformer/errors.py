"""User-facing errors.

Anything a user can cause (a bad path, an unreadable image, a checkpoint for another scale) raises a
subclass of :class:`SRFormerError` with one clear sentence. The command-line entry points catch it and
print ``error: <message>`` with a non-zero exit instead of a traceback.
"""


class SRFormerError(Exception):
    """Base class for errors caused by user input rather than by a bug."""


class DataError(SRFormerError):
    """A dataset folder, archive or image set is missing, empty or malformed."""


class ImageError(SRFormerError):
    """An image file cannot be read, decoded or written."""


class CheckpointError(SRFormerError):
    """A weights or checkpoint file is missing, unsafe, or does not fit the requested model."""
