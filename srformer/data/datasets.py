"""Finding HR/LR image pairs in the supported folder layouts, and the torch datasets built on them.

Layouts (``find_pairs``):

* **any folder of HR images**: the LR images are made with the MATLAB bicubic downscale (and cached);
* **benchmark folders with LR**: ``Set5/HR/baby.png`` + ``Set5/LR_bicubic/X4/babyx4.png`` (or ``baby.png``);
* **DIV2K**: ``DIV2K_train_HR/0001.png`` + ``DIV2K_train_LR_bicubic/X4/0001x4.png`` next to it (valid alike).

A provided LR image must be ``floor(H / scale) x floor(W / scale)`` of its HR image; the HR image is
cropped to ``scale`` times that (the protocol's crop to a multiple of the scale).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from srformer.data.io import IMAGE_SUFFIXES, is_image_file, to_tensor
from srformer.errors import DataError

log = logging.getLogger(__name__)

_DIV2K_HR = re.compile(r"^(DIV2K_\w+?)_HR$")


@dataclass(frozen=True)
class ImagePair:
    """An HR image file and, when the dataset provides one, its LR file (else the LR is computed)."""

    hr: Path
    lr: Path | None = None


@dataclass(frozen=True)
class CachedPair:
    """Decoded uint8 (H, W, 3) arrays of one pair in ``.npy`` files: HR as decoded, LR for ``scale``.

    ``hr_shape``/``lr_shape`` are (H, W, 3); the usable HR area is ``lr_shape * scale`` (top-left aligned).
    """

    name: str
    hr_npy: Path
    lr_npy: Path
    hr_shape: tuple[int, int, int]
    lr_shape: tuple[int, int, int]


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name. Raises :class:`DataError` if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    images = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    if not images:
        suffixes = ", ".join(IMAGE_SUFFIXES)
        raise DataError(f"no images ({suffixes}) in {folder}")
    return images


def _lr_folder(folder: Path, scale: int) -> tuple[Path, Path | None]:
    """(HR folder, LR folder or None) for the layouts above."""
    if (folder / "HR").is_dir():
        lr = folder / "LR_bicubic" / f"X{scale}"
        return folder / "HR", lr if lr.is_dir() else None
    match = _DIV2K_HR.match(folder.name)
    if match:
        lr = folder.parent / f"{match.group(1)}_LR_bicubic" / f"X{scale}"
        return folder, lr if lr.is_dir() else None
    return folder, None


def find_pairs(folder: str | Path, scale: int) -> list[ImagePair]:
    """The (HR, LR-or-None) pairs of a dataset folder in any supported layout, sorted by HR name."""
    if scale < 1:
        raise DataError(f"scale must be a positive integer, got {scale}")
    hr_folder, lr_folder = _lr_folder(Path(folder), scale)
    hr_files = list_images(hr_folder)
    if lr_folder is None:
        return [ImagePair(hr) for hr in hr_files]
    lr_by_name = {p.name: p for p in list_images(lr_folder)}
    pairs = []
    for hr in hr_files:
        candidates = [f"{hr.stem}x{scale}{hr.suffix}", hr.name]
        lr = next((lr_by_name[c] for c in candidates if c in lr_by_name), None)
        if lr is None:
            raise DataError(f"no LR image for {hr.name} in {lr_folder} (expected {candidates[0]})")
        pairs.append(ImagePair(hr, lr))
    return pairs


def skip_small(pairs: list[CachedPair], lr_patch_size: int) -> list[CachedPair]:
    """Drop pairs whose LR image is smaller than a patch, with one warning naming them."""
    kept = [p for p in pairs if min(p.lr_shape[:2]) >= lr_patch_size]
    skipped = [p.name for p in pairs if min(p.lr_shape[:2]) < lr_patch_size]
    if skipped:
        log.warning(
            "skipped %d image(s) smaller than a %dx%d LR patch: %s",
            len(skipped),
            lr_patch_size,
            lr_patch_size,
            ", ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else ""),
        )
    return kept


class _MemmapReader:
    """Opens the cached arrays lazily, once per process (memory maps must not be pickled into workers)."""

    def __init__(self, items: list[CachedPair]) -> None:
        self.items = items
        self._open: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(HR, LR) uint8 (H, W, 3) memory maps of item ``index``."""
        if index not in self._open:
            item = self.items[index]
            self._open[index] = (np.load(item.hr_npy, mmap_mode="r"), np.load(item.lr_npy, mmap_mode="r"))
        return self._open[index]

    def __getstate__(self) -> dict:
        return {"items": self.items, "_open": {}}


def dihedral(image: np.ndarray, transform: int) -> np.ndarray:
    """One of the 8 symmetries of the square on (H, W, C): bit 0 flips left-right, bit 1 flips up-down,
    bit 2 transposes (H and W swap). ``transform`` in [0, 8)."""
    if transform & 1:
        image = image[:, ::-1]
    if transform & 2:
        image = image[::-1]
    if transform & 4:
        image = image.transpose(1, 0, 2)
    return image


class PatchDataset(Dataset):
    """Random aligned LR/HR patches for training.

    Item ``i`` is a fresh random patch of image ``i % len(items)``, so one epoch visits every image
    ``patches_per_image`` times. The HR patch is the ``scale``-times-larger area exactly under the LR patch
    and never leaves the image.

    Returns ``{"lr": float32 (3, p, p), "hr": float32 (3, p*s, p*s)}`` in [0, 1].
    """

    def __init__(
        self, items: list[CachedPair], scale: int, lr_patch_size: int, patches_per_image: int, augment: bool = True
    ) -> None:
        if lr_patch_size < 1 or patches_per_image < 1:
            raise ValueError("lr_patch_size and patches_per_image must be positive")
        self.items = skip_small(items, lr_patch_size)
        if not self.items:
            raise DataError(f"no training image is large enough for a {lr_patch_size}x{lr_patch_size} LR patch")
        self.scale = scale
        self.lr_patch_size = lr_patch_size
        self.patches_per_image = patches_per_image
        self.augment = augment
        self.reader = _MemmapReader(self.items)

    def __len__(self) -> int:
        return len(self.items) * self.patches_per_image

    def crop_uint8(self, index: int, top: int, left: int, transform: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(LR (p, p, 3), HR (p*s, p*s, 3)) uint8 views of image ``index`` with the LR top-left corner at
        (top, left), after a :func:`dihedral` transform."""
        hr, lr = self.reader.arrays(index)
        p, s = self.lr_patch_size, self.scale
        lr_patch = dihedral(lr[top : top + p, left : left + p], transform)
        hr_patch = dihedral(hr[top * s : (top + p) * s, left * s : (left + p) * s], transform)
        return lr_patch, hr_patch

    def crop(self, index: int, top: int, left: int, transform: int = 0) -> dict[str, torch.Tensor]:
        """:meth:`crop_uint8` as ``{"lr": (3, p, p), "hr": (3, p*s, p*s)}`` float32 in [0, 1]."""
        lr_patch, hr_patch = self.crop_uint8(index, top, left, transform)
        return {"lr": to_tensor(lr_patch), "hr": to_tensor(hr_patch)}

    def _random_crop_args(self, i: int) -> tuple[int, int, int, int]:
        index = i % len(self.items)
        lr_h, lr_w = self.items[index].lr_shape[:2]
        # torch's RNG: seeded differently in every DataLoader worker (numpy's is not).
        top = int(torch.randint(0, lr_h - self.lr_patch_size + 1, ()))
        left = int(torch.randint(0, lr_w - self.lr_patch_size + 1, ()))
        transform = int(torch.randint(0, 8, ())) if self.augment else 0
        return index, top, left, transform

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.crop(*self._random_crop_args(i))

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """A whole batch at once (the DataLoader calls this when it exists): patches are gathered as uint8
        and converted to float in one operation per batch, which is several times faster than per patch.

        Returns ``{"lr": (B, 3, p, p), "hr": (B, 3, p*s, p*s)}`` float32; use :func:`collate_patches`.
        """
        p, s = self.lr_patch_size, self.scale
        lr = np.empty((len(indices), p, p, 3), dtype=np.uint8)
        hr = np.empty((len(indices), p * s, p * s, 3), dtype=np.uint8)
        for row, i in enumerate(indices):
            lr[row], hr[row] = self.crop_uint8(*self._random_crop_args(i))
        return {"lr": _batch_to_float(lr), "hr": _batch_to_float(hr)}


def _batch_to_float(batch: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [0, 1], contiguous."""
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().float().div_(255.0)


def collate_patches(batch: dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Collate for :class:`PatchDataset`: batches from ``__getitems__`` are already stacked."""
    return batch if isinstance(batch, dict) else default_collate(batch)


class EvalDataset(Dataset):
    """Whole images for validation and test.

    Returns ``{"lr": float32 (3, h, w), "hr": float32 (3, h*s, w*s), "name": str}``: HR cropped to a
    multiple of the scale, LR its MATLAB bicubic downscale at uint8 levels (values k/255).
    """

    def __init__(self, items: list[CachedPair], scale: int) -> None:
        if not items:
            raise DataError("an evaluation set has no readable image")
        self.items = items
        self.scale = scale
        self.reader = _MemmapReader(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        hr, lr = self.reader.arrays(index)
        h, w = lr.shape[0] * self.scale, lr.shape[1] * self.scale
        return {"lr": to_tensor(lr), "hr": to_tensor(hr[:h, :w]), "name": self.items[index].name}
