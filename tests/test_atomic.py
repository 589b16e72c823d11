"""srformer.atomic: a destination is the old file or the new complete one, never partial; exclusive publishing."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from srformer import atomic
from srformer.atomic import DestinationExistsError, atomic_file, atomic_path, publish
from srformer.checkpoint import save_weights
from srformer.errors import CheckpointError
from srformer.models import build_model

REPO = Path(__file__).resolve().parents[1]

OLD = b"old and complete\n"

#: Writes ``OLD``, then starts the new version and dies (os._exit: no cleanup, no flush of Python buffers)
#: after a number of bytes, inside an atomic_file block or an atomic_path block, or just after publishing.
_CRASHING_WRITER = """
import os, sys
from pathlib import Path
from srformer.atomic import atomic_file, atomic_path
target, how, after = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
new = bytes(range(256)) * 4096  # 1 MiB
with atomic_file(target) as handle:
    handle.write(b"old and complete\\n")
if how == "file":
    with atomic_file(target) as handle:
        handle.write(new[:after])
        handle.flush()
        os._exit(3)
elif how == "path":
    with atomic_path(target) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(new[:after])
        os._exit(3)
else:
    with atomic_file(target) as handle:
        handle.write(new)
    os._exit(3)
"""


@pytest.mark.parametrize(("how", "after"), [("file", 0), ("file", 300_000), ("path", 1), ("path", 2**20), ("done", 0)])
def test_a_process_dying_mid_write_leaves_the_old_file_or_the_whole_new_one(tmp_path: Path, how: str, after: int):
    target = tmp_path / "data.bin"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", _CRASHING_WRITER, str(target), how, str(after)], env=env)
    assert result.returncode == 3
    expected = bytes(range(256)) * 4096 if how == "done" else OLD
    assert target.read_bytes() == expected
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    # A hard death may leave its temporary file, hidden and named as one; never anything else.
    assert all(name.startswith(".data.bin.") and name.endswith(".tmp") for name in leftovers)
    assert len(leftovers) == (0 if how == "done" else 1)


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_an_exception_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path, error: BaseException):
    target = tmp_path / "data.bin"
    target.write_bytes(OLD)
    with pytest.raises(type(error)), atomic_file(target) as handle:
        handle.write(b"half of the new")
        raise error
    with pytest.raises(type(error)), atomic_path(target) as temporary:
        temporary.write_bytes(b"half of the new")
        raise error
    assert target.read_bytes() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_text_files_and_missing_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "note.txt"
    with atomic_file(target, "w") as handle:
        handle.write("größer\n")
    assert target.read_text(encoding="utf-8") == "größer\n"
    with pytest.raises(ValueError, match="mode 'wb' or 'w'"), atomic_file(target, "ab"):
        pass


def test_exclusive_publish_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "image.png"
    target.write_bytes(OLD)
    with pytest.raises(DestinationExistsError), atomic_file(target, overwrite=False) as handle:
        handle.write(b"new")  # not reached: the name is checked first
    # Taken while this writer was writing: found when publishing, and the other file is kept.
    fresh = tmp_path / "fresh.png"
    with pytest.raises(DestinationExistsError), atomic_file(fresh, overwrite=False) as handle:
        handle.write(b"new")
        fresh.write_bytes(b"the other writer's")
    assert target.read_bytes() == OLD and fresh.read_bytes() == b"the other writer's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.png", "image.png"]
    with atomic_file(tmp_path / "free.png", overwrite=False) as handle:
        handle.write(b"new")
    assert (tmp_path / "free.png").read_bytes() == b"new"


@pytest.mark.parametrize("taken", [False, True])
def test_exclusive_publish_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken: bool):
    """FAT and some network shares have no hard links: the name is claimed with an exclusively created file."""

    def no_hard_links(source: object, target: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(atomic.os, "link", no_hard_links)
    target = tmp_path / "image.png"
    if taken:
        with pytest.raises(DestinationExistsError), atomic_path(target, overwrite=False) as temporary:
            temporary.write_bytes(b"new")
            target.write_bytes(OLD)
        assert target.read_bytes() == OLD
    else:
        with atomic_path(target, overwrite=False) as temporary:
            temporary.write_bytes(b"new")
        assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["image.png"]


def test_fsync_of_the_file_before_the_rename_and_of_the_folder_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(source: object, target: object) -> None:
        events.append("rename")
        real_replace(source, target)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    with atomic_file(tmp_path / "a.bin") as handle:
        handle.write(b"a")
    with atomic_path(tmp_path / "b.bin") as temporary:
        temporary.write_bytes(b"b")
    expected = ["fsync file", "rename"] + (["fsync folder"] if os.name != "nt" else [])
    assert events == expected * 2


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names the synced descriptors through /proc")
def test_publishing_a_folder_syncs_every_file_in_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DIV2K's extraction: a folder moved into place after all its files are on disk."""
    staging = tmp_path / ".staging" / "images"
    (staging / "sub").mkdir(parents=True)
    for name in ("a.png", "b.png", "sub/c.png"):
        (staging / name).write_bytes(name.encode())
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")).name)
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    publish(staging, tmp_path / "images")
    assert (tmp_path / "images" / "sub" / "c.png").read_bytes() == b"sub/c.png" and not staging.exists()
    assert set(synced) == {"a.png", "b.png", "c.png", "sub", "images", tmp_path.name}
    with pytest.raises(ValueError, match="overwrite=True"):
        publish(tmp_path / "images", tmp_path / "elsewhere", overwrite=False)


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_new_files_get_the_usual_permissions(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        with atomic_file(tmp_path / "a.bin") as handle:
            handle.write(b"a")
        plain = tmp_path / "plain.bin"
        plain.write_bytes(b"a")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_a_writer_that_replaces_the_file_does_not_choose_its_permissions(tmp_path: Path) -> None:
    """safetensors' ``save_file`` writes its files 0o600 (0.8.0); weights written through the package get the
    umask's permissions, as every other file."""
    from safetensors.torch import save_file

    previous = os.umask(0o022)
    try:
        save_weights(build_model("tiny", 2), tmp_path / "w.safetensors")
        with atomic_path(tmp_path / "x.safetensors") as temporary:
            save_file({"a": torch.zeros(2)}, str(temporary))
    finally:
        os.umask(previous)
    for name in ("w.safetensors", "w.json", "x.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_failed_weights_write_keeps_the_previous_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """save_weights writes two files; a failure in either keeps both previous ones and leaves no temporary."""
    from srformer import checkpoint

    torch.manual_seed(0)
    path = save_weights(build_model("tiny", 2), tmp_path / "w.safetensors")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full(state: object, filename: str, metadata: object = None) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", disk_full)
    with pytest.raises(CheckpointError, match="the disk is full"):
        save_weights(build_model("tiny", 2), path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_cache_entries_are_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from srformer.data import cache

    target = tmp_path / "entry.npy"
    cache._save_atomic(target, np.arange(6, dtype=np.uint8).reshape(2, 3))

    def interrupted(handle: object, array: np.ndarray) -> None:
        handle.write(b"\x93NUMPY half")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.np, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache._save_atomic(target, np.zeros((2, 3), dtype=np.uint8))
    monkeypatch.undo()
    assert np.load(target).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert [p.name for p in tmp_path.iterdir()] == ["entry.npy"]
