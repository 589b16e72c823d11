"""Saving and safely loading model weights (first version by the lead; extended by the inference work).

Two formats rebuild their model without the original config:

* ``name.safetensors`` + ``name.json``: weights, and ``{"format": "srformer", "arch": {...}, ...}``.
* Lightning ``.ckpt`` files written by :class:`srformer.training.module.SRLitModule`: the architecture is in
  ``hyper_parameters["arch"]``, the weights in ``state_dict`` under ``net.`` (and ``net_ema.``, preferred).

Nothing here unpickles arbitrary objects: safetensors holds only tensors, and ``torch.load`` runs with
``weights_only=True``, so a checkpoint file can never execute code.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from srformer.errors import CheckpointError
from srformer.models.network import SRFormer

FORMAT = "srformer"
FORMAT_VERSION = 1


def save_weights(model: SRFormer, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (.safetensors) and its sibling ``.json``; both atomically (temp file, then rename)."""
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
        **(meta or {}),
    }
    tmp_weights = path.with_name(path.name + ".tmp")
    tmp_json = path.with_suffix(".json.tmp")
    save_file(state, str(tmp_weights), metadata={"format": FORMAT})
    tmp_json.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_weights, path)
    os.replace(tmp_json, path.with_suffix(".json"))
    return path


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> SRFormer:
    """Rebuild a model from weights + JSON, a Lightning checkpoint or a run folder; returned in eval mode."""
    path = Path(path)
    if path.is_dir():
        path = _find_in_run_folder(path)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    if path.suffix == ".safetensors":
        arch, state = _read_safetensors(path)
    else:
        arch, state = _read_lightning_checkpoint(path)
    model = _build(arch, path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path.name} does not fit the architecture it describes: "
            f"{len(missing)} missing and {len(unexpected)} unexpected weights"
        )
    return model.to(device).eval()


def _find_in_run_folder(folder: Path) -> Path:
    for pattern in ("**/best.safetensors", "**/*.safetensors", "**/last.ckpt", "**/*.ckpt"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    raise CheckpointError(f"no .safetensors or .ckpt model found in folder {folder}")


def _read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise CheckpointError(f"{path.name} needs its architecture file {meta_path.name} beside it")
    try:
        info = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {meta_path.name}: {err}") from None
    if info.get("format") != FORMAT or "arch" not in info:
        raise CheckpointError(f"{meta_path.name} is not an srformer model description")
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises several types for malformed files
        raise CheckpointError(f"{path.name} is not a valid safetensors file ({err})") from None
    return info["arch"], state


def _read_lightning_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path.name} contains pickled objects other than tensors and plain values; refusing to load it "
            "because that could run code"
        ) from None
    except Exception as err:
        raise CheckpointError(f"{path.name} is not a PyTorch checkpoint ({type(err).__name__})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path.name} is not a Lightning checkpoint (no state_dict)")
    arch = (ckpt.get("hyper_parameters") or {}).get("arch")
    if not isinstance(arch, dict):
        raise CheckpointError(f"{path.name} does not record its architecture (hyper_parameters.arch)")
    state_dict = ckpt["state_dict"]
    prefix = "net_ema." if any(k.startswith("net_ema.") for k in state_dict) else "net."
    state = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    return arch, state


def _build(arch: dict[str, Any], path: Path) -> SRFormer:
    try:
        return SRFormer(**arch)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path.name} describes an architecture this version cannot build: {err}") from None
