"""The models a server offers, by the names its clients use, and how a request's ``model``/``scale`` pick one.

A client names a model, never a path: ``auto`` (the shipped model :func:`srformer.autoselect.choose_model`
picks for each image), a shipped model's name (``x4``, ``x4_small``, ``x4_tiny``, ``x3``, ``x3_small``, ``x2``,
``x2_tiny``, ``real``, ``real_small``: those installed), ``bicubic`` (the baseline, at any scale), or the name
the server gave a file or run folder named at start-up with ``--models`` (its file stem or folder name, made
unique). Only the server maps names to files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srformer.web import engine
from srformer.web.uploads import UploadError

AUTO = "auto"


@dataclass(frozen=True)
class Offer:
    """A model the server offers.

    Attributes:
        name: what clients call it.
        reference: what the server opens (a shipped name, ``bicubic`` or a path); ``""`` for ``auto``.
        scale: its upscaling factor; ``None`` for ``auto`` and ``bicubic`` (any scale offered).
        kind: ``"auto"``, ``"shipped"``, ``"bicubic"`` or ``"file"``.
        description: a short label for the page.
    """

    name: str
    reference: str
    scale: int | None
    kind: str
    description: str

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "scale": self.scale, "kind": self.kind, "description": self.description}


class Catalog:
    """The offered models by name, and the models opened at start-up (the ``--models`` ones) by
    ``(reference, scale)``."""

    def __init__(self, offers: list[Offer], opened: dict[tuple[str, int], Any]) -> None:
        self.offers = {offer.name: offer for offer in offers}
        self.opened = opened

    @classmethod
    def build(cls, model_paths: list[Path] | tuple[Path, ...] = (), device: str | None = None) -> Catalog:
        """``auto`` (when a shipped model is installed), the shipped models installed here, each of
        ``model_paths`` (opened once now, so a file that is not a model stops the server at start-up with one
        sentence), and ``bicubic``."""
        shipped = engine.shipped_models()
        offers: list[Offer] = []
        if shipped:
            scales = ", ".join(f"x{s}" for s in sorted({scale for scale, _ in shipped.values()}))
            offers.append(Offer(AUTO, "", None, "auto", f"picks a shipped model for each image ({scales})"))
        offers += [Offer(name, name, scale, "shipped", what) for name, (scale, what) in shipped.items()]
        opened: dict[tuple[str, int], Any] = {}
        for path in model_paths:
            handle = engine.open_handle(str(path), device=device)
            name = base = path.stem if path.is_file() else path.name
            count = 1
            while any(offer.name == name for offer in offers):
                count += 1
                name = f"{base}-{count}"
            offers.append(Offer(name, str(path), handle.scale, "file", f"{handle.name} ({path.name})"))
            opened[(str(path), handle.scale)] = handle
        offers.append(Offer(engine.BICUBIC, engine.BICUBIC, None, "bicubic", "bicubic interpolation, the baseline"))
        return cls(offers, opened)

    def scales(self) -> list[int]:
        return sorted({offer.scale for offer in self.offers.values() if offer.scale is not None})

    def as_json(self) -> list[dict[str, Any]]:
        return [offer.as_json() for offer in self.offers.values()]

    def pick(self, model: str | None, scale: str | None) -> tuple[Offer, int]:
        """The offer and scale a request's form fields ask for (empty or absent: ``auto``, and the model's own
        scale or the default one); raises :class:`UploadError` (400) with one sentence."""
        name = (model or "").strip() or AUTO
        offer = self.offers.get(name)
        if offer is None:
            shown = name if len(name) <= 40 else name[:40] + "..."
            raise UploadError(f"there is no model {shown!r} here; choose one of {', '.join(self.offers) or 'none'}")
        scales = self.scales() if offer.scale is None else [offer.scale]
        wanted = (scale or "").strip()
        if not wanted:
            default = engine.default_scale()
            return offer, offer.scale or (default if default in scales else scales[0])
        if not wanted.isdigit() or int(wanted) not in scales:
            shown = wanted if len(wanted) <= 10 else wanted[:10] + "..."
            if offer.scale is not None:
                raise UploadError(f"model {offer.name!r} upscales x{offer.scale}, not {shown!r}")
            raise UploadError(f"scale must be one of {', '.join(map(str, scales))}, not {shown!r}")
        return offer, int(wanted)
