"""Save one batch of degraded training patches as PNGs, to look at what a degradation config makes.

    python -m srformer.data.degradation_preview --degradation photo --data ../shared/data/train/BSD400 --out preview

Takes random HR patches from the training folder (as the data module does), degrades them with
``configs/degradation/<name>.yaml`` exactly as training would for one step, and writes ``NNN_lr.png``,
``NNN_hr.png`` and ``grid.png`` (each LR enlarged ``scale`` times with nearest neighbours, beside its HR).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from srformer.data.cache import ImageCache, default_cache_dir
from srformer.data.datasets import PatchDataset, find_pairs
from srformer.data.degradations import RealWorldDegradation
from srformer.errors import DataError, exit_on_user_error
from srformer.imageio import write_image

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def load_degradation(name: str, scale: int, seed: int = 0) -> RealWorldDegradation | None:
    """Build ``configs/degradation/<name>.yaml`` for ``scale`` (``None`` for ``bicubic``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    known = sorted(p.stem for p in (CONFIGS / "degradation").glob("*.yaml"))
    if name not in known:
        raise DataError(f"unknown degradation config {name!r}; choose one of {', '.join(known)}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose("train.yaml", overrides=[f"degradation={name}", f"scale={scale}", f"seed={seed}"])
    GlobalHydra.instance().clear()
    return instantiate(cfg.degradation, _convert_="all") if cfg.degradation is not None else None


def side_by_side(lr: Tensor, hr: Tensor) -> Tensor:
    """(B, 3, p, p) LR and (B, 3, p*s, p*s) HR -> one (3, B*p*s, 2*p*s) image: enlarged LR | HR per row."""
    enlarged = F.interpolate(lr, size=hr.shape[-2:], mode="nearest")
    return torch.cat([enlarged, hr], dim=-1).permute(1, 0, 2, 3).flatten(1, 2)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m srformer.data.degradation_preview", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--degradation", required=True, help="a config of configs/degradation/ (photo, realesrgan)")
    parser.add_argument("--data", required=True, help="folder of HR training images")
    parser.add_argument("--out", required=True, type=Path, help="folder for the PNGs")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=32, help="LR patch side (HR: patch size * scale)")
    parser.add_argument("--count", type=int, default=16, help="patches in the batch")
    parser.add_argument("--seed", type=int, default=0, help="picks the patches and the degradations")
    parser.add_argument("--cache-dir", default=None, help="decoded-image cache (default: ~/.cache/srformer)")
    args = parser.parse_args(argv)

    degradation = load_degradation(args.degradation, args.scale, args.seed)
    cache = ImageCache(Path(args.cache_dir) if args.cache_dir else default_cache_dir() / "decoded")
    items = cache.prepare_all(find_pairs(args.data, args.scale), args.scale, what=args.data)
    patches = PatchDataset(items, args.scale, args.patch_size, patches_per_image=1, augment=True)
    torch.manual_seed(args.seed)
    indices = torch.randperm(len(patches))[: args.count].tolist()
    batch = patches.__getitems__(indices)
    lr = batch["lr"] if degradation is None else degradation(batch["hr"], seed=args.seed)
    for index, (lr_patch, hr_patch) in enumerate(zip(lr, batch["hr"], strict=True)):
        write_image(args.out / f"{index:03d}_lr.png", lr_patch.permute(1, 2, 0).numpy(), overwrite=True)
        write_image(args.out / f"{index:03d}_hr.png", hr_patch.permute(1, 2, 0).numpy(), overwrite=True)
    write_image(args.out / "grid.png", side_by_side(lr, batch["hr"]).permute(1, 2, 0).numpy(), overwrite=True)
    print(f"{len(indices)} {args.degradation} LR patches and their HR in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
