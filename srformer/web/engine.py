"""The server's one door into the model code: which models exist, opening one, choosing one per file for
``auto``, and writing an upscaled file exactly as ``srformer upscale`` writes it.

Everything else in :mod:`srformer.web` calls these functions only. Models are opened by
:func:`srformer.handle.open_model` and files written by :func:`srformer.upscaling.upscale_file` with the
command's default :class:`~srformer.upscaling.UpscaleOptions`, so a result downloaded from the page has the
bytes ``srformer upscale`` writes for the same file and model (metadata included: ``auto`` records its
choice as the command does).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

from srformer import shipped
from srformer.allocator import reuse_freed_memory
from srformer.autoselect import REAL_WORLD_MODEL, Choice, choose_model
from srformer.errors import resolve_device
from srformer.handle import BICUBIC, ModelHandle, open_model
from srformer.upscaling import UpscaleOptions, choice_metadata, output_extension, upscale_file

__all__ = [
    "BICUBIC",
    "Choice",
    "ModelHandle",
    "auto_metadata",
    "choose",
    "default_scale",
    "open_handle",
    "output_suffix",
    "shipped_models",
    "tune_memory",
    "upscale",
]

#: Called after each tile: ``(tiles done, tiles in all)``; raising from it stops the upscale.
TileCallback = Callable[[int, int], None]


def shipped_models() -> dict[str, tuple[int, str]]:
    """The shipped models installed here: name -> (upscaling factor, a short description), from each
    model's ``.json``."""
    found = {}
    for name, path in shipped.installed().items():
        try:
            info = json.loads(path.with_suffix(".json").read_text())
            scale = int(info["scale"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a broken install of one model: not offered
        what = f"srformer {info.get('preset') or ''} x{scale}".replace("  ", " ")
        found[name] = (scale, what + (", for real-world photos" if name == REAL_WORLD_MODEL else ""))
    return found


def default_scale() -> int:
    """The scale used when none is asked for: that of the default shipped model."""
    return 4


def open_handle(reference: str, scale: int | None = None, device: str | None = None) -> ModelHandle:
    """A shipped name, ``bicubic``, or a weights file or run folder, opened on ``device`` (``None``/``"auto"``:
    CUDA when present, as the commands do); ``scale``, when given, must be the model's. Raises
    :class:`~srformer.errors.SRFormerError` with one sentence."""
    return open_model(reference, scale=scale, device=resolve_device(device))


def choose(source: Path, scale: int) -> Choice:
    """The shipped model ``auto`` uses for the image file ``source`` at ``scale``, and why."""
    return choose_model(source, scale)


def auto_metadata(choice: Choice) -> dict[str, str]:
    """What ``srformer upscale --model auto`` records in its output about its choice."""
    return choice_metadata(choice)


def output_suffix(source: Path) -> str:
    """The extension ``srformer upscale`` gives the result of ``source`` (its own format, else ``.png``)."""
    return output_extension(source, None)


def upscale(
    handle: ModelHandle,
    source: Path,
    destination: Path,
    *,
    max_pixels: int | None,
    on_tile: TileCallback | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Upscale the image file ``source`` into the new file ``destination`` (its extension from
    :func:`output_suffix`) with the defaults of ``srformer upscale``.

    ``on_tile`` is called after every tile; an exception it raises stops the work and leaves no file. Raises
    :class:`~srformer.errors.SRFormerError` (one sentence) for an image that cannot be read or written.
    """
    upscale_file(handle, source, destination, UpscaleOptions(max_pixels=max_pixels), on_tile, metadata=metadata)


def tune_memory() -> None:
    """The command's allocator settings, for a long-lived process that runs models again and again."""
    reuse_freed_memory()
