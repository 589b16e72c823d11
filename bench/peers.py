"""The models the benchmarks compare, by name: our presets and the peers, optionally with our bicubic skip.

Names (``--models`` of ``bench/equal_budget.py``, ``bench/equal_time.py``, ``bench/gpu_check.py``):

* ``light``, ``tiny``, ... : one of our presets as it is defined at run time (``srformer.models.PRESETS``);
* ``light:none`` : a preset with another cross-attention context (``none`` = MHSA only, ``overlap``,
  ``shallow``); ``light:overlap:2`` also sets the context window's overlap (pixels per side; the presets' 4),
  and ``light:overlap:4:2`` which groups have an MHCA block (every 2nd, counted back from the last:
  ``SRFormer(cross_every=...)``; 1 = every group, the presets' default but for ``light``'s 4);
* ``swinir-light``, ``srformer-light``, ``hat-s`` : the peers' published light/small configurations from
  ``spandrel`` / ``spandrel-extra-arches`` (``bench/model_cost.py``'s ``peer_models``), randomly initialised;
* ``swinir-light+skip`` (any peer + ``+skip``) : the peer wrapped in :class:`BicubicSkip`, the image residual
  our network has, to separate the architecture from the skip.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_cost import peer_models  # noqa: E402

from srformer.handle import model_upscaler  # noqa: E402
from srformer.models import PRESETS, SRFormer, preset_settings  # noqa: E402
from srformer.scoring import Upscaler  # noqa: E402

PEER_NAMES = {"swinir-light": "SwinIR-light", "srformer-light": "SRFormer-light (paper)", "hat-s": "HAT-S"}
SKIP = "+skip"


class BicubicSkip(nn.Module):
    """A peer plus the bicubic upscale of its input, exactly as our network's ``image_residual``::

        out = peer(x) - peer.mean + F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False)

    The spandrel SwinIR/SRFormer/HAT forwards normalise the input as ``(x - mean) * img_range`` and end with
    ``body / img_range + mean`` (``mean``: the DIV2K RGB mean, 0.4488, 0.4371, 0.4040). The wrapper takes
    that ``mean`` back out of the output, so the peer's body predicts the residual over bicubic just as our
    upsampler does (our body sees ``x - 0.5`` and adds no constant back when the skip is on); the input
    normalisation is left as the peer has it. The peer's last convolution (the one of its upsampler) is
    zero-initialised, like ours, so the wrapped model starts as exactly the bicubic upscale.
    """

    def __init__(self, peer: nn.Module, scale: int) -> None:
        super().__init__()
        self.peer = peer
        self.scale = scale
        # The output convolution: the last one registered (the upsampler's for "pixelshuffledirect", conv_last
        # after the upsampler for "pixelshuffle"); tests check that the wrapped model starts as bicubic.
        last = [m for m in peer.modules() if isinstance(m, nn.Conv2d)][-1]
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.peer(x)
        mean = getattr(self.peer, "mean", None)
        if isinstance(mean, Tensor):
            out = out - mean.to(out)
        return out + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)


def split(name: str) -> tuple[str, bool]:
    """``("swinir-light", True)`` for ``swinir-light+skip``."""
    return (name[: -len(SKIP)], True) if name.endswith(SKIP) else (name, False)


def is_ours(name: str) -> bool:
    return split(name)[0] not in PEER_NAMES


def architecture(name: str) -> dict:
    """What ``name`` builds: a peer's name (and the skip), or our preset's settings with the context override.

    Saved with each result, so that a result trained before a preset changed is not mistaken for the
    current preset's.
    """
    base, skip = split(name)
    if base in PEER_NAMES:
        return {"peer": PEER_NAMES[base], "skip": "bicubic"} if skip else {"peer": PEER_NAMES[base]}
    preset, context, overlap, every = _our_parts(name)
    numbers_ok = all(part == "" or (part.isdigit() and int(part) > 0) for part in (overlap, every))
    if skip or preset not in PRESETS or not numbers_ok or name.count(":") > 3:
        raise SystemExit(
            f"error: unknown model {name!r}; use a preset ({', '.join(PRESETS)}), preset:context, "
            f"preset:context:overlap[:every], a peer ({', '.join(PEER_NAMES)}) or a peer{SKIP}"
        )
    settings = preset_settings(preset, context or None)
    if overlap:
        settings["context_overlap"] = int(overlap)
    if every:  # only when named: the architectures recorded by earlier runs stay as they were
        settings["cross_every"] = int(every)
    if settings["context"] == "none":  # no MHCA block to place: the same network whatever the preset says
        settings.pop("cross_every", None)
    return settings


def _our_parts(name: str) -> tuple[str, str, str, str]:
    """``preset[:context[:overlap[:every]]]`` -> (preset, context, overlap, every), the missing parts empty."""
    preset, context, overlap, every, *_ = [*name.split(":"), "", "", "", ""]
    return preset, context, overlap, every


def build(name: str, scale: int) -> nn.Module:
    """A freshly initialised model by name (see the module docstring)."""
    settings = architecture(name)
    if "peer" in settings:
        peer = peer_models(scale)[settings["peer"]]
        return BicubicSkip(peer, scale) if "skip" in settings else peer
    return SRFormer(scale=scale, **settings)


def display_name(name: str) -> str:
    base, skip = split(name)
    if base in PEER_NAMES:
        return PEER_NAMES[base].replace(" (paper)", "") + (" + bicubic skip" if skip else "")
    preset, context, overlap, named_every = _our_parts(name)
    context = context or PRESETS[preset]["context"]
    every = int(named_every or PRESETS[preset].get("cross_every", 1))
    where = f", every {every} groups" if every > 1 else (", every group" if named_every else "")
    cross = f"MHSA + MHCA, {context}" + (f" {overlap}" if overlap else "") + where
    return f"srformer {preset} ({'MHSA only' if context == 'none' else cross})"


def peer_upscaler(model: nn.Module) -> Upscaler:
    """Spandrel's SwinIR/SRFormer/HAT pad the input to their window size themselves (and crop the output)."""

    @torch.no_grad()
    def upscale(lr: Tensor) -> Tensor:
        return model(lr).float().clamp(0.0, 1.0)

    return upscale


def upscaler(model: nn.Module) -> Upscaler:
    """How a benchmark scores ``model``: our inference path for ours, the plain forward for peers (fp32)."""
    return model_upscaler(model) if isinstance(model, SRFormer) else peer_upscaler(model)
