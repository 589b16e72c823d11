"""One typed handle for "a model, ready to run", and the one resolver of model references and scales.

Every ``--model`` value and every ``--scale`` walks through :func:`open_model`, from the command line (and the
benches, the web page, the dataset jobs) to the weights::

    from srformer.handle import open_model

    handle = open_model(None, scale=2)  # the shipped default for x2 (srformer.shipped.DEFAULT_BY_SCALE)
    handle = open_model("x4_tiny")  # a shipped name (the file stem works too: "srformer_x4_tiny")
    handle = open_model("runs/2026-11-30/")  # a file or a training run folder (ours, or a community .pth)
    handle = open_model("entity/project/weights-abc123:best", wandb_mode="online")  # a W&B artifact
    handle = open_model("bicubic", scale=3)  # MATLAB-compatible bicubic (srformer.imresize)
    sr = handle(lr)  # (N, 3, H, W) float in [0, 1], any H and W -> (N, 3, sH, sW), not clamped

A :class:`ModelHandle` knows its scale, the size multiple its tiles align to, the precisions it gives correct
output in, its tiling hint and an estimate of its peak memory per input pixel (what the auto tile size is
sized from), and refuses what it cannot do with one sentence (:class:`~srformer.errors.CheckpointError` for a
reference or a scale, :class:`~srformer.inference.InferenceError` for a precision). ``"auto"`` is not a model
but a choice per input file (:mod:`srformer.autoselect`): :func:`open_model` refuses it, and the upscaling
pipeline resolves it file by file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from srformer import shipped
from srformer.checkpoint import LoadedModel, ModelDescriptor, load_any
from srformer.errors import CheckpointError, SRFormerError
from srformer.imresize import imresize
from srformer.inference import (
    PRECISIONS,
    auto_tile_size,
    check_model_precision,
    check_precision,
    upscale_tensor,
)
from srformer.models.network import SRFormer
from srformer.pixels import to_uint8

#: The reference for MATLAB-compatible bicubic upscaling, the classical protocol's baseline.
BICUBIC = "bicubic"

#: The reference that chooses a shipped model per input file (:mod:`srformer.autoselect`).
AUTO = "auto"

#: Peak resident memory of a forward pass per input pixel per feature channel (fp32), measured on the CPU
#: with ru_maxrss (2 threads, glibc keeping freed memory, 2026-11-30): this network (the shipped x4 model,
#: C = 48) 87 at 256x256 and 320x320 inputs, since its shift mask covers the border windows only (earlier
#: 110); SwinIR-light through spandrel (C = 60) 144 / 122 at 128 / 192 px, the value used for every other
#: architecture, whose memory this project has not measured.
_PEAK_BYTES_PER_PIXEL_CHANNEL = {"srformer": 90}
_PEAK_BYTES_PER_PIXEL_CHANNEL_OTHER = 145

Tile = int | Literal["auto"] | None


class MatlabBicubic(nn.Module):
    """MATLAB ``imresize(lr, scale, 'bicubic')`` of the uint8 levels of ``lr``, as the published bicubic
    baselines compute it (:func:`srformer.imresize.imresize`; not torch's bicubic, whose kernel and borders
    differ). ``(N, C, H, W)`` float in [0, 1] -> ``(N, C, sH, sW)`` float32 on the levels ``k / 255``: the
    input is rounded to 8 bits first, so a 16-bit image loses its extra bits."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.window_size = 1

    def forward(self, lr: Tensor) -> Tensor:
        return imresize(to_uint8(lr), scale=self.scale).float().div(255.0)


@dataclass(frozen=True, eq=False)
class ModelHandle:
    """A model ready to run, and what a caller needs to know to run it well.

    Call it on ``(N, 3, H, W)`` float tensors in [0, 1] of any size: the model pads to its size multiple (and
    minimum size) and crops its output itself; the result is ``(N, 3, s*H, s*W)``, not clamped. For tiles,
    self-ensemble and precision, run it through :func:`srformer.inference.upscale_tensor` (whole results) or
    :func:`srformer.upscaling.upscale_file` (files).

    Attributes:
        name: what it is, for tables and logs: ``"srformer small x4"``, ``"SwinIR x4"``, ``"bicubic x4"``.
        source: where it came from, as a person would name it: ``"shipped x4"``, a file path, a W&B
            artifact version (``entity/project/weights-abc:v3``), or ``"bicubic"``.
        scale: upscaling factor.
        size_multiple: tile sides and offsets are multiples of it (the attention window; 1 for bicubic).
        precisions: the ``--precision`` values it gives correct output in, ``"fp32"`` first.
        tile_hint: ``None``: pick a tile from the free memory; ``0``: never tile (bicubic, models that tile
            themselves).
        bytes_per_pixel: estimated peak memory of a forward pass per input pixel in fp32 (bytes).
        module: the ``nn.Module`` that computes it, in eval mode on ``device``.
        device: where it runs.
        descriptor: what the loader found (:class:`srformer.checkpoint.ModelDescriptor`); ``None`` for
            bicubic and for a module wrapped by :meth:`wrap`.
        artifact: the W&B artifact it was downloaded from (for ``run.use_artifact``), else ``None``.
    """

    name: str
    source: str
    scale: int
    size_multiple: int
    precisions: tuple[str, ...]
    tile_hint: int | None
    bytes_per_pixel: float
    module: nn.Module
    device: torch.device
    descriptor: ModelDescriptor | None = None
    artifact: Any = None

    def __call__(self, lr: Tensor) -> Tensor:
        """``(N, 3, H, W)`` float in [0, 1] -> ``(N, 3, s*H, s*W)`` float, not clamped."""
        return self.module(lr)

    @property
    def path(self) -> Path | None:
        """The file the weights were read from (for a run folder, the file chosen in it); ``None`` for bicubic."""
        return None if self.descriptor is None else self.descriptor.path

    @classmethod
    def wrap(
        cls, module: nn.Module, *, name: str | None = None, architecture: str | None = None, source: str = "module"
    ) -> ModelHandle:
        """A handle for a module built in this process (a model being trained, a bench's peer network).

        ``module`` (in eval mode) needs a ``scale`` attribute; ``window_size`` (default 1) is its size multiple. Its memory
        estimate is this network's when it is an :class:`~srformer.models.SRFormer` (or ``architecture`` is
        ``"srformer"``), else the conservative one of other architectures. It runs where its parameters are."""
        architecture = architecture or ("srformer" if isinstance(module, SRFormer) else type(module).__name__)
        parameter = next(module.parameters(), None)
        return cls(
            name=name or f"{architecture} x{int(module.scale)}",
            source=source,
            scale=int(module.scale),
            size_multiple=int(getattr(module, "window_size", 1)),
            precisions=tuple(PRECISIONS),
            tile_hint=None,
            bytes_per_pixel=peak_bytes_per_pixel(module, architecture),
            module=module,
            device=torch.device("cpu") if parameter is None else parameter.device,
        )

    def check_precision(self, precision: str, device: torch.device | None = None) -> None:
        """Raise :class:`~srformer.inference.InferenceError` (one sentence) when ``precision`` is unknown,
        unsupported on the device, or not one this model gives correct output in."""
        check_precision(precision, device or self.device)
        check_model_precision(precision, self.name, self.precisions)

    def at_scale(self, scale: int | None) -> ModelHandle:
        """This handle for upscaling by ``scale`` (``None``: its own): itself, bicubic at that scale, or
        :class:`CheckpointError` naming both scales."""
        check_scale(scale)
        if scale is None or scale == self.scale:
            return self
        if self.source == BICUBIC:
            return bicubic(scale, self.device)
        where = self.path.name if self.path is not None else self.source
        raise CheckpointError(f"{where} is a x{self.scale} model, but x{scale} was asked for ({self.name})")

    def tile_for(self, tile: Tile, precision: str = "fp32") -> Tile:
        """The tile to run with when ``tile`` is asked for (``"auto"``, a side in input pixels, ``None``/0):
        ``None`` for a model that must not be tiled; on the CPU ``"auto"`` becomes a side sized from the free
        memory now (:func:`srformer.inference.auto_tile_size`); on a GPU it stays ``"auto"`` and is sized
        per image, when the memory the previous image held is free again."""
        if self.tile_hint == 0 or not tile:
            return None
        if tile == "auto" and self.device.type == "cpu":
            return auto_tile_size(self, self.device, precision)
        return tile

    def upscale(self, lr: Tensor, tile: Tile = None, tta: bool = False, precision: str = "fp32") -> Tensor:
        """``lr`` ``(N, 3, H, W)`` in [0, 1] -> ``(N, 3, sH, sW)`` float32 in [0, 1] (clamped), through
        :func:`srformer.inference.upscale_tensor`: tiles, self-ensemble (``tta``) and precision checked."""
        self.check_precision(precision, lr.device)
        return upscale_tensor(self, lr, tile=self.tile_for(tile, precision), tta=tta, precision=precision)


def peak_bytes_per_pixel(module: nn.Module, architecture: str) -> float:
    """Estimated peak memory (bytes) of ``module``'s forward pass per input pixel in fp32: a measured amount
    per feature channel (this network's, or the conservative one measured on SwinIR-light for any other
    ``architecture``) times the width of its feature maps (:func:`feature_channels`)."""
    per_channel = _PEAK_BYTES_PER_PIXEL_CHANNEL.get(architecture, _PEAK_BYTES_PER_PIXEL_CHANNEL_OTHER)
    return float(per_channel * feature_channels(module))


def feature_channels(module: nn.Module) -> int:
    """Width of a model's feature maps, which its activations' memory scales with: the output channels of its
    first convolution (the stem of every SR network that :func:`srformer.checkpoint.load_any` loads, ours and
    spandrel's alike); 64 for a model without one."""
    first = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return 64 if first is None else int(first.out_channels)


def check_scale(scale: int | None) -> None:
    """Raise :class:`SRFormerError` unless ``scale`` is ``None`` or a positive integer."""
    if scale is not None and (not isinstance(scale, int) or isinstance(scale, bool) or scale < 1):
        raise SRFormerError(f"the scale must be a positive integer, got {scale!r}")


def bicubic(scale: int | None = None, device: str | torch.device = "cpu") -> ModelHandle:
    """MATLAB-compatible bicubic upscaling by ``scale`` (x4 when ``None``) as a handle (:class:`MatlabBicubic`)."""
    check_scale(scale)
    scale = 4 if scale is None else scale
    device = torch.device(device)
    return ModelHandle(
        name=f"bicubic x{scale}",
        source=BICUBIC,
        scale=scale,
        size_multiple=1,
        precisions=("fp32",),
        tile_hint=0,  # whole images: cheap, and its uint8 rounding is the protocol's
        bytes_per_pixel=3 * 8 * 3 * scale**2,  # three float64 planes of the output per input pixel, twice over
        module=MatlabBicubic(scale).to(device),
        device=device,
    )


def from_loaded(loaded: LoadedModel, source: str, artifact: Any = None) -> ModelHandle:
    """The handle of a model :func:`srformer.checkpoint.load_any` has loaded, ``source`` saying where from."""
    descriptor = loaded.descriptor
    parameter = next(loaded.model.parameters(), None)
    return ModelHandle(
        name=descriptor.name,
        source=source,
        scale=descriptor.scale,
        size_multiple=descriptor.size_multiple,
        precisions=descriptor.precisions,
        tile_hint=descriptor.tile_hint,
        bytes_per_pixel=peak_bytes_per_pixel(loaded.model, descriptor.architecture),
        module=loaded.model,
        device=torch.device("cpu") if parameter is None else parameter.device,
        descriptor=descriptor,
        artifact=artifact,
    )


def open_model(
    reference: str | Path | None,
    *,
    scale: int | None = None,
    device: str | torch.device = "cpu",
    wandb_mode: str = "offline",
) -> ModelHandle:
    """The model a reference names, loaded on ``device`` and checked against ``scale``.

    Args:
        reference: ``None`` (the shipped default for ``scale``, x4 when ``scale`` is ``None``:
            :data:`srformer.shipped.DEFAULT_BY_SCALE`); ``"bicubic"``; a shipped name (``x4``, ``x4_tiny``,
            ``x3``, ``x2``, ``real``, or a file stem such as ``srformer_x4_real``); a file or run folder (ours,
            or a community checkpoint through spandrel: :func:`srformer.checkpoint.load_any`); a W&B artifact
            reference (``[entity/]project/name:alias``; downloaded, so ``wandb_mode`` must not be offline). An
            existing path always wins over a name.
        scale: the upscaling factor asked for; a model of another scale is refused. ``None``: the model's own.
        device: where to run it.
        wandb_mode: ``"offline"`` (no network: artifact references are refused), ``"online"`` or ``"disabled"``.

    Raises:
        CheckpointError: an unknown name, a missing or unreadable file, a shipped model not installed, an
            artifact that cannot be fetched, or a model of another scale (one sentence each).
        SRFormerError: ``"auto"`` (a choice per input file, not a model), or a scale that is not positive.
    """
    check_scale(scale)
    device = torch.device(device)
    if reference is None:
        name = shipped.DEFAULT_BY_SCALE.get(4 if scale is None else scale)
        path = shipped.default_model(scale)  # no shipped model of that scale, or not installed: one sentence
        return from_loaded(load_any(path, device=device, scale=scale), f"shipped {name}")
    text = str(reference).strip()
    if not text:
        raise CheckpointError("the model reference is empty; give a shipped name, a file, a run folder or 'bicubic'")
    if text.lower() == BICUBIC and not Path(text).exists():
        return bicubic(scale, device)
    if text.lower() == AUTO and not Path(text).exists():
        raise SRFormerError(
            "'auto' chooses a model per input file (srformer.autoselect.choose_model); open the reference it"
            " chooses, or name a model"
        )
    return _open_path(text, scale, device, wandb_mode)


def _open_path(text: str, scale: int | None, device: torch.device, wandb_mode: str) -> ModelHandle:
    """A path, a shipped name or a W&B artifact reference, loaded."""
    from srformer.tracking import artifact_reference, resolve_model_source

    if not Path(text).exists() and shipped.is_name(text):
        name = shipped.name_of(text)
        return from_loaded(load_any(shipped.model_path(name), device=device, scale=scale), f"shipped {name}")
    if artifact_reference(text) is not None:
        found = resolve_model_source(text, wandb_mode)
        loaded = load_any(found.path, device=device, scale=scale)
        return from_loaded(loaded, found.artifact_version or text, found.artifact)
    if not Path(text).exists():
        names = ", ".join(shipped.names())
        raise CheckpointError(f"model file not found: {text} (nor is it a shipped model: {names}, or {BICUBIC})")
    return from_loaded(load_any(text, device=device, scale=scale), text)


def model_upscaler(model: ModelHandle | nn.Module, tile: Tile = None, tta: bool = False) -> Callable[[Tensor], Tensor]:
    """``lr -> sr`` for scoring (:data:`srformer.scoring.Upscaler`): ``model`` on whole images (or ``tile``
    sided tiles aligned to its size multiple), optionally with the x8 self-ensemble (the "+" rows of
    EDSR/SwinIR tables), clamped to [0, 1]. ``model``: a handle, or a module built in this process."""
    handle = model if isinstance(model, ModelHandle) else ModelHandle.wrap(model)
    if tta and handle.source == BICUBIC:
        raise SRFormerError("--tta is for models; bicubic upscaling is the same for every flip and rotation")

    @torch.no_grad()
    def upscale(lr: Tensor) -> Tensor:
        return handle.upscale(lr, tile=tile, tta=tta)

    return upscale


def matlab_bicubic_upscaler(scale: int) -> Callable[[Tensor], Tensor]:
    """The classical protocol's bicubic baseline as an upscaler: :func:`model_upscaler` of :func:`bicubic`."""
    return model_upscaler(bicubic(scale))
