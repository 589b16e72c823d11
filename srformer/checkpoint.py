"""Saving and safely loading model weights.

Three things rebuild a model without its original config:

* ``name.safetensors`` + ``name.json``: weights, and ``{"format": "srformer", "arch": {...}, "scale": ...}``.
* Lightning ``.ckpt`` files written by :class:`srformer.training.module.SRLitModule`: the architecture is in
  ``hyper_parameters["arch"]``, the weights in ``state_dict`` under ``net.`` (and ``net_ema.``, preferred).
* A training run folder: its best export (``best.safetensors``), else its ``last.ckpt``.

Nothing here unpickles arbitrary objects: safetensors holds only tensors, and ``torch.load`` runs with
``weights_only=True``, so a checkpoint file can never execute code; a file that needs more is refused.
When weights do not fit the architecture they are loaded into, the error names what differs: the preset and
scale the weights look like, missing and unexpected tensors, and shape mismatches.
"""

from __future__ import annotations

import inspect
import json
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from srformer.errors import CheckpointError
from srformer.models.network import SRFormer
from srformer.models.presets import PRESETS

FORMAT = "srformer"
FORMAT_VERSION = 1

#: Run-folder candidates, best first: the best-weights export, any other export, then Lightning checkpoints.
_RUN_FOLDER_PATTERNS = ("best.safetensors", "*.safetensors", "last.ckpt", "*.ckpt")


def save_weights(model: SRFormer, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (.safetensors) and its sibling ``.json``; both atomically (temp file, then rename).

    The JSON holds ``format``, ``format_version``, ``scale``, ``arch`` (``model.config``), ``preset`` (the
    matching preset name, or ``None`` for a custom architecture) and ``meta`` (which may override ``preset``).
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"weights path must end in .safetensors, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "scale": model.scale,
        "arch": model.config,
        "preset": preset_of(model.config),
        **(meta or {}),
    }
    tmp_weights = path.with_name(path.name + ".tmp")
    tmp_json = path.with_suffix(".json.tmp")
    save_file(state, str(tmp_weights), metadata={"format": FORMAT})
    tmp_json.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_weights, path)
    os.replace(tmp_json, path.with_suffix(".json"))
    return path


def preset_of(arch: dict[str, Any]) -> str | None:
    """Name of the preset ``arch`` was built from (ignoring the scale), or ``None`` for a custom one."""
    defaults = _constructor_defaults()
    for name, preset in PRESETS.items():
        expected = {**defaults, **preset}
        if all(_same(arch.get(key, value), value) for key, value in expected.items() if key != "scale"):
            return name
    return None


def _constructor_defaults() -> dict[str, Any]:
    parameters = inspect.signature(SRFormer.__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _same(a: Any, b: Any) -> bool:
    return list(a) == list(b) if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) else a == b


def describe_arch(arch: dict[str, Any]) -> str:
    """``"preset 'light' at x4"``, or the main numbers of a custom architecture."""
    preset = preset_of(arch)
    what = (
        f"preset '{preset}'"
        if preset
        else f"a custom architecture (dim {arch.get('dim')}, depths {arch.get('depths')})"
    )
    return f"{what} at x{arch.get('scale')}"


def resolve_model_path(path: str | os.PathLike) -> Path:
    """The weights file that ``path`` names: itself, or for a run folder its best export, else ``last.ckpt``."""
    path = Path(path)
    if path.is_dir():
        return _find_in_run_folder(path)
    if not path.exists():
        raise CheckpointError(f"model file not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a regular file")
    return path


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", scale: int | None = None) -> SRFormer:
    """Rebuild a model from weights + JSON, a Lightning checkpoint or a run folder; returned in eval mode.

    Args:
        path: ``.safetensors`` (with its ``.json`` beside it), Lightning ``.ckpt``, or a run folder.
        device: where to put the model.
        scale: if given, the model must upscale by this factor (else :class:`CheckpointError`).
    """
    path = resolve_model_path(path)
    if path.suffix == ".safetensors":
        arch, state = _read_safetensors(path)
    elif path.suffix == ".json" and path.with_suffix(".safetensors").is_file():
        path = path.with_suffix(".safetensors")
        arch, state = _read_safetensors(path)
    else:
        arch, state = _read_torch_checkpoint(path)
    model = _build(arch, path)
    _check_fits(model, state, path)
    model.load_state_dict(state, strict=True)
    if scale is not None and model.scale != scale:
        raise CheckpointError(f"{path.name} is a x{model.scale} model, but x{scale} was asked for")
    return model.to(device).eval()


def _find_in_run_folder(folder: Path) -> Path:
    for pattern in _RUN_FOLDER_PATTERNS:
        found = [p for p in folder.rglob(pattern) if p.is_file() and not p.name.startswith(".")]
        if found:
            # Several runs in one folder: the newest file wins.
            return max(found, key=lambda p: (p.stat().st_mtime, str(p)))
    raise CheckpointError(f"no model in folder {folder}: expected best.safetensors (+ .json) or last.ckpt inside it")


def _read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise CheckpointError(f"{path.name} needs its architecture file {meta_path.name} beside it")
    try:
        info = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {meta_path.name} as JSON ({err})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or not isinstance(info.get("arch"), dict):
        raise CheckpointError(f"{meta_path.name} is not an srformer model description (no format/arch)")
    version = info.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path.name} has format version {version}; this srformer reads up to {FORMAT_VERSION}, please upgrade"
        )
    arch = dict(info["arch"])
    if "scale" in info and "scale" in arch and info["scale"] != arch["scale"]:
        raise CheckpointError(
            f"{meta_path.name} contradicts itself: scale {info['scale']} but its arch says {arch['scale']}"
        )
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises several types for malformed files
        raise CheckpointError(f"{path.name} is not a valid safetensors file ({_first_line(err)})") from None
    return arch, state


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _read_torch_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if not zipfile.is_zipfile(path) and not _looks_like_legacy_pickle(path):
        raise CheckpointError(
            f"{path.name} is not a model file (expected .safetensors + .json, a Lightning .ckpt or a run folder)"
        )
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols it may not support; the refusal below says what matters.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refuses any global outside its allow-list *before* calling it: nothing has run.
        unsafe = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f" ({unsafe.group(1)})" if unsafe else ""
        raise CheckpointError(
            f"{path.name} contains pickled objects other than tensors and plain values{what}; refusing to load "
            "it because unpickling them could run code"
        ) from None
    except Exception as err:
        raise CheckpointError(f"{path.name} is not a readable PyTorch checkpoint ({_first_line(err)})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(
            f"{path.name} is not a Lightning checkpoint (no state_dict); plain state dicts do not record their "
            "architecture, export them with save_weights instead"
        )
    arch = (ckpt.get("hyper_parameters") or {}).get("arch")
    if not isinstance(arch, dict):
        raise CheckpointError(f"{path.name} does not record its architecture (hyper_parameters.arch)")
    state_dict = ckpt["state_dict"]
    prefix = "net_ema." if any(k.startswith("net_ema.") for k in state_dict) else "net."
    state = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not state:
        raise CheckpointError(f"{path.name} has no network weights (no net.* or net_ema.* entries in state_dict)")
    return dict(arch), state


def _looks_like_legacy_pickle(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(2)
    return len(head) == 2 and head[0] == 0x80 and head[1] <= 5  # pickle protocol marker


def _build(arch: dict[str, Any], path: Path) -> SRFormer:
    try:
        return SRFormer(**arch)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path.name} describes an architecture this version cannot build: {err}") from None


def _check_fits(model: SRFormer, state: dict[str, torch.Tensor], path: Path) -> None:
    """Raise :class:`CheckpointError` naming what differs when ``state`` does not fit ``model``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if not (missing or unexpected or mismatched):
        return
    parts = [f"the weights in {path.name} do not fit the architecture it describes ({describe_arch(model.config)})"]
    guess = guess_arch(state)
    if guess:
        parts.append(f"the weights look like {guess}")
    if mismatched:
        shown = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)} expected" for k in mismatched[:3])
        parts.append(f"{len(mismatched)} tensors differ in shape ({shown}{', ...' if len(mismatched) > 3 else ''})")
    if missing:
        parts.append(f"{len(missing)} missing ({_listing(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_listing(unexpected)})")
    raise CheckpointError("; ".join(parts))


def _listing(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")


def guess_arch(state: dict[str, torch.Tensor]) -> str | None:
    """What preset and scale a state dict was most likely saved from, e.g. ``"preset 'tiny' at x2"``."""
    stem = state.get("stem.0.weight")
    if stem is None or stem.ndim != 4:
        return None
    dim = stem.shape[0]
    group_ids = {int(m.group(1)) for k in state if (m := re.match(r"groups\.(\d+)\.", k))}
    depths = [
        len({int(m.group(1)) for k in state if (m := re.match(rf"groups\.{g}\.blocks\.(\d+)\.", k))})
        for g in sorted(group_ids)
    ]
    scale = None
    convs = sorted((k for k in state if re.fullmatch(r"upsampler\.\d+\.weight", k)), key=lambda k: int(k.split(".")[1]))
    if len(convs) == 1:  # pixelshuffle_direct: out_channels * scale**2 filters
        in_channels = stem.shape[1]
        ratio = state[convs[0]].shape[0] // max(in_channels, 1)
        scale = round(ratio**0.5) if round(ratio**0.5) ** 2 == ratio else None
    elif len(convs) > 1:  # pixelshuffle: one shuffle by 3, or two by 2
        shuffles = len(convs) - 2
        scale = 4 if shuffles == 2 else (2 if state[convs[1]].shape[0] == 4 * state[convs[0]].shape[0] else 3)
    preset = next(
        (name for name, p in PRESETS.items() if p["dim"] == dim and list(p["depths"]) == depths),
        None,
    )
    what = f"preset '{preset}'" if preset else f"dim {dim}, depths {depths}"
    return f"{what} at x{scale}" if scale else what
