"""``srformer serve``: the API through Starlette's test client (results bit-equal to ``srformer upscale``, every
bad input refused with one sentence, the queue limit, cancellation) and a real uvicorn server for a client
that goes away."""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason='srformer serve needs the web extra: pip install "srformer[web]"')
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx")

from starlette.testclient import TestClient  # noqa: E402

from srformer.cli import main as srformer_main  # noqa: E402
from srformer.web import engine  # noqa: E402
from srformer.web.app import Settings, create_app  # noqa: E402
from srformer.web.catalog import Catalog  # noqa: E402
from srformer.web.jobs import Job  # noqa: E402

FAST_MODEL = "x4_tiny"  # the fastest shipped model: these tests are about the server, not the model


def photo(width: int = 28, height: int = 20, seed: int = 0) -> Image.Image:
    """A small RGB test image: smooth gradients plus a little noise (so that auto sees a clean photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height) + 60], axis=-1)
    rgb = np.clip(rgb + rng.normal(0, 2, rgb.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(rgb)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def upscale_command(tmp_path: Path, name: str, data: bytes, model: str) -> bytes:
    """What ``srformer upscale --model MODEL`` writes for a file ``name`` holding ``data``."""
    folder = tmp_path / "cli"
    folder.mkdir()
    source = folder / name
    source.write_bytes(data)
    assert srformer_main(["upscale", str(source), "-o", str(folder / "out"), "--model", model, "--quiet"]) == 0
    (result,) = (folder / "out").iterdir()
    return result.read_bytes()


def one_sentence(response) -> str:
    """The error of a refused request, checked to be one sentence of JSON and no traceback."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    message = response.json()["error"]
    assert message and "\n" not in message and "Traceback" not in message, message
    return message


class Gate:
    """A runner that waits for :meth:`open` before each upscale, then runs the real one; counts its calls."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.calls = 0

    def open(self) -> None:
        self.opened.set()

    def __call__(self, handle, job: Job, on_tile) -> None:
        self.calls += 1
        assert self.opened.wait(60), "the test never opened the gate"
        engine.upscale(handle, job.source, job.result, max_pixels=None, on_tile=on_tile, metadata=job.metadata)


@pytest.fixture(scope="module")
def catalog(weights: Path) -> Catalog:
    """The shipped models and one ``--models`` file (the random tiny x2 model of conftest)."""
    return Catalog.build([weights], device="cpu")


@pytest.fixture
def client(catalog: Catalog, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(Settings(device="cpu", workdir=tmp_path / "work"), catalog=catalog)
    with TestClient(app) as test_client:
        yield test_client


def post(client: TestClient, data: bytes | None, route: str = "/api/upscale", name: str = "photo.png", **fields):
    files = None if data is None else {"image": (name, data, "application/octet-stream")}
    return client.post(route, files=files, data={k: str(v) for k, v in fields.items()})


def wait_for(condition, timeout: float = 60.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- the page and the model list -------------------------------------------------------------------------------


def test_page_is_self_contained_and_small(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    weight = len(page.content)
    for asset in ("/static/app.css", "/static/app.js"):
        assert f'"{asset}"' in page.text
        response = client.get(asset)
        assert response.status_code == 200
        weight += len(response.content)
        assert "http://" not in response.text and "https://" not in response.text  # nothing from elsewhere
    assert "http://" not in page.text and "https://" not in page.text
    assert weight < 50_000, f"the page weighs {weight} bytes"


def test_models_lists_auto_shipped_files_and_bicubic(client: TestClient, weights: Path) -> None:
    info = client.get("/api/models").json()
    models = {m["name"]: m for m in info["models"]}
    assert models["auto"]["scale"] is None and models["bicubic"]["kind"] == "bicubic"
    assert models[FAST_MODEL]["scale"] == 4 and models[FAST_MODEL]["kind"] == "shipped"
    assert models[weights.stem] == {**models[weights.stem], "scale": 2, "kind": "file"}
    assert str(weights) not in str(info)  # the server's paths stay on the server
    assert info["scales"] == [2, 3, 4] and info["default_scale"] == 4


# -- results: the bytes `srformer upscale` writes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "fmt", "name"),
    [(FAST_MODEL, "PNG", "photo.png"), ("auto", "JPEG", "shot.jpeg"), ("tiny_x2", "PNG", "photo.png")],
)
def test_upscale_equals_the_command(client: TestClient, tmp_path: Path, weights: Path, model, fmt, name) -> None:
    data = encoded(photo(), fmt, **({"quality": 97} if fmt == "JPEG" else {}))
    response = post(client, data, name=name, model=model)
    assert response.status_code == 200, response.text
    reference = str(weights) if model == "tiny_x2" else model
    assert response.content == upscale_command(tmp_path, name, data, reference)
    scale = 2 if model == "tiny_x2" else 4
    suffix = ".jpg" if fmt == "JPEG" else ".png"  # named by the format found, not the name sent
    assert response.headers["content-disposition"] == f'attachment; filename="{Path(name).stem}_x{scale}{suffix}"'
    assert Image.open(io.BytesIO(response.content)).size == (28 * scale, 20 * scale)
    assert float(response.headers["x-srformer-seconds"]) > 0
    if model == "auto":  # auto's choice is recorded in the file, as the command records it
        assert response.headers["x-srformer-model"] in ("x4", "real")


def test_jobs_report_progress_and_are_deleted(client: TestClient) -> None:
    submitted = post(client, encoded(photo(40, 36), "PNG"), route="/api/jobs", model=FAST_MODEL)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    wait_for(lambda: client.get(f"/api/jobs/{job_id}").json()["state"] == "done", what="the job")
    status = client.get(f"/api/jobs/{job_id}").json()
    assert status["done"] == status["total"] >= 1 and status["model"] == FAST_MODEL and status["seconds"] > 0
    result = client.get(f"/api/jobs/{job_id}/result")
    assert result.status_code == 200 and Image.open(io.BytesIO(result.content)).size == (160, 144)
    assert client.delete(f"/api/jobs/{job_id}").status_code == 204
    assert client.get(f"/api/jobs/{job_id}").status_code == 404
    assert client.get("/api/jobs/../../etc/passwd").status_code == 404


# -- bad input: one sentence, a 4xx, and the server keeps serving ------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG file whose header says ``width`` x ``height`` (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


BAD_UPLOADS = {
    "empty": (b"", {}, 400, "empty"),
    "not an image": (b"hello, this is text\n" * 10, {}, 415, "not an image"),
    "truncated PNG": (encoded(photo(), "PNG")[:-40], {}, 400, "truncated"),
    "truncated JPEG": (encoded(photo(256, 256), "JPEG")[:3000], {}, 400, "truncated"),  # headers whole, data cut
    "truncated JPEG header": (encoded(photo(), "JPEG")[:400], {}, 400, "truncated"),
    "bomb header": (png_claiming(40_000, 40_000), {}, 413, "limit"),  # over Pillow's own bomb limit too
    "over the pixel limit": (png_claiming(2100, 2100), {}, 413, "over this server's limit of 4.2 MP"),
    "unknown model": (encoded(photo(), "PNG"), {"model": "nope"}, 400, "no model 'nope'"),
    "a path for a model": (encoded(photo(), "PNG"), {"model": "/etc/passwd"}, 400, "no model"),
    "wrong scale": (encoded(photo(), "PNG"), {"model": FAST_MODEL, "scale": 2}, 400, "upscales x4"),
    "bad scale": (encoded(photo(), "PNG"), {"scale": "four"}, 400, "scale must be one of 2, 3, 4"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_upload_is_refused_in_one_sentence(client: TestClient, case: str) -> None:
    data, fields, status, words = BAD_UPLOADS[case]
    response = post(client, data, **fields)
    assert response.status_code == status, response.text
    assert words in one_sentence(response)
    workdir = client.app.state.jobs.workdir
    assert client.app.state.jobs.jobs == {}  # nothing queued, and the upload is gone
    assert not workdir.exists() or not any(workdir.iterdir())


def test_bad_requests_are_refused_in_one_sentence(client: TestClient) -> None:
    assert "field 'image'" in one_sentence(post(client, None, model=FAST_MODEL))
    assert "multipart" in one_sentence(client.post("/api/upscale", content=b"{}", headers={"content-type": "x/y"}))
    broken = client.post("/api/upscale", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data"})
    assert broken.status_code == 400 and one_sentence(broken)
    assert client.get("/api/nothing").status_code == 404 and one_sentence(client.get("/api/nothing"))
    assert client.get("/api/upscale").status_code == 405
    assert post(client, encoded(photo(), "PNG"), model=FAST_MODEL).status_code == 200  # still serving


def test_body_over_the_limit_is_refused_from_its_length(catalog: Catalog, tmp_path: Path) -> None:
    settings = Settings(device="cpu", workdir=tmp_path / "work", max_upload_bytes=200_000)
    big = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    data = encoded(Image.fromarray(big), "PNG")  # ~480 KB: a real image, only too large
    with TestClient(create_app(settings, catalog=catalog)) as client:
        response = post(client, data, model=FAST_MODEL)
        assert response.status_code == 413 and "larger than" in one_sentence(response)

        assert client.app.state.jobs.jobs == {}
        assert post(client, encoded(photo(), "PNG"), model=FAST_MODEL).status_code == 200


# -- the queue: one upscale at a time per model, a few waiting, 429 beyond; cancellation --------------------------


@pytest.fixture
def gated(catalog: Catalog, tmp_path: Path) -> Iterator[tuple[TestClient, Gate]]:
    gate = Gate()
    settings = Settings(device="cpu", workdir=tmp_path / "work", max_waiting=1)
    with TestClient(create_app(settings, catalog=catalog, runner=gate)) as client:
        yield client, gate
        gate.open()


def state_of(client: TestClient, job_id: str) -> str:
    return client.get(f"/api/jobs/{job_id}").json()["state"]


def test_queue_full_is_429_and_jobs_run_one_at_a_time_per_model(gated) -> None:
    client, gate = gated
    data = encoded(photo(), "PNG")
    first = post(client, data, route="/api/jobs", model=FAST_MODEL).json()["id"]
    wait_for(lambda: state_of(client, first) == "running", what="the first job to start")
    second = post(client, data, route="/api/jobs", model=FAST_MODEL).json()
    assert second["state"] == "queued" and second["position"] == 1  # behind the running one on this model
    refused = post(client, data, route="/api/jobs", model=FAST_MODEL)
    assert refused.status_code == 429 and "busy" in one_sentence(refused)
    assert post(client, data, model="bicubic").status_code == 429  # the limit is over all models
    gate.open()
    wait_for(lambda: state_of(client, second["id"]) == "done", what="the queued job")
    assert state_of(client, first) == "done" and gate.calls == 2
    assert post(client, data, route="/api/jobs", model=FAST_MODEL).status_code == 202  # room again


def test_cancel_stops_a_running_job_and_skips_a_waiting_one(gated) -> None:
    client, gate = gated
    data = encoded(photo(64, 64), "PNG")
    running = post(client, data, route="/api/jobs", model=FAST_MODEL).json()["id"]
    wait_for(lambda: state_of(client, running) == "running", what="the job to start")
    waiting = post(client, data, route="/api/jobs", model=FAST_MODEL).json()["id"]
    for job_id in (running, waiting):
        assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 200
    gate.open()
    wait_for(lambda: state_of(client, waiting) == "cancelled", what="the cancel")
    assert state_of(client, running) == "cancelled" and gate.calls == 1  # the waiting one never ran
    refused = client.get(f"/api/jobs/{running}/result")
    assert refused.status_code == 409 and "cancelled" in one_sentence(refused)
    job = client.app.state.jobs.jobs[running]
    assert not job.result.exists() and not job.source.exists()


def test_a_job_nobody_asks_about_is_cancelled(catalog: Catalog, tmp_path: Path) -> None:
    gate = Gate()
    settings = Settings(device="cpu", workdir=tmp_path / "work", abandon_after=0.3)
    with TestClient(create_app(settings, catalog=catalog, runner=gate)) as client:
        job_id = post(client, encoded(photo(), "PNG"), route="/api/jobs", model=FAST_MODEL).json()["id"]
        job = client.app.state.jobs.jobs[job_id]
        wait_for(job.cancel_requested.is_set, timeout=10, what="the abandoned job to be cancelled")
        gate.open()
        wait_for(job.finished.is_set, what="the job to stop")
        assert job.state == "cancelled" and not job.result.exists()


# -- a real server: a client that goes away cancels its upscale ---------------------------------------------------


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free port of 127.0.0.1; yields the base address."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=30, what="uvicorn to start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def test_closing_the_connection_cancels_the_upscale(catalog: Catalog, tmp_path: Path) -> None:
    gate = Gate()
    app = create_app(Settings(device="cpu", workdir=tmp_path / "work"), catalog=catalog, runner=gate)
    data = encoded(photo(), "PNG")
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.png"\r\n\r\n'.encode()
        + data
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{FAST_MODEL}\r\n'
        f"--{boundary}--\r\n".encode()
    )
    with live_server(app) as address:
        port = int(address.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as connection:
            head = (
                f"POST /api/upscale HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
            )
            connection.sendall(head.encode() + body)
            jobs = app.state.jobs
            wait_for(lambda: any(job.state == "running" for job in jobs.jobs.values()), what="the upscale to start")
            (job,) = jobs.jobs.values()
        wait_for(job.cancel_requested.is_set, timeout=10, what="the cancel")
        gate.open()
        wait_for(job.finished.is_set, what="the job to stop")
        assert job.state == "cancelled"
        wait_for(lambda: not job.folder.exists(), timeout=10, what="the job's files to go")


def test_a_streamed_body_is_stopped_at_the_limit(catalog: Catalog, tmp_path: Path) -> None:
    """No Content-Length (chunked): the bytes are counted as they arrive and the answer comes before the end."""
    settings = Settings(device="cpu", workdir=tmp_path / "work", max_upload_bytes=100_000)
    app = create_app(settings, catalog=catalog)
    boundary = "b0undary"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.png"\r\n\r\n'.encode()
    with live_server(app) as address:
        port = int(address.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            connection.sendall(
                f"POST /api/upscale HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
            )
            chunk = part + b"\0" * 32768
            for _ in range(8):  # 256 KB of an upload that never ends
                connection.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                chunk = b"\0" * 32768
            answer = b""
            while not answer.endswith(b"}") and (data := connection.recv(65536)):
                answer += data
        answer = answer.decode(errors="replace")
        assert answer.startswith("HTTP/1.1 413"), answer
        assert "larger than this server's limit" in answer
        assert app.state.jobs.jobs == {}


# -- the command -----------------------------------------------------------------------------------------------


def test_serve_refuses_bad_options_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from srformer.commands.serve import main

    assert main(["--models", str(tmp_path / "missing.safetensors"), "--port", "0"]) == 2
    assert main(["--max-pixels", "0"]) == 2
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        assert main(["--port", str(busy.getsockname()[1])]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors), errors
    assert "missing.safetensors" in errors[0] and "--max-pixels" in errors[1] and "--port" in errors[2]


def test_serve_without_the_web_extra_says_how_to_install_it(monkeypatch, capsys) -> None:
    import importlib.util

    from srformer.commands.serve import main

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else find_spec(name, *a)
    )
    assert main([]) == 2
    assert capsys.readouterr().err.strip() == (
        'error: srformer serve needs uvicorn; install them with: pip install "srformer[web]"'
    )
