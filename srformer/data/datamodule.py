"""The Lightning data module: training patches from HR folders, whole benchmark images for validation/test."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from srformer.data.benchmark_degradations import BICUBIC, check_degradation, prepare_all_degraded
from srformer.data.cache import ImageCache, default_cache_dir
from srformer.data.datasets import CachedPair, EvalDataset, PatchDataset, collate_patches, find_pairs
from srformer.data.photos import write_skimage_photos
from srformer.errors import DataError

log = logging.getLogger(__name__)


class SRDataModule(pl.LightningDataModule):
    """Training patches and benchmark sets for one scale.

    All I/O happens in :meth:`prepare_data` (decode every image once into the cache, make the bicubic LR
    images; rank 0 only) and :meth:`setup` (open the cache); the constructor only stores its arguments.

    Train batches: ``{"lr": float32 (B, 3, p, p), "hr": float32 (B, 3, p*s, p*s)}`` in [0, 1].
    Validation/test: one loader per set, in the order of :attr:`val_set_names` / :attr:`test_set_names`,
    batch size 1: ``{"lr": (1, 3, h, w), "hr": (1, 3, h*s, w*s), "name": [file name]}`` with HR cropped to
    a multiple of the scale and LR its MATLAB bicubic downscale at uint8 levels (or, for sets named in
    ``degradations``, the LR of a fixed benchmark degradation).

    Random real-world degradations of the training LR are made on the device by the LightningModule
    (``configs/degradation/``); the training batches here keep the bicubic LR.

    Args:
        train_dirs: folders of training images (HR-only, DIV2K ``DIV2K_train_HR`` or ``HR/`` +
            ``LR_bicubic/X{s}/`` layouts; see :func:`srformer.data.datasets.find_pairs`). One string is
            taken as one folder.
        scale: upscaling factor.
        val_dirs: validation sets, name -> folder (any layout above). Empty: no validation.
        test_dirs: test sets, name -> folder; ``None`` reuses ``val_dirs``.
        patch_size: LR patch side in pixels (the HR patch is ``patch_size * scale``).
        batch_size: training patches per batch (per GPU under DDP).
        patches_per_image: random patches taken from each training image per epoch.
        num_workers: DataLoader worker processes (0: load in the main process).
        cache_dir: where decoded images are cached; ``None``: :func:`~srformer.data.cache.default_cache_dir`.
        max_val_images: use only the first N images of each validation set (faster validation); ``None``: all.
        augment: apply the 8 dihedral transforms (flips and 90-degree rotations) to training patches.
        pin_memory: pin batches for faster host-to-GPU copies; ``None``: when CUDA is available.
        persistent_workers: keep training workers alive between epochs.
        skimage_photos_dir: if set, :meth:`prepare_data` first writes scikit-image's bundled photos into
            ``<dir>/train`` and ``<dir>/val`` (the offline quickstart data).
        degradations: validation/test set name -> benchmark degradation of its LR (``D1``, ``jpeg30``,
            ``noise10``, ``noise20``: :mod:`srformer.data.benchmark_degradations`); sets not named use bicubic. The
            same folder can thus be validated clean and degraded under two names.
    """

    def __init__(
        self,
        train_dirs: Sequence[str] | str,
        scale: int,
        val_dirs: Mapping[str, str] | None = None,
        test_dirs: Mapping[str, str] | None = None,
        patch_size: int = 48,
        batch_size: int = 16,
        patches_per_image: int = 16,
        num_workers: int = 4,
        cache_dir: str | None = None,
        max_val_images: int | None = None,
        augment: bool = True,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        skimage_photos_dir: str | None = None,
        degradations: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        if scale < 1 or patch_size < 1 or batch_size < 1 or patches_per_image < 1:
            raise ValueError("scale, patch_size, batch_size and patches_per_image must be positive")
        if max_val_images is not None and max_val_images < 1:
            raise ValueError(f"max_val_images must be positive or None, got {max_val_images}")
        self.train_dirs = [train_dirs] if isinstance(train_dirs, str) else list(train_dirs)
        self.scale = int(scale)
        self.val_dirs = dict(val_dirs or {})
        self.test_dirs = dict(self.val_dirs if test_dirs is None else test_dirs)
        self.patch_size = int(patch_size)
        self.batch_size = int(batch_size)
        self.patches_per_image = int(patches_per_image)
        self.num_workers = int(num_workers)
        self.cache_dir = cache_dir
        self.max_val_images = max_val_images
        self.augment = augment
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.skimage_photos_dir = skimage_photos_dir
        self.degradations = {name: check_degradation(d) for name, d in (degradations or {}).items()}
        unknown = set(self.degradations) - set(self.val_dirs) - set(self.test_dirs)
        if unknown:
            raise DataError(f"degradations name sets that are neither validation nor test sets: {sorted(unknown)}")
        self.train_set: PatchDataset | None = None
        self.val_sets: list[EvalDataset] = []
        self.test_sets: list[EvalDataset] = []

    @property
    def val_set_names(self) -> list[str]:
        """Names of the validation sets, in the order of the validation loaders."""
        return list(self.val_dirs)

    @property
    def test_set_names(self) -> list[str]:
        """Names of the test sets, in the order of the test loaders."""
        return list(self.test_dirs)

    def _cache(self) -> ImageCache:
        return ImageCache(Path(self.cache_dir) if self.cache_dir else default_cache_dir() / "decoded")

    def _prepare_folder(
        self, folder: str, what: str, limit: int | None = None, degradation: str = BICUBIC
    ) -> list[CachedPair]:
        pairs = find_pairs(folder, self.scale)[:limit]
        return prepare_all_degraded(self._cache(), pairs, self.scale, degradation, what)

    def _prepare_eval_set(self, name: str, folder: str, limit: int | None = None) -> list[CachedPair]:
        degradation = self.degradations.get(name, BICUBIC)
        return self._prepare_folder(folder, f"{name} ({folder}, {degradation} LR)", limit, degradation)

    def _prepare_train(self) -> list[CachedPair]:
        if not self.train_dirs:
            raise DataError("no training folder given (train_dirs is empty)")
        return [item for folder in self.train_dirs for item in self._prepare_folder(folder, f"training set {folder}")]

    def prepare_data(self) -> None:
        """Write the quickstart photos if asked, and decode every image of every set into the cache."""
        if self.skimage_photos_dir:
            write_skimage_photos(self.skimage_photos_dir)
        self._prepare_train()
        for name, folder in {**self.val_dirs, **self.test_dirs}.items():
            self._prepare_eval_set(name, folder)

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None) and self.train_set is None:
            self.train_set = PatchDataset(
                self._prepare_train(), self.scale, self.patch_size, self.patches_per_image, self.augment
            )
            if len(self.train_set) < self.batch_size:
                raise DataError(
                    f"{len(self.train_set)} training patches per epoch are fewer than one batch of "
                    f"{self.batch_size}; raise patches_per_image or lower batch_size"
                )
        if stage in ("fit", "validate", None) and not self.val_sets:
            self.val_sets = [
                EvalDataset(self._prepare_eval_set(name, folder, self.max_val_images), self.scale)
                for name, folder in self.val_dirs.items()
            ]
        if stage in ("test", None) and not self.test_sets:
            self.test_sets = [
                EvalDataset(self._prepare_eval_set(name, folder), self.scale) for name, folder in self.test_dirs.items()
            ]

    def _pin(self) -> bool:
        return torch.cuda.is_available() if self.pin_memory is None else self.pin_memory

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            raise RuntimeError("call setup('fit') before train_dataloader()")
        # Map-style + shuffle: under DDP, Lightning swaps in a DistributedSampler that shards the patches.
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            collate_fn=collate_patches,
            num_workers=self.num_workers,
            pin_memory=self._pin(),
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )

    def _eval_loaders(self, sets: list[EvalDataset]) -> list[DataLoader]:
        # Whole images, batch size 1 (sizes differ); few workers suffice for a few dozen images.
        workers = min(self.num_workers, 2)
        return [DataLoader(s, batch_size=1, shuffle=False, num_workers=workers, pin_memory=self._pin()) for s in sets]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(self.val_sets)

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(self.test_sets)
