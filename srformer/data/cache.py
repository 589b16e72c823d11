"""A disk cache of decoded images, so that training never waits for PNG/JPEG decoding or resizing.

Every image is decoded once into an uncompressed ``.npy`` file (uint8, (H, W, 3)); the LR image of each
scale is made once with the MATLAB bicubic downscale of the HR image cropped to a multiple of the scale
(or decoded from the dataset's own LR file). Training then reads patches straight from memory maps.

Entries are keyed by the source file's absolute path, size and modification time, so an edited or replaced
image is decoded again, and the cache can be shared by runs and datasets. Files are written atomically
(:mod:`srformer.atomic`: temporary name, fsync, rename), so concurrent processes, interrupted runs and
crashes never leave a half-written entry. A file that cannot be decoded leaves a ``.bad`` note with the
reason, so it is skipped (and reported) without being decoded again.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from srformer.atomic import atomic_file
from srformer.data.datasets import CachedPair, ImagePair
from srformer.data.io import read_rgb_uint8
from srformer.errors import DataError, ImageError
from srformer.imresize import imresize

log = logging.getLogger(__name__)

# Bump when the decoding or the LR recipe changes, to invalidate old entries.
CACHE_VERSION = 1

# Files already warned about in this process: a bad file is reported once, not once per dataset or epoch.
_warned_bad_files: set[str] = set()


def default_cache_dir() -> Path:
    """``$SRFORMER_CACHE_DIR``, else ``$XDG_CACHE_HOME/srformer``, else ``~/.cache/srformer``."""
    if os.environ.get("SRFORMER_CACHE_DIR"):
        return Path(os.environ["SRFORMER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "srformer"


def downscale_uint8(hr: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (H // s, W // s, 3) uint8: MATLAB bicubic of HR cropped to a multiple of s."""
    h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
    if h == 0 or w == 0:
        raise ImageError(f"image of {hr.shape[0]}x{hr.shape[1]} pixels is smaller than the scale {scale}")
    chw = torch.from_numpy(np.array(hr[:h, :w])).permute(2, 0, 1)
    return imresize(chw, scale=1.0 / scale).permute(1, 2, 0).contiguous().numpy()


def _save_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_file(path) as f:
        np.save(f, array)


class ImageCache:
    """Decoded HR and LR arrays under ``root`` (created on first use)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def key(self, source: Path) -> str:
        """Cache key of a source file: its name (readable) + a hash of path, size and mtime."""
        stat = source.stat()
        ident = f"v{CACHE_VERSION}|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        digest = hashlib.sha1(ident.encode()).hexdigest()[:16]
        return f"{source.stem}-{digest}"

    def _bad_note(self, key: str) -> Path:
        return self.root / f"{key}.bad"

    def prepare(self, pair: ImagePair, scale: int) -> CachedPair:
        """Decode (or find in the cache) the pair's HR array and its LR array for ``scale``.

        Raises :class:`ImageError` for an unreadable image (also when it was found unreadable before) and
        :class:`DataError` when a provided LR image does not match its HR image at this scale.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        hr_key = self.key(pair.hr)
        hr_npy = self.root / f"{hr_key}.npy"
        if pair.lr is None:
            lr_npy = self.root / f"{hr_key}.bicubic_x{scale}.npy"
        else:
            lr_npy = self.root / f"{self.key(pair.lr)}.npy"
        for source, key in ((pair.hr, hr_key), (pair.lr, self.key(pair.lr) if pair.lr else None)):
            if key is not None and self._bad_note(key).exists():
                raise ImageError(self._bad_note(key).read_text().strip() or f"cannot decode {source}")

        hr = self._load_or_decode(pair.hr, hr_key, hr_npy)
        if not lr_npy.exists():
            if pair.lr is None:
                _save_atomic(lr_npy, downscale_uint8(np.asarray(hr), scale))
            else:
                self._load_or_decode(pair.lr, self.key(pair.lr), lr_npy)
        lr = np.load(lr_npy, mmap_mode="r")
        expected = (hr.shape[0] // scale, hr.shape[1] // scale)
        if lr.shape[:2] != expected:
            raise DataError(
                f"LR image {pair.lr} is {lr.shape[1]}x{lr.shape[0]} but its HR image {pair.hr.name} "
                f"({hr.shape[1]}x{hr.shape[0]}) at x{scale} needs {expected[1]}x{expected[0]}"
            )
        if min(expected) == 0:
            raise ImageError(f"{pair.hr} ({hr.shape[1]}x{hr.shape[0]}) is smaller than the scale {scale}")
        return CachedPair(pair.hr.name, hr_npy, lr_npy, tuple(hr.shape), tuple(lr.shape))

    def _load_or_decode(self, source: Path, key: str, npy: Path) -> np.ndarray:
        if npy.exists():
            return np.load(npy, mmap_mode="r")
        try:
            array = read_rgb_uint8(source)
        except ImageError as error:
            _save_atomic_text(self._bad_note(key), str(error))
            raise
        _save_atomic(npy, array)
        return array

    def prepare_all(self, pairs: Iterable[ImagePair], scale: int, what: str) -> list[CachedPair]:
        """:meth:`prepare` every pair; unreadable images are skipped, counted and warned about once each.

        ``what`` names the dataset in messages. Raises :class:`DataError` if no image is readable.
        """
        prepared: list[CachedPair] = []
        bad: list[str] = []
        for pair in pairs:
            try:
                prepared.append(self.prepare(pair, scale))
            except ImageError as error:
                bad.append(pair.hr.name)
                if str(pair.hr) not in _warned_bad_files:
                    _warned_bad_files.add(str(pair.hr))
                    log.warning("skipping an unreadable image: %s", error)
        if bad:
            log.warning("%s: skipped %d unreadable image(s) of %d", what, len(bad), len(bad) + len(prepared))
        if not prepared:
            raise DataError(f"{what}: none of the {len(bad)} images could be read")
        return prepared


def _save_atomic_text(path: Path, text: str) -> None:
    with atomic_file(path, "w") as f:
        f.write(text + "\n")
