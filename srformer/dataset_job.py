"""Upscale a whole data set, on one machine or a Ray cluster: resumable, idempotent, one bad file never stops it.

``srformer upscale-dataset INPUTS -o OUT`` (:mod:`srformer.commands.upscale_dataset`) runs :func:`run_job`:

1. **Plan** (:func:`plan_items`): INPUTS are folders (walked recursively), glob patterns, single images, or
   manifests (a ``.txt`` of one path per line, or a ``.parquet`` with a ``path`` column), on the local disk or
   any file system pyarrow or fsspec opens (``s3://``, ``gs://``, ``hdfs://``, ``abfs://``, ...). Each input
   keeps its path relative to its folder (to the glob's fixed part, to the manifest entries' common folder), and
   its output is ``OUT/<relative folder>/<stem><suffix>.<ext>``, the name ``srformer upscale`` gives it.
2. **Skip** what is finished: one listing of OUT, and every planned output found there is skipped. Outputs are
   published whole (a temporary name and a rename on disks; a single upload on object stores), so a file
   that exists is complete, and killing the driver or a worker loses at most the images in flight.
3. **Upscale** the rest with the same core as ``srformer upscale`` (:class:`Upscaler`, over
   :func:`srformer.upscaling.upscale_file`): bit-identical outputs, large images tiled the same way. The
   ``local`` engine runs in this process; the ``ray`` engine runs a Ray Data pipeline whose actor pool holds
   the model once per worker (:func:`run_ray`).
4. **Report**: one JSON line per input (``input``, ``output``, ``status`` done / skipped / failed, ``seconds``,
   ``reason``, ``output_pixels``) as results arrive, and a :class:`Summary`.

A failure of one file (unreadable, truncated, too large, an output its format cannot hold) is caught where the
file is processed and becomes a ``failed`` record with its one-sentence reason; Ray never sees an error, so
its rule that one failed block fails the data set (``DataContext.max_errored_blocks``) never applies.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import json
import math
import os
import posixpath
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from srformer.errors import SRFormerError
from srformer.imageio import INPUT_EXTENSIONS

if TYPE_CHECKING:
    import pyarrow.fs

    from srformer.upscaling import UpscaleOptions

#: Manifest files: one path per line (``#`` comments), or a Parquet table with a ``path`` column.
TEXT_MANIFESTS = frozenset({".txt", ".lst"})
PARQUET_MANIFESTS = frozenset({".parquet", ".pq"})

#: The report's name in OUT when no ``--report`` is given (``_``: not data to most data set tools).
REPORT_NAME = "_upscale_report.jsonl"

Status = Literal["done", "skipped", "failed"]

_GLOB_CHARS = frozenset("*?[")

#: Failed records a :class:`Summary` keeps for printing (the report has every one).
_KEPT_FAILURES = 100

#: URI schemes whose pyarrow file system addresses a file as ``bucket/key``.
_BUCKET_SCHEMES = frozenset({"s3", "gs", "gcs"})

#: Images per Ray Data block: few enough that workers share the tail of the job evenly, enough that a
#: job of millions of files does not schedule millions of tasks.
_MAX_ROWS_PER_BLOCK = 64


class DatasetJobError(SRFormerError):
    """The data set job cannot start or go on: inputs, output location, report, or engine."""


# -- the upscaling core ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpscaleSettings:
    """What ``srformer upscale`` is told about the model and the output files, as one picklable value that
    every worker rebuilds its :class:`Upscaler` from.

    ``model``: a model reference (:func:`srformer.handle.open_model`), or ``"auto"`` (``upscale``'s default: a
    shipped model chosen per file). ``suffix``: appended to each output stem (``None``: ``_x<scale>``).
    ``ext``: the output format without the dot (``None``: the input's, or png). ``options``: tiles, precision,
    self-ensemble and encoder settings as ``upscale`` passes them (``overwrite`` and ``compare`` are always
    off: an existing output is finished work)."""

    model: str | None = "auto"
    scale: int | None = None
    suffix: str | None = None
    ext: str | None = None
    options: UpscaleOptions = field(default_factory=lambda: _upscaling().UpscaleOptions())


def _upscaling():
    """:mod:`srformer.upscaling`, imported when first needed (it loads PyTorch)."""
    from srformer import upscaling

    return upscaling


@dataclass(frozen=True)
class Upscaled:
    """What :meth:`Upscaler.upscale` did: output pixels, notes for the user, and the model that ran."""

    output_pixels: int
    notes: tuple[str, ...]
    model: str


class Upscaler:
    """The one adapter between the data set job and the upscaling core that ``srformer upscale`` writes its
    files with (:func:`srformer.upscaling.upscale_file`): every call into model and image code goes through here,
    and each mirrors what ``upscale`` does, so that outputs are bit-identical to ``upscale``'s with the same
    model and tile settings.

    Built once per process (per Ray actor): opens the model (:func:`srformer.handle.open_model`) and sizes
    ``--tile auto`` once from this process's free memory, as ``upscale`` does once per run; with ``--model
    auto`` each file gets the model :class:`srformer.upscaling.AutoModel` chooses for it (each opened once), its
    tile sized per file, and the choice recorded in a PNG output, as in ``upscale``. Raises
    :class:`SRFormerError` (one sentence) for a model reference, scale, device or precision that cannot work."""

    def __init__(self, settings: UpscaleSettings, device: str | None = None) -> None:
        from srformer.errors import resolve_device
        from srformer.handle import AUTO, check_scale, open_model
        from srformer.inference import check_precision

        upscaling = _upscaling()
        from srformer.allocator import reuse_freed_memory

        reuse_freed_memory()
        self.settings = settings
        self.device = resolve_device(device)
        check_scale(settings.scale)
        options = replace(settings.options, overwrite=False, compare=False)
        check_precision(options.precision, self.device)
        self.auto = None
        self.handle = None
        if settings.model == AUTO and not Path(AUTO).exists():
            self.auto = upscaling.AutoModel(settings.scale, self.device)
            self.scale = settings.scale or 4
        else:
            self.handle = open_model(settings.model, scale=settings.scale, device=self.device)
            self.handle.check_precision(options.precision)
            options = replace(options, tile=self.handle.tile_for(options.tile, options.precision))
            self.scale = self.handle.scale
        self.options = options
        self.suffix = settings.suffix if settings.suffix is not None else f"_x{self.scale}"

    def output_name(self, relative: PurePosixPath) -> PurePosixPath:
        """The output path of the input at ``relative`` (to its root), by ``srformer upscale``'s naming rule:
        ``<stem><suffix><ext>`` in the same relative folder."""
        extension = _upscaling().output_extension(Path(relative.name), self.settings.ext)
        return relative.with_name(f"{relative.stem}{self.suffix}{extension}")

    def upscale(self, source: Path, target: Path) -> Upscaled:
        """Upscale the local image ``source`` into the local file ``target`` (published whole, never replacing
        a file). Raises :class:`SRFormerError` for this image."""
        from srformer.imageio import check_output_size, peek_size, read_image

        upscaling = _upscaling()
        size = peek_size(source)
        if size is not None:  # refused before any compute, as upscale does (unreadable: read_image says why)
            check_output_size(target, size[0] * self.scale, size[1] * self.scale)
        handle, options, image, metadata = self.handle, self.options, None, None
        if self.auto is not None:
            image = read_image(source, max_pixels=options.max_pixels)
            handle, choice = self.auto.choose(source, image)
            metadata = upscaling.choice_metadata(choice)
            options = replace(options, tile=handle.tile_for(options.tile, options.precision))
        result = upscaling.upscale_file(handle, source, target, options, image=image, metadata=metadata)
        return Upscaled(result.output_pixels, result.notes, handle.source)


# -- locations: local paths and remote file systems ----------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """A file or folder on some file system: ``uri`` as the user writes it (a local path, or ``scheme://...``),
    ``fs`` and ``path`` as pyarrow addresses it."""

    uri: str
    fs: pyarrow.fs.FileSystem = field(repr=False, compare=False)
    path: str

    @property
    def is_local(self) -> bool:
        return "://" not in self.uri

    def child(self, relative: str | PurePosixPath) -> Location:
        relative = str(relative)
        local = self.is_local
        uri = os.path.join(self.uri, *relative.split("/")) if local else self.uri.rstrip("/") + "/" + relative
        return Location(uri, self.fs, self.path.rstrip("/") + "/" + relative)

    def exists(self) -> bool:
        import pyarrow.fs

        return self.fs.get_file_info(self.path).type != pyarrow.fs.FileType.NotFound

    def is_dir(self) -> bool:
        import pyarrow.fs

        return self.fs.get_file_info(self.path).type == pyarrow.fs.FileType.Directory


def locate(uri: str | os.PathLike) -> Location:
    """The :class:`Location` of a local path or a URI (``s3://bucket/key``, ``gs://...``, ``file:///...``, any
    fsspec protocol). Raises :class:`DatasetJobError` when no installed file system handles the URI."""
    text = os.fspath(uri)
    if "://" not in text:
        absolute = os.path.abspath(text)
        return Location(absolute, _local_file_system(), Path(absolute).as_posix())
    fs, path = _remote_file_system(text)
    return Location(text, fs, path)


@functools.lru_cache(maxsize=1)
def _local_file_system() -> pyarrow.fs.FileSystem:
    import pyarrow.fs

    return pyarrow.fs.LocalFileSystem()


def _remote_file_system(uri: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """pyarrow's own file system for ``uri`` (s3, gs, hdfs, abfs, file), else fsspec's wrapped for pyarrow;
    one client per scheme and authority (bucket, host) per process."""
    parsed = urlparse(uri)
    fs = _cached_remote(parsed.scheme, parsed.netloc)
    if isinstance(fs, tuple):  # fsspec: (handler-wrapped file system, fsspec file system)
        wrapped, inner = fs
        return wrapped, inner._strip_protocol(uri)
    if parsed.scheme in _BUCKET_SCHEMES:
        return fs, parsed.netloc + parsed.path  # pyarrow addresses objects as bucket/key
    if parsed.scheme in ("file", "hdfs", "viewfs"):
        return fs, parsed.path
    import pyarrow.fs

    _, path = pyarrow.fs.FileSystem.from_uri(uri)  # creates a client: only for schemes not known above
    return fs, path


@functools.lru_cache(maxsize=32)
def _cached_remote(scheme: str, netloc: str) -> Any:
    import pyarrow
    import pyarrow.fs

    root = f"{scheme}://{netloc}/"
    try:
        fs, _ = pyarrow.fs.FileSystem.from_uri(root)
        return fs
    except (pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError, ValueError):
        pass
    except OSError as err:
        raise DatasetJobError(f"cannot open {root}: {_one_line(err)}") from None
    try:
        import fsspec

        inner = fsspec.filesystem(scheme)
    except ImportError:
        raise DatasetJobError(f"no file system for {scheme}:// (pip install fsspec and its {scheme} package)") from None
    except (ValueError, OSError) as err:
        raise DatasetJobError(f"no file system for {scheme}://: {_one_line(err)}") from None
    return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(inner)), inner


def _uri_prefix(location: Location) -> str:
    """What turns a path of ``location.fs`` back into a URI: ``""`` locally, ``s3://`` for ``bucket/key``..."""
    if location.is_local:
        return ""
    if location.uri.endswith(location.path):
        return location.uri[: len(location.uri) - len(location.path)]
    return urlparse(location.uri).scheme + "://"


def _as_location(root: Location, path: str) -> Location:
    """The location of ``path`` (as ``root.fs`` lists it) on ``root``'s file system."""
    if root.is_local:
        return Location(os.path.normpath(path), root.fs, path)
    return Location(_uri_prefix(root) + path, root.fs, path)


def _walk(root: Location) -> Iterator[str]:
    """Paths (``root.fs``'s addressing) of every file under the folder ``root``."""
    import pyarrow.fs

    selector = pyarrow.fs.FileSelector(root.path, recursive=True, allow_not_found=True)
    try:
        infos = root.fs.get_file_info(selector)
    except OSError as err:
        raise DatasetJobError(f"cannot list {root.uri}: {_one_line(err)}") from None
    for info in infos:
        if info.type == pyarrow.fs.FileType.File:
            yield info.path


# -- planning ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkItem:
    """One input image and where its output goes: URIs (local paths, or ``scheme://...``), and the input's path
    relative to its root (folder, glob base, manifest folder), which the output keeps."""

    source: str
    relative: str
    target: str


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in INPUT_EXTENSIONS


def is_manifest(uri: str) -> bool:
    return PurePosixPath(uri).suffix.lower() in TEXT_MANIFESTS | PARQUET_MANIFESTS


def expand_input(item: str, output: Location | None = None) -> list[tuple[Location, str]]:
    """``(input location, relative path)`` of every image an INPUT names: a folder's images (recursively, not
    those under ``output``), a glob's matches, a manifest's entries, or the file itself. Raises
    :class:`DatasetJobError` for an input that names nothing."""
    if _GLOB_CHARS & set(item) and not locate(item).exists():
        return _expand_glob(item, output)
    location = locate(item)
    if location.is_dir():
        if output is not None and location.path.rstrip("/") == output.path.rstrip("/"):
            raise DatasetJobError(
                f"the output folder is the input folder {item}; choose another (a re-run would take outputs for inputs)"
            )
        found = [
            (_as_location(location, path), posixpath.relpath(path, location.path))
            for path in sorted(_walk(location))
            if is_image_name(path) and not _inside(path, output)
        ]
        if not found:
            raise DatasetJobError(f"folder {item} holds no images ({', '.join(sorted(INPUT_EXTENSIONS))})")
        return found
    if not location.exists():
        raise DatasetJobError(f"input not found: {item}")
    if is_manifest(item):
        return _read_manifest(location)
    return [(location, PurePosixPath(location.path).name)]


def _inside(path: str, folder: Location | None) -> bool:
    return folder is not None and path.startswith(folder.path.rstrip("/") + "/")


def _expand_glob(pattern: str, output: Location | None) -> list[tuple[Location, str]]:
    """A glob's matching image files, relative to the pattern's folder before its first wildcard; ``**``
    matches any number of folders."""
    pattern_location = locate(pattern)
    parts = pattern_location.path.split("/")
    fixed = next(i for i, part in enumerate(parts) if _GLOB_CHARS & set(part))
    base_path = "/".join(parts[:fixed]) or "/"
    base = _as_location(pattern_location, base_path)
    wildcard = parts[fixed:]
    found = []
    for path in sorted(_walk(base)):
        relative = posixpath.relpath(path, base_path)
        if is_image_name(path) and _glob_match(relative.split("/"), wildcard) and not _inside(path, output):
            found.append((_as_location(base, path), relative))
    if not found:
        raise DatasetJobError(f"no image file matches {pattern!r}")
    return found


def _glob_match(parts: Sequence[str], pattern: Sequence[str]) -> bool:
    """Whether path ``parts`` match glob ``pattern`` segments (``**``: zero or more whole segments)."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_glob_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _glob_match(parts[1:], pattern[1:])


def _read_manifest(manifest: Location) -> list[tuple[Location, str]]:
    """A manifest's entries (relative ones against the manifest's folder), each relative to their common
    folder; when entries are on different file systems, each keeps just its name."""
    suffix = PurePosixPath(manifest.path).suffix.lower()
    try:
        if suffix in PARQUET_MANIFESTS:
            entries = _parquet_paths(manifest)
        else:
            with manifest.fs.open_input_stream(manifest.path) as stream:
                text = stream.read().decode("utf-8")
            entries = [line.strip() for line in text.splitlines()]
            entries = [line for line in entries if line and not line.startswith("#")]
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetJobError(f"cannot read the manifest {manifest.uri}: {_one_line(err)}") from None
    if not entries:
        raise DatasetJobError(f"the manifest {manifest.uri} lists no files")
    folder = _as_location(manifest, posixpath.dirname(manifest.path))
    locations = [
        locate(entry) if "://" in entry or os.path.isabs(entry) else _relative_to(folder, entry) for entry in entries
    ]
    prefixes = {(_uri_prefix(loc), type(loc.fs)) for loc in locations}
    if len(prefixes) == 1:
        common = posixpath.commonpath([posixpath.dirname(loc.path) for loc in locations])
        return [(loc, posixpath.relpath(loc.path, common)) for loc in locations]
    return [(loc, PurePosixPath(loc.path).name) for loc in locations]


def _relative_to(folder: Location, entry: str) -> Location:
    if folder.is_local:
        return locate(os.path.join(folder.uri, entry))
    return _as_location(folder, posixpath.normpath(posixpath.join(folder.path, entry)))


def _parquet_paths(manifest: Location) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(manifest.path, filesystem=manifest.fs)
    names = [name for name in table.column_names if pa.types.is_string(table.schema.field(name).type)]
    name = "path" if "path" in table.column_names else (names[0] if len(names) == 1 else None)
    if name is None:
        raise DatasetJobError(
            f"the manifest {manifest.uri} needs a 'path' column (it has {', '.join(table.column_names)})"
        )
    return [str(value) for value in table.column(name).to_pylist() if value]


def plan_items(
    inputs: Sequence[str], output: str, output_name: Callable[[PurePosixPath], PurePosixPath]
) -> list[WorkItem]:
    """Every input image of ``inputs`` (see :func:`expand_input`) with its output URI under ``output``
    (``output_name`` names it from the input's relative path), without duplicates. An output that is an
    input, or that two inputs share, is refused with one sentence before anything runs, as in ``upscale``."""
    out = locate(output)
    if out.exists() and not out.is_dir():
        raise DatasetJobError(f"output folder {output} is an existing file, not a folder")
    items: list[WorkItem] = []
    sources: set[str] = set()
    claimed: dict[str, str] = {}
    for item in inputs:
        for location, relative in expand_input(item, out):
            if location.uri in sources:
                continue
            sources.add(location.uri)
            target = out.child(output_name(PurePosixPath(relative)))
            if target.uri in claimed:
                raise DatasetJobError(
                    f"{claimed[target.uri]} and {location.uri} would both be written to {target.uri};"
                    " use --ext or rename one"
                )
            claimed[target.uri] = location.uri
            items.append(WorkItem(location.uri, relative, target.uri))
    overwritten = sources & claimed.keys()
    if overwritten:
        raise DatasetJobError(
            f"output {min(overwritten)} would overwrite an input image; choose another output folder or --suffix"
        )
    return items


def finished_outputs(output: str) -> set[str]:
    """URIs of the files under the folder ``output`` now: one recursive listing (cheap on object stores too)."""
    out = locate(output)
    return {_as_location(out, path).uri for path in _walk(out)}


# -- processing one image, the same in every engine ---------------------------------------------------------


@dataclass
class Record:
    """One line of the report: what happened to one input."""

    input: str
    output: str
    status: Status
    seconds: float = 0.0
    reason: str | None = None
    output_pixels: int = 0
    notes: list[str] = field(default_factory=list)
    model: str | None = None


def process_item(upscaler: Upscaler, item: WorkItem) -> Record:
    """Upscale one input into its output; never raises for a problem of this file (it becomes a ``failed``
    record with its one-sentence reason). An output that appeared since planning (a retried Ray task, another
    run) is ``skipped``, never replaced."""
    start = time.perf_counter()
    try:
        target = locate(item.target)
        if target.exists():
            return Record(item.source, item.target, "skipped", time.perf_counter() - start, "output exists")
        source = locate(item.source)
        with _staged_input(source) as local_source, _staged_output(target) as local_target:
            upscaled = upscaler.upscale(local_source, local_target)
    except SRFormerError as err:
        with contextlib.suppress(SRFormerError, OSError):
            if locate(item.target).exists():  # another writer (a killed run's worker) published it meanwhile
                return Record(item.source, item.target, "skipped", time.perf_counter() - start, "output exists")
        return Record(item.source, item.target, "failed", time.perf_counter() - start, _one_line(err))
    except (OSError, ValueError, MemoryError) as err:  # a file system or decoder error the core did not word
        reason = f"{type(err).__name__}: {_one_line(err)}"
        return Record(item.source, item.target, "failed", time.perf_counter() - start, reason)
    seconds = time.perf_counter() - start
    notes = list(upscaled.notes)
    return Record(item.source, item.target, "done", seconds, None, upscaled.output_pixels, notes, upscaled.model)


@contextlib.contextmanager
def _staged_input(source: Location) -> Iterator[Path]:
    """The input as a local file: itself, or a temporary download keeping its name (formats go by extension)."""
    if source.is_local:
        yield Path(source.uri)
        return
    with tempfile.TemporaryDirectory(prefix="srformer-in-") as folder:
        local = Path(folder) / PurePosixPath(source.path).name
        with source.fs.open_input_stream(source.path) as stream, open(local, "wb") as handle:
            shutil.copyfileobj(stream, handle, 2**20)
        yield local


@contextlib.contextmanager
def _staged_output(target: Location) -> Iterator[Path]:
    """A local path to write the output to: the target itself (the core publishes it whole), or a temporary
    file uploaded to the target in one stream once complete (an object store publishes an object whole when
    its upload completes, so a killed upload leaves nothing)."""
    if target.is_local:
        yield Path(target.uri)
        return
    with tempfile.TemporaryDirectory(prefix="srformer-out-") as folder:
        local = Path(folder) / PurePosixPath(target.path).name
        yield local
        target.fs.create_dir(posixpath.dirname(target.path), recursive=True)
        with open(local, "rb") as handle, target.fs.open_output_stream(target.path) as stream:
            shutil.copyfileobj(handle, stream, 2**20)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


# -- report and summary -----------------------------------------------------------------------------------------


@dataclass
class Summary:
    """Counts of a run, and its speed over the images it upscaled."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    output_pixels: int = 0
    seconds: float = 0.0
    failures: list[Record] = field(default_factory=list)  # the first ones; the report has them all

    def add(self, record: Record) -> None:
        if record.status == "done":
            self.done += 1
            self.output_pixels += record.output_pixels
        elif record.status == "skipped":
            self.skipped += 1
        else:
            self.failed += 1
            if len(self.failures) < _KEPT_FAILURES:
                self.failures.append(record)

    @property
    def total(self) -> int:
        return self.done + self.skipped + self.failed

    def line(self, output: str, report: str) -> str:
        """``upscale``'s summary: ``12 written to OUT, 3 skipped (exist), 1 failed (...); 0.41 Mpx/s``."""
        text = f"{self.done} written to {output}"
        if self.skipped:
            text += f", {self.skipped} skipped (exist)"
        if self.failed:
            text += f", {self.failed} failed (reasons in {report})"
        speed = self.output_pixels / 1e6 / self.seconds if self.seconds > 0 else 0.0
        return f"{text}; {speed:.2f} Mpx/s"


class ReportWriter:
    """Appends one JSON line per record as results arrive, flushed, so that a killed driver leaves a report of
    everything finished so far. A remote report is written locally and uploaded when closed."""

    def __init__(self, report: str) -> None:
        self.location = locate(report)
        if self.location.is_local:
            self.local = Path(self.location.uri)
            self.local.parent.mkdir(parents=True, exist_ok=True)
            self._folder = None
        else:
            self._folder = tempfile.mkdtemp(prefix="srformer-report-")
            self.local = Path(self._folder) / PurePosixPath(self.location.path).name
        try:
            self.handle = open(self.local, "w", encoding="utf-8")  # noqa: SIM115 (open until close())
        except OSError as err:
            raise DatasetJobError(f"cannot write the report {report}: {_one_line(err)}") from None

    def write(self, record: Record) -> None:
        self.handle.write(json.dumps(asdict(record)) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()
        if self._folder is not None:
            try:
                self.location.fs.create_dir(posixpath.dirname(self.location.path), recursive=True)
                with open(self.local, "rb") as handle, self.location.fs.open_output_stream(self.location.path) as out:
                    shutil.copyfileobj(handle, out, 2**20)
            finally:
                shutil.rmtree(self._folder, ignore_errors=True)


def read_report(path: str | os.PathLike) -> list[Record]:
    """The records of a (local) report file."""
    with open(path, encoding="utf-8") as handle:
        return [Record(**json.loads(line)) for line in handle if line.strip()]


# -- engines ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the Ray engine runs.

    ``address``: a Ray cluster (``auto``, ``ray://head:10001``, ``host:6379``); ``None`` joins the cluster
    ``RAY_ADDRESS`` names, else starts one on this machine. ``workers``: actors, each holding the model once
    (``None``: as many as the cluster's CPUs, or GPUs, allow). ``cpus_per_worker`` may be fractional (0.5): a
    worker then runs one torch thread. ``gpus_per_worker`` > 0 runs each worker on a GPU."""

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0


def run_local(items: Sequence[WorkItem], upscaler: Upscaler) -> Iterator[Record]:
    """The local engine: every item in this process, one after another, with the model already loaded."""
    for item in items:
        yield process_item(upscaler, item)


class _UpscaleWorker:
    """A Ray Data actor: builds its :class:`Upscaler` once, then upscales the batches it is given. Every batch
    result is a table of report records, never an exception (see :func:`process_item`)."""

    def __init__(self, settings: UpscaleSettings, device: str, threads: int | None) -> None:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self.upscaler = Upscaler(settings, device)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        records = [
            process_item(self.upscaler, WorkItem(str(source), str(relative), str(target)))
            for source, relative, target in zip(batch["source"], batch["relative"], batch["target"], strict=True)
        ]
        columns = {name: [getattr(r, name) for r in records] for name in ("input", "output", "status", "seconds")}
        columns["reason"] = [r.reason or "" for r in records]  # one type per column
        columns["output_pixels"] = [r.output_pixels for r in records]
        columns["notes"] = ["\n".join(r.notes) for r in records]
        columns["model"] = [r.model or "" for r in records]
        return columns


def ray_missing_message() -> str:
    return 'the ray engine needs Ray Data: pip install "srformer[ray]" (or pip install "ray[data]")'


def run_ray(
    items: Sequence[WorkItem], settings: UpscaleSettings, options: RayOptions, progress_bars: bool = False
) -> Iterator[Record]:
    """The Ray engine: ``items`` as a Ray Data set, through a pool of :class:`_UpscaleWorker` actors (the model
    loaded once per actor), records streamed back to this driver as blocks finish.

    On a cluster, every node needs srformer installed (``pip install "srformer[ray]"``, or a ``runtime_env``),
    and the inputs and OUT must be reachable from every node (a shared disk, or object storage)."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise DatasetJobError(ray_missing_message()) from None
    if not items:
        return
    if not ray.is_initialized():
        address = options.address or os.environ.get("RAY_ADDRESS")
        try:
            if address is None:
                ray.init(include_dashboard=False, log_to_driver=True)  # a local instance of this machine's CPUs
            else:
                ray.init(address=address, log_to_driver=True)
        except Exception as err:  # noqa: BLE001 (Ray raises plain Exception when its processes do not start)
            where = f"join the Ray cluster at {address}" if address else "start a local Ray instance"
            raise DatasetJobError(f"cannot {where}: {_one_line(err)}") from None
    workers = options.workers or _workers_that_fit(ray.cluster_resources(), options)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress_bars
    gpu = options.gpus_per_worker > 0
    threads = None if gpu else max(1, math.floor(options.cpus_per_worker))
    rows_per_block = min(_MAX_ROWS_PER_BLOCK, max(1, len(items) // (16 * workers)))
    blocks = math.ceil(len(items) / rows_per_block)
    workers = min(workers, blocks)  # an actor without a block would only load the model
    dataset = ray.data.from_items([asdict(item) for item in items], override_num_blocks=blocks)
    results = dataset.map_batches(
        _UpscaleWorker,
        fn_constructor_kwargs={"settings": settings, "device": "cuda" if gpu else "cpu", "threads": threads},
        batch_size=1,  # one image per call: a batch is one record, and images differ in size anyway
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=options.cpus_per_worker,
        num_gpus=options.gpus_per_worker or None,
    )
    seen: set[str] = set()  # a task retried after its worker died may send a record again: keep the first
    for row in results.iter_rows():
        if row["input"] in seen:
            continue
        seen.add(row["input"])
        yield Record(
            row["input"],
            row["output"],
            row["status"],
            float(row["seconds"]),
            row["reason"] or None,
            int(row["output_pixels"]),
            row["notes"].split("\n") if row["notes"] else [],
            row["model"] or None,
        )


def _workers_that_fit(resources: dict[str, float], options: RayOptions) -> int:
    """As many workers as the cluster's GPUs (GPU workers) or CPUs hold, at least one."""
    if options.gpus_per_worker > 0:
        return max(1, int(resources.get("GPU", 0) // options.gpus_per_worker))
    return max(1, int(resources.get("CPU", 1) // options.cpus_per_worker))


# -- the job ----------------------------------------------------------------------------------------------------

Engine = Literal["local", "ray"]


def run_job(
    inputs: Sequence[str],
    output: str,
    settings: UpscaleSettings,
    *,
    engine: Engine = "local",
    ray_options: RayOptions | None = None,
    report: str | None = None,
    device: str | None = None,
    on_record: Callable[[Record, int], None] | None = None,
    progress_bars: bool = False,
) -> Summary:
    """Plan, skip what is finished, upscale the rest with ``engine``, and report (see the module's notes).

    ``report``: where the JSON-lines report goes (default ``OUT/_upscale_report.jsonl``). ``device``: the local
    engine's (default: CUDA when present); Ray workers use a GPU when ``ray_options.gpus_per_worker`` > 0.
    ``on_record(record, total)`` is called for each record as it arrives. Raises :class:`SRFormerError` (one
    sentence) when the job cannot start; per-file problems are records, never exceptions."""
    if engine not in ("local", "ray"):
        raise DatasetJobError(f"unknown engine {engine!r}; use local or ray")
    ray_options = ray_options or RayOptions()
    if engine == "ray":
        _check_ray_installed()
    # The driver opens the model too: a bad reference, scale or precision is one sentence before any work,
    # and the model's scale names the outputs.
    upscaler = Upscaler(settings, device if engine == "local" else "cpu")
    items = plan_items(inputs, output, upscaler.output_name)
    out = locate(output)
    try:
        out.fs.create_dir(out.path, recursive=True)
    except OSError as err:
        raise DatasetJobError(f"cannot create the output folder {output} ({_one_line(err)})") from None
    finished = finished_outputs(output)
    report = report or out.child(REPORT_NAME).uri
    writer = ReportWriter(report)
    summary = Summary()
    start = time.perf_counter()

    def record(result: Record) -> None:
        writer.write(result)
        summary.add(result)
        if on_record is not None:
            on_record(result, len(items))

    try:
        todo = []
        for item in items:
            if item.target in finished:
                record(Record(item.source, item.target, "skipped", 0.0, "output exists"))
            else:
                todo.append(item)
        if engine == "local":
            results: Iterable[Record] = run_local(todo, upscaler)
        else:
            del upscaler  # the workers hold their own; free the driver's memory
            results = run_ray(todo, settings, ray_options, progress_bars)
        for result in results:
            record(result)
    finally:
        summary.seconds = time.perf_counter() - start
        writer.close()
    return summary


def _check_ray_installed() -> None:
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise DatasetJobError(ray_missing_message()) from None
