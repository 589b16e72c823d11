"""The models shipped with the package: the one place that knows their names and where their files are.

The weights travel as package data in ``srformer/weights/`` (``<stem>.safetensors`` + ``<stem>.json``), in an
editable install as in a wheel, so the defaults work from any folder::

    from srformer import shipped

    shipped.model_path("x4_tiny")  # .../srformer/weights/srformer_x4_tiny.safetensors
    shipped.default_model(2)  # the shipped x2 model
    shipped.resolve("x4")  # a --model value: a shipped name, else a path as given

A name that is not shipped raises a :class:`~srformer.errors.CheckpointError` listing the names; so does a
shipped name whose files are not in this installation (``real`` until it is trained).
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from srformer.errors import CheckpointError

#: Shipped model name -> file stem in :data:`WEIGHTS_DIR` (``<stem>.safetensors`` + ``<stem>.json``).
SHIPPED: dict[str, str] = {
    "x4": "srformer_x4",
    "x4_small": "srformer_x4_small",
    "x4_tiny": "srformer_x4_tiny",
    "x3": "srformer_x3",
    "x3_small": "srformer_x3_small",
    "x2": "srformer_x2",
    "x2_tiny": "srformer_x2_tiny",
    "real": "srformer_x4_real",
    "real_small": "srformer_x4_real_small",
}

#: The model used for each scale when no model is given.
DEFAULT_BY_SCALE: dict[int, str] = {4: "x4", 3: "x3", 2: "x2"}

#: The package-data folder of the shipped weights (a real folder: pip unpacks wheels).
WEIGHTS_DIR = Path(os.fspath(files("srformer") / "weights"))


def names() -> list[str]:
    """The shipped model names, in :data:`SHIPPED` order (whether or not their files are installed)."""
    return list(SHIPPED)


def name_of(name_or_scale: str | int) -> str:
    """``"x4_tiny"``, ``"srformer_x4_tiny"``, ``4``, ``"4"`` -> the shipped name; :class:`CheckpointError` if none."""
    key = str(name_or_scale).strip()
    if key.isdigit():
        scale = int(key)
        if scale not in DEFAULT_BY_SCALE:
            scales = ", ".join(f"x{s}" for s in sorted(DEFAULT_BY_SCALE))
            raise CheckpointError(
                f"no shipped x{scale} model (shipped scales: {scales}); pass --model WEIGHTS"
                " (a .safetensors, a .ckpt or a run folder)"
            )
        return DEFAULT_BY_SCALE[scale]
    stems = {stem: name for name, stem in SHIPPED.items()}
    key = key.removesuffix(".safetensors").removesuffix(".json")
    if key in SHIPPED:
        return key
    if key in stems:
        return stems[key]
    raise CheckpointError(f"unknown shipped model {str(name_or_scale)!r}; the shipped models are {', '.join(SHIPPED)}")


def weights_file(name_or_scale: str | int) -> Path:
    """Where the ``.safetensors`` of a shipped model lives, whether or not it is installed."""
    return WEIGHTS_DIR / f"{SHIPPED[name_of(name_or_scale)]}.safetensors"


def model_path(name_or_scale: str | int) -> Path:
    """The ``.safetensors`` of a shipped model (its ``.json`` beside it), by name (``x4``, ``x4_tiny``, ``x3``,
    ``x2``, ``real``; the file stem works too) or by scale (``4``, ``3``, ``2``).

    Raises :class:`CheckpointError` (one sentence) for a name that is not shipped, or when the model's files are
    not in this installation.
    """
    name = name_of(name_or_scale)
    path = weights_file(name)
    missing = [p.name for p in (path, path.with_suffix(".json")) if not p.is_file()]
    if missing:
        have = list(installed())
        raise CheckpointError(
            f"the shipped model {name!r} is not installed ({' and '.join(missing)} missing in {WEIGHTS_DIR});"
            f" installed: {', '.join(have) or 'none'}; pass --model WEIGHTS (a .safetensors, a .ckpt or a run folder)"
        )
    return path


def default_model(scale: int | None = None) -> Path:
    """The shipped model for ``scale`` (x4 when ``None``); :class:`CheckpointError` when there is none."""
    return model_path(4 if scale is None else scale)


def installed() -> dict[str, Path]:
    """The shipped models whose files are in this installation: name -> ``.safetensors`` path."""
    found = {}
    for name, stem in SHIPPED.items():
        path = WEIGHTS_DIR / f"{stem}.safetensors"
        if path.is_file() and path.with_suffix(".json").is_file():
            found[name] = path
    return found


def is_name(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` spells a shipped model's name (``x4_tiny``) or file stem (``srformer_x4_tiny``,
    ``srformer_x4_tiny.safetensors``), installed or not; a scale (``"4"``) is not a name."""
    key = str(text).strip().removesuffix(".safetensors").removesuffix(".json")
    return key in SHIPPED or key in SHIPPED.values()


def resolve(model: str | os.PathLike[str]) -> Path:
    """A ``--model`` value: an existing file or folder as given, else a shipped name (``x4_tiny``), else the
    path as given (the loader then reports what is wrong with it)."""
    path = Path(model)
    if path.exists():
        return path
    return model_path(str(model)) if is_name(model) else path
