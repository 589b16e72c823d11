"""Datasets, the decoded-image cache and the Lightning data module (see :class:`SRDataModule`).

Degradations: random real-world ones for training batches in :mod:`srformer.data.degradations` (Hydra group
``configs/degradation/``), fixed seeded ones for degraded benchmarks (``D1``, ...) in
:mod:`srformer.data.benchmark_degradations`; ``srformer preview-degradation`` saves a
degraded batch as PNGs.

``SRDataModule`` is imported on first use, so that reading images or datasets does not load Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from srformer.data.datasets import EvalDataset, ImagePair, PatchDataset, find_pairs, list_images
from srformer.data.io import read_rgb_uint8

if TYPE_CHECKING:
    from srformer.data.datamodule import SRDataModule

__all__ = [
    "EvalDataset",
    "ImagePair",
    "PatchDataset",
    "SRDataModule",
    "find_pairs",
    "list_images",
    "read_rgb_uint8",
]


def __getattr__(name: str):
    if name == "SRDataModule":
        from srformer.data.datamodule import SRDataModule

        return SRDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
