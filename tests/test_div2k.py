"""DIV2K download + prepare against small zip archives served on 127.0.0.1, including broken transfers."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from srformer.commands import prepare_div2k
from srformer.data import div2k
from srformer.data.cache import ImageCache
from srformer.data.datasets import find_pairs
from srformer.data.io import read_rgb_uint8
from srformer.errors import DataError


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


HR_IMAGES = {"0801.png": skimage.data.astronaut()[:96, :128], "0802.png": skimage.data.coffee()[:64, :80]}


@pytest.fixture(scope="module")
def archives() -> dict[str, bytes]:
    hr = {f"DIV2K_valid_HR/{name}": png_bytes(image) for name, image in HR_IMAGES.items()}
    lr = {
        f"DIV2K_valid_LR_bicubic/X4/{name[:-4]}x4.png": png_bytes(np.ascontiguousarray(image[::4, ::4]))
        for name, image in HR_IMAGES.items()
    }
    return {"DIV2K_valid_HR.zip": make_zip(hr), "DIV2K_valid_LR_bicubic_X4.zip": make_zip(lr)}


class FileServer:
    """Serves ``files`` with Range support; the first ``drops`` GETs of each file send half the body and
    close the connection (what a broken transfer looks like to the client)."""

    def __init__(self, files: dict[str, bytes], drops: int = 1) -> None:
        self.files = files
        self.drops_left = dict.fromkeys(files, drops)
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.drops_left[name] > 0:
                    server.drops_left[name] -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/DIV2K/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(div2k.time, "sleep", lambda seconds: None)


@pytest.fixture
def server(archives: dict[str, bytes]) -> Iterator[FileServer]:
    with FileServer(archives) as running:
        yield running


def test_prepare_resumes_broken_transfers(server: FileServer, archives, tmp_path: Path, no_sleep) -> None:
    folders = div2k.prepare_div2k(tmp_path, ["valid"], [4], base_url=server.url, timeout=5)
    assert folders == [tmp_path / "DIV2K_valid_HR", tmp_path / "DIV2K_valid_LR_bicubic" / "X4"]
    for name, image in HR_IMAGES.items():
        assert np.array_equal(read_rgb_uint8(tmp_path / "DIV2K_valid_HR" / name), image)
    # Each file: a first GET that broke off halfway, then one Range request for exactly the rest.
    for name, data in archives.items():
        assert [r for n, r in server.requests if n == name] == [None, f"bytes={len(data) // 2}-"]
    assert not list(tmp_path.glob("*.zip*")) and not list(tmp_path.glob(".extract-*"))
    # The official layout is read as pairs with their LR files, and the LR sizes match.
    pairs = find_pairs(tmp_path / "DIV2K_valid_HR", 4)
    assert [p.lr.name for p in pairs] == ["0801x4.png", "0802x4.png"]
    assert ImageCache(tmp_path / "cache").prepare(pairs[1], 4).lr_shape == (16, 20, 3)
    # Run again: nothing is downloaded.
    count = len(server.requests)
    div2k.prepare_div2k(tmp_path, ["valid"], [4], base_url=server.url, timeout=5)
    assert len(server.requests) == count


def test_interrupted_run_resumes_in_the_next_run(archives, tmp_path: Path, no_sleep, capsys) -> None:
    data = archives["DIV2K_valid_HR.zip"]
    with FileServer(archives, drops=1) as server:
        exit_code = prepare_div2k.main(
            ["--root", str(tmp_path), "--splits", "valid", "--hr-only", "--base-url", server.url, "--retries", "0"]
        )
        assert exit_code == 2
        assert "run the same command again to resume" in capsys.readouterr().err
        part = tmp_path / "DIV2K_valid_HR.zip.part"
        assert part.stat().st_size == len(data) // 2
        assert (
            prepare_div2k.main(
                ["--root", str(tmp_path), "--splits", "valid", "--hr-only", "--base-url", server.url, "--keep-archives"]
            )
            == 0
        )
        assert server.requests[-1] == ("DIV2K_valid_HR.zip", f"bytes={len(data) // 2}-")
    assert (tmp_path / "DIV2K_valid_HR.zip").read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "DIV2K_valid_HR").iterdir()) == ["0801.png", "0802.png"]


def test_sha256_checked(server: FileServer, archives, tmp_path: Path, no_sleep) -> None:
    good = hashlib.sha256(archives["DIV2K_valid_HR.zip"]).hexdigest()
    with pytest.raises(DataError, match="does not match its SHA-256"):
        div2k.download(server.url + "DIV2K_valid_HR.zip", tmp_path / "a.zip", sha256="0" * 64, timeout=5)
    assert not (tmp_path / "a.zip").exists() and not (tmp_path / "a.zip.part").exists()
    assert div2k.download(server.url + "DIV2K_valid_HR.zip", tmp_path / "b.zip", sha256=good, timeout=5).exists()


def test_damaged_archive_is_rejected(tmp_path: Path) -> None:
    data = bytearray(make_zip({"DIV2K_valid_HR/0801.png": png_bytes(HR_IMAGES["0801.png"])}))
    offset = data.index(b"IDAT") + 8  # inside the stored PNG: the zip's CRC-32 no longer matches
    data[offset] ^= 0xFF
    (tmp_path / "DIV2K_valid_HR.zip").write_bytes(bytes(data))
    with pytest.raises(DataError, match="damaged"):
        div2k.extract(tmp_path / "DIV2K_valid_HR.zip", tmp_path, "DIV2K_valid_HR")
    assert not (tmp_path / "DIV2K_valid_HR").exists()
    assert not (tmp_path / "DIV2K_valid_HR.zip").exists()  # removed, so the next run downloads it again


def test_unsafe_paths_and_wrong_contents(tmp_path: Path) -> None:
    (tmp_path / "evil.zip").write_bytes(make_zip({"../outside.png": b"x"}))
    with pytest.raises(DataError, match="unsafe path"):
        div2k.extract(tmp_path / "evil.zip", tmp_path / "root", "DIV2K_valid_HR")
    assert not (tmp_path / "outside.png").exists()
    (tmp_path / "other.zip").write_bytes(make_zip({"something/else.png": b"x"}))
    with pytest.raises(DataError, match="expected folder DIV2K_valid_HR/"):
        div2k.extract(tmp_path / "other.zip", tmp_path / "root", "DIV2K_valid_HR")


def test_missing_file_and_bad_arguments(server: FileServer, tmp_path: Path, capsys) -> None:
    with pytest.raises(DataError, match="HTTP 404"):
        div2k.download(server.url + "nothing.zip", tmp_path / "n.zip", timeout=5)
    assert prepare_div2k.main(["--root", str(tmp_path), "--scales", "8"]) == 2
    assert capsys.readouterr().err.strip() == "error: DIV2K has bicubic LR images for x2, x3 and x4, not x8"
    assert [a.name for a in div2k.archives(["train"], [2, 4])] == [
        "DIV2K_train_HR.zip",
        "DIV2K_train_LR_bicubic_X2.zip",
        "DIV2K_train_LR_bicubic_X4.zip",
    ]
