"""Save one batch of degraded training patches as PNGs, to look at what a degradation config makes.

    srformer preview-degradation --degradation photo --data ../shared/data/train/BSD400 --out preview

Takes random HR patches from the training folder (as the data module does), degrades them with
``configs/degradation/<name>.yaml`` exactly as training would for one step, and writes ``NNN_lr.png``,
``NNN_hr.png`` and ``grid.png`` (each LR enlarged ``scale`` times with nearest neighbours, beside its HR).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from srformer.data.cache import ImageCache, default_cache_dir
from srformer.data.datasets import PatchDataset, find_pairs
from srformer.data.degradations import RealWorldDegradation
from srformer.errors import DataError
from srformer.imageio import write_image

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def degradation_config(name: str, scale: int, seed: int = 0) -> dict | None:
    """``configs/degradation/<name>.yaml`` composed as train.py does for ``scale`` and ``seed``, resolved to
    plain values (``None`` for ``bicubic``): what :func:`load_degradation` builds, and a record of it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    known = sorted(p.stem for p in (CONFIGS / "degradation").glob("*.yaml"))
    if name not in known:
        raise DataError(f"unknown degradation config {name!r}; choose one of {', '.join(known)}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose("train.yaml", overrides=[f"degradation={name}", f"scale={scale}", f"seed={seed}"])
    GlobalHydra.instance().clear()
    return OmegaConf.to_container(cfg.degradation, resolve=True) if cfg.degradation is not None else None  # type: ignore[return-value]


def load_degradation(name: str, scale: int, seed: int = 0) -> RealWorldDegradation | None:
    """Build ``configs/degradation/<name>.yaml`` for ``scale`` (``None`` for ``bicubic``)."""
    from hydra.utils import instantiate

    config = degradation_config(name, scale, seed)
    return instantiate(config, _convert_="all") if config is not None else None


def side_by_side(lr: Tensor, hr: Tensor) -> Tensor:
    """(B, 3, p, p) LR and (B, 3, p*s, p*s) HR -> one (3, B*p*s, 2*p*s) image: enlarged LR | HR per row."""
    enlarged = F.interpolate(lr, size=hr.shape[-2:], mode="nearest")
    return torch.cat([enlarged, hr], dim=-1).permute(1, 0, 2, 3).flatten(1, 2)


def write_preview(
    degradation_name: str,
    data: str | Path,
    out: Path,
    scale: int = 4,
    patch_size: int = 32,
    count: int = 16,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> int:
    """Write ``count`` degraded LR patches of ``data``'s images, their HR and a grid into ``out``; returns the count."""
    degradation = load_degradation(degradation_name, scale, seed)
    cache = ImageCache(Path(cache_dir) if cache_dir else default_cache_dir() / "decoded")
    items = cache.prepare_all(find_pairs(data, scale), scale, what=str(data))
    patches = PatchDataset(items, scale, patch_size, patches_per_image=1, augment=True)
    torch.manual_seed(seed)
    indices = torch.randperm(len(patches))[:count].tolist()
    batch = patches.__getitems__(indices)
    lr = batch["lr"] if degradation is None else degradation(batch["hr"], seed=seed)
    for index, (lr_patch, hr_patch) in enumerate(zip(lr, batch["hr"], strict=True)):
        write_image(out / f"{index:03d}_lr.png", lr_patch.permute(1, 2, 0).numpy(), overwrite=True)
        write_image(out / f"{index:03d}_hr.png", hr_patch.permute(1, 2, 0).numpy(), overwrite=True)
    write_image(out / "grid.png", side_by_side(lr, batch["hr"]).permute(1, 2, 0).numpy(), overwrite=True)
    return len(indices)
