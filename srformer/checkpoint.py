"""Saving and safely loading model weights: one loader for every model file people have.

:func:`load_any` is the way in. It returns a :class:`LoadedModel`: the model, ready to run (eval mode, any
input size, ``[0, 1]`` in and out), and a typed :class:`ModelDescriptor` (architecture, scale, channels, size
multiple, safe precisions, tiling hint, where it came from). It reads:

* ``name.safetensors``: weights whose metadata embeds the architecture (``save_weights`` writes it), so the one
  file is enough; ``name.json`` beside it, when present, takes precedence (older files only have that).
* Lightning ``.ckpt`` files written by :class:`srformer.training.module.SRLitModule`: the architecture is in
  ``hyper_parameters["arch"]``, the weights in ``state_dict`` under ``net.`` (and ``net_ema.``, preferred).
* A training run folder: its best export (``best.safetensors``), else its ``last.ckpt``.
* Community checkpoints in their official layouts (``.pth``/``.pt``/``.ckpt``/``.safetensors``): SwinIR's
  ``{"params": ...}``, Real-ESRGAN's ``{"params_ema": ...}``, plain state dicts of SPAN, HAT, SRFormer (the
  paper's), DAT, OmniSR, ESRGAN and the other architectures ``spandrel`` detects. This needs the optional
  ``zoo`` extra (``pip install "srformer[zoo]"``); without it such a file is refused with that sentence.

Nothing here unpickles arbitrary objects: safetensors holds only tensors, and ``torch.load`` runs with
``weights_only=True``, so a checkpoint file can never execute code; a file that needs more is refused.
When weights do not fit the architecture they are loaded into, the error names what differs: the preset and
scale the weights look like, missing and unexpected tensors, and shape mismatches.
"""

from __future__ import annotations

import errno
import inspect
import json
import math
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from srformer.atomic import atomic_file, atomic_path
from srformer.errors import CheckpointError
from srformer.models.network import SRFormer
from srformer.models.presets import PRESETS

FORMAT = "srformer"
FORMAT_VERSION = 1

#: The safetensors metadata key holding the model description (the same JSON as the ``.json`` sidecar).
METADATA_KEY = "srformer"

#: Install hint for community checkpoints.
ZOO_HINT = 'pip install "srformer[zoo]"'

#: Run-folder candidates, best first: the best-weights export, any other export, then Lightning checkpoints.
_RUN_FOLDER_PATTERNS = ("best.safetensors", "*.safetensors", "last.ckpt", "*.ckpt")


def save_weights(model: SRFormer, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (.safetensors) and its sibling ``.json``; both atomically (:mod:`srformer.atomic`).

    The JSON holds ``format``, ``format_version``, ``scale``, ``arch`` (``model.config``), ``preset`` (the
    matching preset name, or ``None`` for a custom architecture) and ``meta`` (which may override ``preset``).
    The same JSON is embedded in the safetensors metadata (key ``"srformer"``), so the ``.safetensors`` file
    alone is enough to rebuild the model; the ``.json`` stays for people and tools that read it.
    A failed write (disk full, ...) leaves no partial file and any previous ``path`` intact.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"weights path must end in .safetensors, got {path.name}")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "scale": model.scale,
        "arch": model.config,
        "preset": preset_of(model.config),
        **(meta or {}),
    }
    text = json.dumps(info, indent=2, sort_keys=True) + "\n"
    try:  # both complete before either is published, the weights (the inner block) first
        with atomic_file(path.with_suffix(".json"), "w") as sidecar, atomic_path(path) as weights:
            save_file(state, str(weights), metadata={"format": FORMAT, METADATA_KEY: text})
            sidecar.write(text)
    except OSError as err:
        raise CheckpointError(write_failure(path, err)) from None
    return path


def write_failure(path: Path, err: OSError) -> str:
    """One sentence for a failed checkpoint write, e.g. when the disk is full (ENOSPC)."""
    full = err.errno in (errno.ENOSPC, errno.EDQUOT)
    reason = "the disk is full" if full else err.strerror or _first_line(err)
    return f"could not write {path} ({reason}); no partial file was left and the previous one, if any, is intact"


def preset_of(arch: dict[str, Any]) -> str | None:
    """Name of the preset ``arch`` was built from (ignoring the scale), or ``None`` for a custom one."""
    defaults = _constructor_defaults()
    built = {**defaults, **arch}  # a key a file lacks is built with the constructor's default
    for name, preset in PRESETS.items():
        expected = {**defaults, **preset}
        if all(_same(built.get(key), value) for key, value in expected.items() if key != "scale"):
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
    """The weights file that ``path`` names: itself, a shipped model's name (``x4``, ``x4_tiny``, ``x2``,
    ``real``; :mod:`srformer.shipped`), or for a run folder its best export, else ``last.ckpt``."""
    from srformer import shipped  # imported here: shipped is a leaf module, but keep checkpoint importable alone

    path = shipped.resolve(path)
    if path.is_dir():
        return _find_in_run_folder(path)
    if not path.exists():
        raise CheckpointError(f"model file not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a regular file")
    return path


@dataclass(frozen=True)
class ModelDescriptor:
    """What a loaded model is and how to run it; the same fields for our models and community ones.

    Attributes:
        architecture: ``"srformer"`` for this project's models, else spandrel's architecture name
            (``"SwinIR"``, ``"ESRGAN"``, ``"SPAN"``, ``"HAT"``, ``"SRFormer"`` (the paper's), ``"DAT"``, ...).
        scale: upscaling factor (1 for a restoration model).
        in_channels: image channels the model reads (3 for RGB).
        out_channels: image channels it writes.
        size_multiple: tile sides and offsets should be multiples of this (the attention window, or what the
            architecture requires; 1 for plain convolutional nets). The model itself accepts any size.
        min_size: smallest input side the architecture runs on (the model pads smaller inputs itself).
        supports_fp16: float16 gives correct output (else run it in fp32 or bf16).
        supports_bf16: bfloat16 gives correct output.
        tiling: ``"supported"``, ``"discouraged"`` (works, but seams may show: tile only for memory) or
            ``"internal"`` (the model tiles itself; never tile it).
        tile_hint: recommended tile side in input pixels: ``None`` = pick one from the free memory (tile
            only when needed), ``0`` = never tile.
        source: ``"safetensors"`` (our weights + description), ``"lightning"`` (our training checkpoint) or
            ``"zoo"`` (a community checkpoint, loaded through spandrel).
        path: the file the weights were read from (for a run folder: the file chosen inside it).
        preset: our preset name (``"tiny"``, ``"light"``, ``"base"``), or ``None`` (custom or community).
        params: number of parameters.
        tags: architecture details from spandrel (e.g. ``("60dim", "w8")``); empty for ours.
        info: for our files, the stored description (training data, steps, metrics, ...); else empty.
    """

    architecture: str
    scale: int
    in_channels: int
    out_channels: int
    size_multiple: int
    min_size: int
    supports_fp16: bool
    supports_bf16: bool
    tiling: Literal["supported", "discouraged", "internal"]
    tile_hint: int | None
    source: Literal["safetensors", "lightning", "zoo"]
    path: Path
    preset: str | None = None
    params: int = 0
    tags: tuple[str, ...] = ()
    info: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def name(self) -> str:
        """Short label for tables and logs: ``"srformer tiny x4"``, ``"SwinIR x4"``."""
        what = f"srformer {self.preset}" if self.architecture == "srformer" and self.preset else self.architecture
        return f"{what} x{self.scale}"

    @property
    def precisions(self) -> tuple[str, ...]:
        """The ``--precision`` values that are safe for this model: always ``"fp32"``, then bf16/fp16."""
        return ("fp32",) + (("bf16",) if self.supports_bf16 else ()) + (("fp16",) if self.supports_fp16 else ())


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run (eval mode, on the requested device) and its :class:`ModelDescriptor`.

    ``model(x)`` maps a ``(B, in_channels, H, W)`` float tensor in ``[0, 1]`` to ``(B, out_channels, s*H,
    s*W)`` for any ``H, W >= 1``; it has ``scale`` and ``window_size`` (= ``size_multiple``) attributes.
    """

    model: nn.Module
    descriptor: ModelDescriptor


class ZooModel(nn.Module):
    """A community model (from spandrel) behind this project's model interface.

    Pads the input (reflect, then replicate) to the architecture's size requirements and crops the output
    back, so any input size works (as with :class:`SRFormer`); does not clamp. ``net`` is the original module.
    """

    def __init__(self, net: nn.Module, scale: int, size_multiple: int, min_size: int, square: bool = False) -> None:
        super().__init__()
        self.net = net
        self.scale = scale
        self.window_size = size_multiple
        self.min_size = min_size
        self.square = square

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        target_h = max(self.min_size, -(-height // self.window_size) * self.window_size)
        target_w = max(self.min_size, -(-width // self.window_size) * self.window_size)
        if self.square:
            target_h = target_w = max(target_h, target_w)
        pad_h, pad_w = target_h - height, target_w - width
        if pad_h or pad_w:
            reflect_h, reflect_w = min(pad_h, height - 1), min(pad_w, width - 1)
            x = F.pad(x, (0, reflect_w, 0, reflect_h), mode="reflect")
            x = F.pad(x, (0, pad_w - reflect_w, 0, pad_h - reflect_h), mode="replicate")
        out = self.net(x)
        return out[..., : height * self.scale, : width * self.scale]


def load_any(path: str | os.PathLike, device: str | torch.device = "cpu", scale: int | None = None) -> LoadedModel:
    """Load any model file people have; returns the model (eval mode, on ``device``) and its descriptor.

    Args:
        path: our ``.safetensors`` (architecture embedded, or in the ``.json`` beside it), a Lightning
            ``.ckpt``, a training run folder, or a community checkpoint (``.pth``, ``.pt``, ``.ckpt``,
            ``.safetensors`` in the official layout of SwinIR, Real-ESRGAN, SPAN, HAT, DAT, ...; needs
            ``pip install "srformer[zoo]"``).
        device: where to put the model.
        scale: if given, the model must upscale by this factor.

    Raises:
        CheckpointError: with one sentence: missing file, unsafe pickle, unknown architecture, weights that
            do not fit, wrong scale, spandrel missing for a community checkpoint.

    Example::

        loaded = load_any("SwinIR-light_x4.pth", device="cuda")
        sr = loaded.model(lr)                      # any size, [0, 1] in and out
        loaded.descriptor.scale, loaded.descriptor.size_multiple, loaded.descriptor.precisions
    """
    path = resolve_model_path(path)
    if path.suffix == ".json" and path.with_suffix(".safetensors").is_file():
        path = path.with_suffix(".safetensors")
    if path.suffix == ".safetensors":
        info, state = _read_safetensors(path)
        source = "safetensors"
    else:
        info, state = _read_torch_checkpoint(path)
        source = "lightning"
    loaded = _load_zoo(state, path) if info is None else _load_ours(info, state, path, source)
    found = loaded.descriptor.scale
    if scale is not None and found != scale:
        raise CheckpointError(f"{path.name} is a x{found} model, but x{scale} was asked for")
    loaded.model.to(device).eval()
    return loaded


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", scale: int | None = None) -> nn.Module:
    """The model of :func:`load_any` without its descriptor (an :class:`SRFormer` for our own files)."""
    return load_any(path, device=device, scale=scale).model


def _load_ours(info: dict[str, Any], state: dict[str, torch.Tensor], path: Path, source: str) -> LoadedModel:
    arch = dict(info["arch"])
    model = _build(arch, path)
    _check_fits(model, state, path)
    model.load_state_dict(state, strict=True)
    channels = int(arch.get("in_channels", 3))
    descriptor = ModelDescriptor(
        architecture="srformer",
        scale=model.scale,
        in_channels=channels,
        out_channels=channels,
        size_multiple=model.window_size,
        min_size=1,
        supports_fp16=True,
        supports_bf16=True,
        tiling="supported",
        tile_hint=None,
        source=source,  # type: ignore[arg-type]
        path=path,
        preset=preset_of(arch),
        params=sum(p.numel() for p in model.parameters()),
        info={k: v for k, v in info.items() if k != "arch"},
    )
    return LoadedModel(model, descriptor)


#: Keys under which community checkpoints keep their weights, preferred first (EMA weights over raw ones).
_WRAPPER_KEYS = ("params_ema", "params-ema", "params", "state_dict", "model_state_dict", "model", "net", "netG", "g")


def unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The tensors of a community checkpoint: unwrap ``params_ema``/``params``/``state_dict``/... and a
    single-key wrapper, strip a common ``module.``/``netG.`` prefix; non-tensor entries are dropped."""
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None and len(obj) == 1 and isinstance(next(iter(obj.values())), Mapping):
            inner = next(iter(obj.values()))
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        return {}
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for prefix in ("module.", "netG."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _spandrel_loader() -> Any:
    try:
        import spandrel
    except ImportError:
        return None
    try:
        import spandrel_extra_arches

        spandrel_extra_arches.install(ignore_duplicates=True)  # SRFormer (paper), ...
    except ImportError:
        pass
    return spandrel.ModelLoader(device="cpu")


def _load_zoo(checkpoint: Any, path: Path) -> LoadedModel:
    """A community checkpoint through spandrel (tensors already read safely)."""
    state = unwrap_state_dict(checkpoint)
    if not state:
        raise CheckpointError(f"{path.name} holds no weights (no tensors found in it)")
    ours = guess_arch(state) if "stem.0.weight" in state and any(k.startswith("groups.") for k in state) else None
    if ours:
        raise CheckpointError(
            f"{path.name} holds srformer weights (they look like {ours}) but not their architecture; load the "
            ".safetensors written by save_weights (or keep its .json beside it), or a Lightning .ckpt"
        )
    loader = _spandrel_loader()
    if loader is None:
        raise CheckpointError(
            f"{path.name} is not an srformer file; loading community checkpoints (SwinIR, Real-ESRGAN, SPAN, "
            f"HAT, ...) needs the optional spandrel package: {ZOO_HINT}"
        )
    import spandrel

    try:
        with warnings.catch_warnings():  # architecture code of other projects: deprecation noise is not ours
            warnings.simplefilter("ignore", category=UserWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            found = loader.load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise CheckpointError(
            f"{path.name} is neither an srformer file nor a community architecture that spandrel recognises "
            f"({len(state)} tensors, e.g. {_listing(sorted(state))})"
        ) from None
    except Exception as err:  # an architecture detected, but its weights do not build it
        raise CheckpointError(
            f"{path.name} looks like a community checkpoint but does not load ({_first_line(err)})"
        ) from None
    if not isinstance(found, spandrel.ImageModelDescriptor) or found.purpose == "FaceSR":
        raise CheckpointError(
            f"{path.name} is a {found.architecture.name} model for {found.purpose}, not an image upscaler"
        )
    requirements = found.size_requirements
    window = getattr(found.model, "window_size", 1)
    window = window if isinstance(window, int) and window > 0 else 1
    multiple = _lcm(requirements.multiple_of, window)
    tiling = {1: "supported", 2: "discouraged", 3: "internal"}[found.tiling.value]
    model = ZooModel(found.model, found.scale, multiple, requirements.minimum, requirements.square)
    descriptor = ModelDescriptor(
        architecture=found.architecture.name,
        scale=found.scale,
        in_channels=found.input_channels,
        out_channels=found.output_channels,
        size_multiple=multiple,
        min_size=requirements.minimum,
        supports_fp16=found.supports_half,
        supports_bf16=found.supports_bfloat16,
        tiling=tiling,  # type: ignore[arg-type]
        tile_hint=0 if tiling == "internal" else None,
        source="zoo",
        path=path,
        params=sum(p.numel() for p in found.model.parameters()),
        tags=tuple(found.tags),
    )
    return LoadedModel(model, descriptor)


def _lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


def _find_in_run_folder(folder: Path) -> Path:
    for pattern in _RUN_FOLDER_PATTERNS:
        found = [p for p in folder.rglob(pattern) if p.is_file() and not p.name.startswith(".")]
        if found:
            # Several runs in one folder: the newest file wins.
            return max(found, key=lambda p: (p.stat().st_mtime, str(p)))
    raise CheckpointError(f"no model in folder {folder}: expected best.safetensors (+ .json) or last.ckpt inside it")


def _read_safetensors(path: Path) -> tuple[dict[str, Any] | None, dict[str, torch.Tensor]]:
    """``(description, tensors)``; the description is ``None`` for a community file (no srformer metadata)."""
    meta_path = path.with_suffix(".json")
    embedded = _safetensors_metadata(path)
    if meta_path.is_file():
        try:
            info = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"cannot read {meta_path.name} as JSON ({err})") from None
        where = meta_path.name
    elif METADATA_KEY in embedded:
        try:
            info = json.loads(embedded[METADATA_KEY])
        except json.JSONDecodeError as err:
            raise CheckpointError(f"the model description embedded in {path.name} is not JSON ({err})") from None
        where = f"the description embedded in {path.name}"
    elif embedded.get("format") == FORMAT:
        raise CheckpointError(f"{path.name} needs its architecture file {meta_path.name} beside it")
    else:
        info = None
        where = ""
    if info is not None:
        _check_description(info, where)
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises several types for malformed files
        raise CheckpointError(f"{path.name} is not a valid safetensors file ({_first_line(err)})") from None
    return info, state


def _safetensors_metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception:  # malformed: load_file below names the problem
        return {}


def _check_description(info: Any, where: str) -> None:
    if not isinstance(info, dict) or info.get("format") != FORMAT or not isinstance(info.get("arch"), dict):
        raise CheckpointError(f"{where} is not an srformer model description (no format/arch)")
    version = info.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{where} has format version {version}; this srformer reads up to {FORMAT_VERSION}, please upgrade"
        )
    arch = info["arch"]
    if "scale" in info and "scale" in arch and info["scale"] != arch["scale"]:
        raise CheckpointError(f"{where} contradicts itself: scale {info['scale']} but its arch says {arch['scale']}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _read_torch_checkpoint(path: Path) -> tuple[dict[str, Any] | None, Any]:
    """``(description, tensors)`` of our Lightning checkpoint, or ``(None, checkpoint)`` for a community one."""
    if not zipfile.is_zipfile(path) and not _looks_like_legacy_pickle(path):
        raise CheckpointError(
            f"{path.name} is not a model file (expected .safetensors, a Lightning .ckpt, a community .pth "
            "checkpoint or a run folder)"
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
    hyper = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    arch = hyper.get("arch") if isinstance(hyper, dict) else None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict) or not isinstance(arch, dict):
        return None, ckpt  # not ours: a community checkpoint (or nothing loadable; _load_zoo says which)
    state_dict = ckpt["state_dict"]
    prefix = "net_ema." if any(k.startswith("net_ema.") for k in state_dict) else "net."
    state = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not state:
        raise CheckpointError(f"{path.name} has no network weights (no net.* or net_ema.* entries in state_dict)")
    return {"format": FORMAT, "arch": dict(arch), "scale": arch.get("scale")}, state


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
