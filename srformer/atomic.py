"""Files that appear whole or not at all: the one way every writer in the package puts a file in place.

A file is written under a temporary name in its destination's folder (``.name.<random>.tmp``: hidden, and on
the same file system, so the final rename is atomic) and renamed into place only once complete. A reader, a
concurrent writer or a crash thus sees either the previous file or the new complete one, never a partial one.

When data reaches the disk: the temporary file is fsynced *before* the rename, so that after a power loss the
new name never points at blocks that were not written yet; on POSIX the folder is fsynced *after* the rename,
so that the rename itself survives a power loss (a few file systems refuse to fsync a folder: then the rename
is left to the file system's own schedule). That is the one fsync policy, for checkpoints, weights, exports,
images, caches and downloads alike: a cache entry that outlives a crash half-written would fail later, far from
its cause.

On any Python exception (including ``KeyboardInterrupt``) the temporary file is removed and the destination is
left as it was. A process killed hard (SIGKILL, power loss) may leave its temporary file behind; its name never
looks like data.

``overwrite=False`` publishes exclusively: the name is taken atomically, so an existing file is never replaced,
not even one that another process created while this one was writing; :class:`DestinationExistsError` is raised
instead. New files get the usual permissions (``0o666`` less the umask), as ``open`` would give them, also
when the writer replaced the temporary file with one of its own (safetensors makes its files 0o600).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class DestinationExistsError(FileExistsError):
    """An exclusive publish (``overwrite=False``) found its destination taken; nothing was replaced."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield an empty temporary file's path beside ``path``, for writers that take a file name; publish it at
    ``path`` when the block ends without an exception, remove it when it raises.

    The caller may write the path in place or replace it; it must be a complete file when the block ends.
    Raises :class:`DestinationExistsError` when ``overwrite`` is false and ``path`` exists (nothing is written).
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise _taken(path)
    temporary = _create_temporary(path)
    mode = temporary.stat().st_mode & 0o777
    try:
        yield temporary
        _restore_mode(temporary, mode)
        publish(temporary, path, overwrite=overwrite)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike, mode: str = "wb", *, overwrite: bool = True, encoding: str | None = None
) -> Iterator[IO[Any]]:
    """Yield a file object open for writing (``mode`` "wb" or "w") on a temporary file beside ``path``; publish
    it at ``path`` when the block ends without an exception, remove it when it raises.

    Text mode writes UTF-8 unless ``encoding`` says otherwise. Raises :class:`DestinationExistsError` when
    ``overwrite`` is false and ``path`` exists (checked first, and again when publishing).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file writes new files: mode 'wb' or 'w', not {mode!r}")
    text = {"encoding": encoding or "utf-8"} if mode == "w" else {}
    # Opened by name: some writers (tifffile) want a file object whose name is a path. Closing it flushes it;
    # publishing then fsyncs the file (any descriptor of it will do) before the rename.
    with atomic_path(path, overwrite=overwrite) as temporary, open(temporary, mode, **text) as handle:
        yield handle


def publish(source: str | os.PathLike, path: str | os.PathLike, *, overwrite: bool = True) -> None:
    """Move the finished file (or folder) ``source`` to ``path`` in the same file system, durably.

    ``source`` is fsynced first (a folder: every file and folder in it), then renamed; see the module's notes.
    ``overwrite=False`` (files only) never replaces an existing ``path``: :class:`DestinationExistsError`.
    On failure ``source`` is left where it is, for the caller to remove or keep (a resumable download).
    """
    source, path = Path(source), Path(path)
    if source.is_dir():
        if not overwrite:
            raise ValueError("a folder is published with overwrite=True (os.replace), not exclusively")
        for folder, _, files in os.walk(source, topdown=False):
            for name in files:
                _fsync(Path(folder) / name)
            _fsync_folder(Path(folder))
    else:
        _fsync(source)
    _publish_synced(source, path, overwrite)


def _taken(path: Path) -> DestinationExistsError:
    return DestinationExistsError(errno.EEXIST, "a file of this name exists and is kept", str(path))


def _create_temporary(path: Path) -> Path:
    """Create an empty ``.{name}.<random>.tmp`` in ``path``'s folder exclusively, mode 0o666 less the umask (as
    ``open`` gives; ``tempfile.mkstemp`` would give 0o600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for _ in range(100):
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(temporary, flags, 0o666))
            return temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _restore_mode(path: Path, mode: int) -> None:
    """Give ``path`` back the permissions it was created with, where its writer replaced it with a file of
    its own (safetensors' ``save_file`` leaves 0o600: weights only their owner could read)."""
    with contextlib.suppress(OSError):  # a file system without POSIX modes keeps its own
        if path.is_file() and path.stat().st_mode & 0o777 != mode:
            os.chmod(path, mode)


def _publish_synced(source: Path, path: Path, overwrite: bool) -> None:
    """Rename the already fsynced ``source`` to ``path`` (exclusively unless ``overwrite``); fsync the folder.

    Exclusive: a hard link takes the name atomically and fails if it exists; where the file system has no hard
    links (FAT, some network shares), an empty file created exclusively claims the name and the rename then
    replaces only that claim.
    """
    if overwrite:
        os.replace(source, path)
    else:
        try:
            os.link(source, path)
        except FileExistsError:
            raise _taken(path) from None
        except OSError:  # no hard links here
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                raise _taken(path) from None
            try:
                os.replace(source, path)
            except BaseException:
                path.unlink(missing_ok=True)  # our empty claim, not a file of anyone else
                raise
        else:
            source.unlink()
    _fsync_folder(path.parent)


def _fsync(path: Path) -> None:
    # Windows can only flush a descriptor open for writing; POSIX flushes any.
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make the names in ``folder`` durable (POSIX; Windows has no folder descriptors)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # the file system refuses (EINVAL on some network and FUSE ones); the rename itself is done
    finally:
        os.close(fd)
