"""Download and unpack DIV2K into its official layout.

    srformer prepare-div2k --root data/DIV2K                      # train + valid HR, LR x2 x3 x4
    srformer prepare-div2k --root data/DIV2K --splits valid --scales 4
    srformer prepare-div2k --root data/DIV2K --hr-only            # LR is then made by srformer

Result: ``<root>/DIV2K_train_HR/0001.png ...`` and ``<root>/DIV2K_train_LR_bicubic/X4/0001x4.png ...``
(valid likewise), which :func:`srformer.data.datasets.find_pairs` reads directly.

Downloads resume: bytes go to ``<name>.zip.part`` and an interrupted download (dropped connection, Ctrl-C,
a crash) continues from where it stopped with an HTTP ``Range`` request, both within a run (a few retries)
and when the command is run again. A download is accepted only when its size equals what the server
announced, its SHA-256 matches when one is known (``--sha256 NAME=HEX``), and every member of the zip
passes its CRC-32 check while being extracted. Archives are extracted next to the result under a
temporary name and moved into place only when complete and synced to disk (:func:`srformer.atomic.publish`);
folders already in place are not downloaded again.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from srformer.atomic import publish
from srformer.errors import DataError

DEFAULT_BASE_URL = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
SPLITS = ("train", "valid")
SCALES = (2, 3, 4)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    """One DIV2K zip file and the folder (relative to the root) that it unpacks to."""

    name: str  # e.g. "DIV2K_train_LR_bicubic_X4.zip"
    folder: str  # e.g. "DIV2K_train_LR_bicubic/X4"


def archives(splits: list[str], scales: list[int], hr_only: bool = False) -> list[Archive]:
    """The archives of the official release for these splits and scales, HR first."""
    result = []
    for split in splits:
        if split not in SPLITS:
            raise DataError(f"unknown DIV2K split {split!r}; use {' or '.join(SPLITS)}")
        result.append(Archive(f"DIV2K_{split}_HR.zip", f"DIV2K_{split}_HR"))
        for scale in [] if hr_only else scales:
            if scale not in SCALES:
                raise DataError(f"DIV2K has bicubic LR images for x2, x3 and x4, not x{scale}")
            result.append(Archive(f"DIV2K_{split}_LR_bicubic_X{scale}.zip", f"DIV2K_{split}_LR_bicubic/X{scale}"))
    return result


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _total_size(response: http.client.HTTPResponse, offset: int) -> int | None:
    """Full size of the file from a 206 ``Content-Range`` or a 200 ``Content-Length``."""
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and not content_range.endswith("/*"):
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    if length is None:
        return None
    return int(length) + (offset if response.status == 206 else 0)


def _fetch_once(url: str, part: Path, timeout: float) -> int | None:
    """Append the rest of ``url`` to ``part`` (resuming at its size); returns the full size if known.

    Raises OSError (including URLError and IncompleteRead) when the transfer breaks off.
    """
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "srformer"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left to fetch: the part file is already whole
            content_range = error.headers.get("Content-Range", "")
            return int(content_range.rsplit("/", 1)[1]) if "/" in content_range else offset
        raise
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the Range header: start over
        total = _total_size(response, offset)
        with open(part, "ab" if offset else "wb") as out:
            received = offset
            last_report = time.monotonic()
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                received += len(chunk)
                if time.monotonic() - last_report > 10:
                    last_report = time.monotonic()
                    share = f" ({100 * received / total:.0f}%)" if total else ""
                    _say(f"  {part.name[: -len('.part')]}: {_human(received)}{share}")
        if total is not None and received < total:
            raise http.client.IncompleteRead(b"", total - received)
    return total


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str | None = None, retries: int = 3, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming after interruptions.

    Retries ``retries`` times after a broken transfer, each time continuing from the bytes already on
    disk. Raises :class:`DataError` (with the partial file kept for the next run) if it still fails, or
    when the size or the SHA-256 does not match (the bad file is then removed).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if dest.exists():
        return dest
    attempt = 0
    while True:
        try:
            total = _fetch_once(url, part, timeout)
            break
        except urllib.error.HTTPError as error:
            raise DataError(f"cannot download {url}: HTTP {error.code} {error.reason}") from None
        except (OSError, http.client.HTTPException) as error:
            attempt += 1
            have = part.stat().st_size if part.exists() else 0
            if attempt > retries:
                kept = (
                    f"{_human(have)} kept in {part}, run the same command again to resume"
                    if have
                    else "try again later"
                )
                raise DataError(f"cannot download {url} ({error or type(error).__name__}); {kept}") from None
            _say(f"  download interrupted ({error or type(error).__name__}); resuming at {_human(have)}")
            time.sleep(min(2.0 ** (attempt - 1), 30.0))  # 1 s, 2 s, 4 s ...
    size = part.stat().st_size
    if total is not None and size != total:
        part.unlink()
        raise DataError(f"download of {url} has {size} bytes, the server announced {total}; removed it, try again")
    if sha256 is not None and sha256_of(part).lower() != sha256.lower():
        part.unlink()
        raise DataError(f"download of {url} does not match its SHA-256 {sha256}; removed it, try again")
    publish(part, dest)
    return dest


def _safe_members(archive: zipfile.ZipFile, zip_path: Path) -> list[zipfile.ZipInfo]:
    members = archive.infolist()
    for member in members:
        parts = PurePosixPath(member.filename).parts
        if member.filename.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
            raise DataError(f"{zip_path.name} contains an unsafe path {member.filename!r}; not extracting it")
    return members


def extract(zip_path: Path, root: Path, folder: str) -> Path:
    """Extract ``zip_path`` so that ``root/folder`` appears, all at once.

    Every member's CRC-32 is verified while extracting; the archive is unpacked into a temporary folder
    under ``root`` and ``folder`` is moved into place only afterwards. Raises :class:`DataError` for a
    damaged archive (which is removed, so that the next run downloads it again).
    """
    target = root / folder
    staging = root / f".extract-{zip_path.stem}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for member in _safe_members(archive, zip_path):
                archive.extract(member, staging)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        zip_path.unlink(missing_ok=True)
        raise DataError(f"{zip_path.name} is damaged ({error}); removed it, run again to download it anew") from None
    extracted = staging / folder
    if not extracted.is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"{zip_path.name} does not contain the expected folder {folder}/")
    target.parent.mkdir(parents=True, exist_ok=True)
    publish(extracted, target)  # every file synced first: a crash must not leave a present-looking broken folder
    shutil.rmtree(staging, ignore_errors=True)
    return target


def is_present(root: Path, archive: Archive) -> bool:
    """True when the archive's folder exists and holds at least one PNG (then it is not downloaded again)."""
    folder = root / archive.folder
    return folder.is_dir() and any(folder.glob("*.png"))


def prepare_div2k(
    root: str | Path,
    splits: list[str],
    scales: list[int],
    hr_only: bool = False,
    base_url: str = DEFAULT_BASE_URL,
    sha256: dict[str, str] | None = None,
    keep_archives: bool = False,
    retries: int = 3,
    timeout: float = 60.0,
) -> list[Path]:
    """Download and extract what is missing under ``root``; returns the folders of the requested archives."""
    root = Path(root)
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    folders = []
    for archive in archives(splits, scales, hr_only):
        folder = root / archive.folder
        folders.append(folder)
        if is_present(root, archive):
            _say(f"{archive.folder}: already there")
            continue
        zip_path = root / archive.name
        _say(f"{archive.name}: downloading from {base_url}")
        download(base_url + archive.name, zip_path, (sha256 or {}).get(archive.name), retries, timeout)
        _say(f"{archive.name}: extracting")
        extract(zip_path, root, archive.folder)
        count = sum(1 for _ in folder.glob("*.png"))
        _say(f"{archive.folder}: {count} images")
        if not keep_archives:
            zip_path.unlink(missing_ok=True)
    return folders
