"""The quickstart dataset: photos that ship with scikit-image, written out as PNG folders.

No download is needed, so ``python train.py experiment=quickstart`` runs anywhere. The photos are written
once into ``<folder>/train`` and ``<folder>/val``; existing files are left as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from srformer.errors import DataError
from srformer.imageio import write_image

# Colour photos bundled with scikit-image (no network needed); the validation photos are not trained on.
TRAIN_PHOTOS = ("astronaut", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")
VAL_PHOTOS = ("chelsea", "camera")


def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3].astype(np.uint8))


def write_skimage_photos(folder: str | Path) -> tuple[Path, Path]:
    """Write the photos (if missing) and return ``(train_dir, val_dir)``."""
    try:
        import skimage.data  # noqa: F401
    except ImportError:
        raise DataError("the quickstart data needs scikit-image: pip install scikit-image") from None
    folder = Path(folder)
    for split, names in (("train", TRAIN_PHOTOS), ("val", VAL_PHOTOS)):
        for name in names:
            path = folder / split / f"{name}.png"
            if not path.exists():
                write_image(path, _photo(name), overwrite=True)  # a concurrent run may have written it
    return folder / "train", folder / "val"
