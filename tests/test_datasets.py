"""Datasets and the data module: folder layouts, the decoded-image cache, aligned patches, bad data."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from srformer.data import SRDataModule
from srformer.data import cache as cache_module
from srformer.data.cache import ImageCache
from srformer.data.datasets import EvalDataset, PatchDataset, dihedral, find_pairs
from srformer.data.io import read_rgb_uint8
from srformer.errors import DataError, ImageError
from srformer.imageio import write_image
from srformer.imresize import imresize

SCALE = 4


def photos() -> dict[str, np.ndarray]:
    """Odd-sized crops (not multiples of the scale) of scikit-image's photos."""
    return {
        "astronaut.png": skimage.data.astronaut()[:203, :190],
        "coffee.png": skimage.data.coffee()[:150, :221],
        "chelsea.jpg": skimage.data.chelsea()[:171, :166],
    }


@pytest.fixture
def hr_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "hr"
    for name, image in photos().items():
        write_image(folder / name, image)
    return folder


def downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, 3) uint8 -> the protocol's LR: HR cropped to a multiple of the scale, MATLAB bicubic."""
    h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
    chw = torch.from_numpy(np.ascontiguousarray(hr[:h, :w].transpose(2, 0, 1)))
    return imresize(chw, scale=1 / scale).permute(1, 2, 0).numpy()


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] at uint8 levels -> (H, W, 3) uint8 (asserting the values are levels)."""
    levels = t.double().mul(255)
    assert (levels - levels.round()).abs().max() < 1e-4
    return levels.round().byte().permute(1, 2, 0).numpy()


# ----------------------------------------------------------------------------------------------- layouts


def test_hr_only_folder(hr_dir: Path) -> None:
    (hr_dir / "notes.txt").write_text("not an image")
    pairs = find_pairs(hr_dir, SCALE)
    assert [p.hr.name for p in pairs] == ["astronaut.png", "chelsea.jpg", "coffee.png"]
    assert all(p.lr is None for p in pairs)


def test_benchmark_hr_lr_layout(tmp_path: Path) -> None:
    for name, image in photos().items():
        write_image(tmp_path / "Set3" / "HR" / name, image)
        write_image(
            tmp_path / "Set3" / "LR_bicubic" / "X4" / f"{Path(name).stem}x4{Path(name).suffix}", downscale(image, 4)
        )
    pairs = find_pairs(tmp_path / "Set3", 4)
    assert [(p.hr.parent.name, p.lr.parent.name) for p in pairs] == [("HR", "X4")] * 3
    assert pairs[0].lr.name == "astronautx4.png"
    # Another scale without its LR folder: LR computed.
    assert all(p.lr is None for p in find_pairs(tmp_path / "Set3", 2))


def test_div2k_layout(tmp_path: Path) -> None:
    image = photos()["astronaut.png"]
    write_image(tmp_path / "DIV2K_train_HR" / "0001.png", image)
    write_image(tmp_path / "DIV2K_train_LR_bicubic" / "X2" / "0001x2.png", downscale(image, 2))
    (pair,) = find_pairs(tmp_path / "DIV2K_train_HR", 2)
    assert pair.lr == tmp_path / "DIV2K_train_LR_bicubic" / "X2" / "0001x2.png"
    item = ImageCache(tmp_path / "cache").prepare(pair, 2)
    assert item.lr_shape == (101, 95, 3) and item.hr_shape == (203, 190, 3)


def test_missing_lr_file_and_size_mismatch(tmp_path: Path) -> None:
    image = photos()["coffee.png"]
    write_image(tmp_path / "S" / "HR" / "a.png", image)
    write_image(tmp_path / "S" / "HR" / "b.png", image)
    write_image(tmp_path / "S" / "LR_bicubic" / "X4" / "ax4.png", downscale(image, 3))  # made for x3
    with pytest.raises(DataError, match="no LR image for b.png"):
        find_pairs(tmp_path / "S", 4)
    (tmp_path / "S" / "HR" / "b.png").unlink()
    with pytest.raises(DataError, match="at x4 needs 55x37"):
        ImageCache(tmp_path / "cache").prepare(find_pairs(tmp_path / "S", 4)[0], 4)


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="image folder not found"):
        find_pairs(tmp_path / "nowhere", 4)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no images here")
    with pytest.raises(DataError, match="no images"):
        find_pairs(tmp_path / "empty", 4)


# ------------------------------------------------------------------------------------- reading, cache


def test_read_rgb_uint8_errors_and_gray(tmp_path: Path) -> None:
    (tmp_path / "fake.png").write_text("this is text")
    with pytest.raises(ImageError, match="cannot read fake.png as an image"):
        read_rgb_uint8(tmp_path / "fake.png")
    with pytest.raises(ImageError, match="not found"):
        read_rgb_uint8(tmp_path / "missing.png")
    good = tmp_path / "good.png"
    write_image(good, photos()["coffee.png"])
    (tmp_path / "truncated.png").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageError, match="cannot read truncated.png as an image"):
        read_rgb_uint8(tmp_path / "truncated.png")
    gray = skimage.data.camera()[:40, :50]
    from PIL import Image

    Image.fromarray(gray).save(tmp_path / "gray.png")
    rgb = read_rgb_uint8(tmp_path / "gray.png")
    assert rgb.shape == (40, 50, 3) and rgb.dtype == np.uint8
    assert (rgb == gray[..., None]).all()


def test_cache_decodes_once_and_follows_file_changes(hr_dir: Path, tmp_path: Path, monkeypatch) -> None:
    calls: list[str] = []
    real_read = cache_module.read_rgb_uint8
    monkeypatch.setattr(cache_module, "read_rgb_uint8", lambda p: calls.append(Path(p).name) or real_read(p))
    cache = ImageCache(tmp_path / "cache")
    pairs = find_pairs(hr_dir, SCALE)
    first = cache.prepare_all(pairs, SCALE, "test")
    assert sorted(calls) == ["astronaut.png", "chelsea.jpg", "coffee.png"]
    second = cache.prepare_all(pairs, SCALE, "test")
    assert second == first and len(calls) == 3
    # The cached arrays are the decoded HR and the protocol's LR.
    hr = np.load(first[0].hr_npy)
    assert np.array_equal(hr, read_rgb_uint8(hr_dir / "astronaut.png"))
    assert np.array_equal(np.load(first[0].lr_npy), downscale(hr, SCALE))
    # A replaced file is decoded again.
    write_image(hr_dir / "coffee.png", photos()["astronaut.png"], overwrite=True)
    os.utime(hr_dir / "coffee.png", ns=(1, 10**9))
    third = cache.prepare_all(pairs, SCALE, "test")
    assert calls[3:] == ["coffee.png"]
    assert third[2].hr_shape == (203, 190, 3)


def test_corrupt_files_skipped_counted_and_warned_once(hr_dir: Path, tmp_path: Path, caplog) -> None:
    (hr_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    (hr_dir / "text.jpg").write_text("plain text")
    cache = ImageCache(tmp_path / "cache")
    with caplog.at_level(logging.WARNING):
        items = cache.prepare_all(find_pairs(hr_dir, SCALE), SCALE, "my set")
        cache.prepare_all(find_pairs(hr_dir, SCALE), SCALE, "my set")
    assert [i.name for i in items] == ["astronaut.png", "chelsea.jpg", "coffee.png"]
    per_file = [r.getMessage() for r in caplog.records if "skipping an unreadable image" in r.getMessage()]
    assert len(per_file) == 2 and any("broken.png" in m for m in per_file) and any("text.jpg" in m for m in per_file)
    assert any("my set: skipped 2 unreadable image(s) of 5" in r.getMessage() for r in caplog.records)


def test_all_images_unreadable(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.png").write_text("x")
    with pytest.raises(DataError, match="none of the 1 images could be read"):
        ImageCache(tmp_path / "cache").prepare_all(find_pairs(tmp_path / "d", 2), 2, "d")


# --------------------------------------------------------------------------------------------- patches


@pytest.fixture
def patch_items(hr_dir: Path, tmp_path: Path):
    return ImageCache(tmp_path / "cache").prepare_all(find_pairs(hr_dir, SCALE), SCALE, "train")


def test_patch_alignment(patch_items) -> None:
    """The LR patch is what the MATLAB bicubic makes of the HR patch under it (away from the patch edges,
    where the downscale of the patch alone lacks the neighbours)."""
    dataset = PatchDataset(patch_items, SCALE, lr_patch_size=16, patches_per_image=1)
    for index, (top, left) in enumerate([(0, 0), (7, 11), (21, 25)]):
        sample = dataset.crop(index, top, left)
        lr, hr = to_uint8(sample["lr"]), to_uint8(sample["hr"])
        assert lr.shape == (16, 16, 3) and hr.shape == (64, 64, 3)
        full_hr = np.load(patch_items[index].hr_npy)
        assert np.array_equal(hr, full_hr[top * 4 : top * 4 + 64, left * 4 : left * 4 + 64])
        assert np.array_equal(downscale(hr, SCALE)[3:-3, 3:-3], lr[3:-3, 3:-3])
        # One pixel off is visibly wrong: the check can fail.
        shifted = full_hr[top * 4 + 4 : top * 4 + 68, left * 4 : left * 4 + 64]
        assert not np.array_equal(downscale(shifted, SCALE)[3:-3, 3:-3], lr[3:-3, 3:-3])


def test_dihedral_transforms_applied_to_both(patch_items) -> None:
    dataset = PatchDataset(patch_items, SCALE, lr_patch_size=12, patches_per_image=1)
    plain = dataset.crop(0, 5, 6)
    seen = set()
    for transform in range(8):
        sample = dataset.crop(0, 5, 6, transform)
        expected_lr = dihedral(to_uint8(plain["lr"]), transform)
        expected_hr = dihedral(to_uint8(plain["hr"]), transform)
        assert np.array_equal(to_uint8(sample["lr"]), expected_lr)
        assert np.array_equal(to_uint8(sample["hr"]), expected_hr)
        seen.add(to_uint8(sample["lr"]).tobytes())
    assert len(seen) == 8  # eight distinct symmetries


def test_random_patches_are_aligned_and_varied(patch_items) -> None:
    torch.manual_seed(0)
    dataset = PatchDataset(patch_items, SCALE, lr_patch_size=16, patches_per_image=5)
    assert len(dataset) == 15
    corners = set()
    for i in range(len(dataset)):
        sample = dataset[i]
        lr, hr = to_uint8(sample["lr"]), to_uint8(sample["hr"])
        # Exactly aligned in one orientation (transposed patches round the two resize passes in the
        # other order, so they are compared transposed back).
        assert any(
            np.array_equal(downscale(dihedral(hr, t), SCALE)[3:-3, 3:-3], dihedral(lr, t)[3:-3, 3:-3]) for t in (0, 4)
        )
        corners.add(lr[0, 0].tobytes())
    assert len(corners) > 10


def test_small_images_skipped_with_warning(patch_items, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        dataset = PatchDataset(patch_items, SCALE, lr_patch_size=40, patches_per_image=2)
    assert [i.name for i in dataset.items] == ["astronaut.png", "chelsea.jpg"]  # coffee is 37 LR pixels high
    assert any("skipped 1 image(s) smaller than a 40x40 LR patch: coffee.png" in r.getMessage() for r in caplog.records)
    with pytest.raises(DataError, match="large enough"):
        PatchDataset(patch_items, SCALE, lr_patch_size=80, patches_per_image=2)


def test_eval_dataset_contract(patch_items) -> None:
    sample = EvalDataset(patch_items, SCALE)[2]  # coffee: 150x221 -> HR 148x220, LR 37x55
    assert sample["name"] == "coffee.png"
    hr, lr = to_uint8(sample["hr"]), to_uint8(sample["lr"])
    assert hr.shape == (148, 220, 3) and lr.shape == (37, 55, 3)
    assert np.array_equal(lr, downscale(hr, SCALE))
    assert sample["lr"].dtype == torch.float32


# ----------------------------------------------------------------------------------------- data module


def make_module(root: Path, hr_dir: Path, **overrides) -> SRDataModule:
    val = root / "val"
    if not val.exists():
        for name, image in list(photos().items())[:2]:
            write_image(val / name, image)
    arguments = dict(
        train_dirs=[str(hr_dir)],
        scale=2,
        val_dirs={"ValA": str(val), "ValB": str(hr_dir)},
        patch_size=24,
        batch_size=4,
        patches_per_image=4,
        num_workers=0,
        cache_dir=str(root / "cache"),
    )
    arguments.update(overrides)
    return SRDataModule(**arguments)


def test_datamodule_no_io_in_constructor(tmp_path: Path) -> None:
    module = SRDataModule(train_dirs=[str(tmp_path / "missing")], scale=4, cache_dir=str(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()
    assert module.val_set_names == []
    with pytest.raises(DataError, match="image folder not found"):
        module.prepare_data()


def test_datamodule_batches_follow_the_contract(hr_dir: Path, tmp_path: Path) -> None:
    module = make_module(tmp_path, hr_dir, max_val_images=1, test_dirs={"T": str(hr_dir)})
    module.prepare_data()
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert set(batch) == {"lr", "hr"}
    assert batch["lr"].shape == (4, 3, 24, 24) and batch["hr"].shape == (4, 3, 48, 48)
    assert batch["lr"].dtype == batch["hr"].dtype == torch.float32
    assert batch["lr"].min() >= 0 and batch["hr"].max() <= 1
    assert len(module.train_dataloader()) == 3  # 3 images x 4 patches / batch 4
    assert module.val_set_names == ["ValA", "ValB"]
    loaders = module.val_dataloader()
    assert [len(loader) for loader in loaders] == [1, 1]  # max_val_images
    val_batch = next(iter(loaders[1]))
    assert val_batch["name"] == ["astronaut.png"]
    assert val_batch["hr"].shape == (1, 3, 202, 190) and val_batch["lr"].shape == (1, 3, 101, 95)
    module.setup("test")
    assert module.test_set_names == ["T"] and [len(d) for d in module.test_dataloader()] == [3]


def test_datamodule_with_workers(hr_dir: Path, tmp_path: Path) -> None:
    module = make_module(tmp_path, hr_dir, num_workers=2, persistent_workers=False)
    module.prepare_data()
    module.setup("fit")
    batches = list(module.train_dataloader())
    assert len(batches) == 3
    lr = torch.cat([b["lr"] for b in batches])
    assert len({tuple(x.flatten()[:32].tolist()) for x in lr}) == 12  # workers draw different patches


def test_datamodule_too_few_patches_for_a_batch(hr_dir: Path, tmp_path: Path) -> None:
    module = make_module(tmp_path, hr_dir, batch_size=64)
    module.prepare_data()
    with pytest.raises(DataError, match="fewer than one batch"):
        module.setup("fit")


def test_quickstart_photos(tmp_path: Path, monkeypatch) -> None:
    from srformer.data import photos as photos_module

    monkeypatch.setattr(photos_module, "TRAIN_PHOTOS", ("astronaut",))
    monkeypatch.setattr(photos_module, "VAL_PHOTOS", ("camera",))
    photo_dir = tmp_path / "photos"
    module = SRDataModule(
        train_dirs=[str(photo_dir / "train")],
        scale=4,
        val_dirs={"photos": str(photo_dir / "val")},
        patch_size=32,
        batch_size=2,
        num_workers=0,
        cache_dir=str(tmp_path / "cache"),
        skimage_photos_dir=str(photo_dir),
    )
    module.prepare_data()
    module.setup("fit")
    assert sorted(p.name for p in (photo_dir / "train").iterdir()) == ["astronaut.png"]
    camera = next(iter(module.val_dataloader()[0]))
    assert camera["hr"].shape == (1, 3, 512, 512)
    assert torch.equal(camera["hr"][0, 0], camera["hr"][0, 2])  # grayscale as three equal channels
