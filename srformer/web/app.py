"""The web server of ``srformer serve``: one page to upscale and compare, and the API it (or a script) uses.

:func:`create_app` builds a Starlette application. The page is ``GET /`` (static files under
``/static/``); everything else is JSON or image bytes under ``/api/``. Errors are always
``{"error": "<one sentence>"}`` with a 4xx status (5xx only for a bug, still one sentence, the traceback
going to the server's log only).

API
---
``GET /api/models``
    ``{"models": [{"name", "scale", "kind", "description"}, ...], "scales": [2, 3, 4], "default_scale": 4,
    "max_pixels": N, "max_upload_bytes": N}``. ``kind`` is ``auto``, ``shipped``, ``file`` or ``bicubic``;
    ``scale`` is ``null`` for ``auto`` and ``bicubic`` (any scale in ``scales``). ``auto`` picks a shipped
    model per image (:func:`srformer.autoselect.choose_model`) and records its choice in PNG results, as
    ``srformer upscale`` does; the job's ``reason`` says why.

``POST /api/upscale`` (multipart form: ``image``, the file; optional ``model``, a name from ``/api/models``,
default ``auto``; optional ``scale``, default the model's own, or 4)
    Waits for the upscale and answers with the result's bytes, the same bytes ``srformer upscale`` writes for
    that file (format: the upload's, PNG for formats that cannot be written), with the headers
    ``Content-Disposition`` (a file name ``<stem>_x<scale>.<ext>``), ``X-SRFormer-Model``,
    ``X-SRFormer-Description`` and ``X-SRFormer-Seconds``. A client that disconnects cancels its upscale.
    Example: ``curl -F image=@photo.jpg -F model=x4 http://127.0.0.1:8000/api/upscale -o photo_x4.jpg``.

``POST /api/jobs`` (the same form)
    Queues the upscale and answers at once, 202, with the job's status (below); the page uses this to show
    progress. A job that nobody asks about for a while (90 s by default: its page was closed) is cancelled.

``GET /api/jobs/<id>``
    ``{"id", "state", "model", "description", "reason", "scale", "done", "total", "seconds", "error",
    "download_name", "position"}``: ``state`` is ``queued``, ``running``, ``done``, ``failed`` or
    ``cancelled``; ``done``/``total`` count tiles; ``position`` counts the jobs ahead on the same model.

``GET /api/jobs/<id>/result``
    The result's bytes with the headers of ``/api/upscale``; 409 while the job is unfinished.

``POST /api/jobs/<id>/cancel`` (also sent by the page with ``navigator.sendBeacon`` when it closes), and
``DELETE /api/jobs/<id>`` (cancel, and forget the job and its files).

Statuses: 400 (bad form, unknown model or scale, unreadable or truncated image), 404 (no such job), 409 (not
finished, or cancelled), 413
(upload over the size limit, checked from ``Content-Length`` and while the body streams in, before anything
is decoded; or an image over the pixel limit, read from its header), 415 (not an image), 422 (the upscale
itself refused the image), 429 (queue full: try again later).

Limits and safety: the server listens on 127.0.0.1 unless told otherwise; only model names from
``/api/models`` are accepted, never a path; uploads are stored under names the server makes, in a folder of
its own, and deleted with their job; no model can be uploaded; only the decoders of
:data:`srformer.web.uploads.UPLOAD_FORMATS` ever see an upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from srformer.errors import SRFormerError
from srformer.web import engine
from srformer.web.catalog import AUTO, Catalog
from srformer.web.jobs import DONE, FINAL_STATES, Job, JobQueue, QueueFull, Runner
from srformer.web.uploads import UploadError, check_upload

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"

#: Multipart framing and the small form fields, allowed on top of the image's own size limit.
_FORM_OVERHEAD = 64 * 1024

_MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
_MEDIA_TYPES |= {".tif": "image/tiff", ".tiff": "image/tiff"}

#: Uploads decoded (checked) at once: each holds the decoded image in memory.
_CHECKS_AT_ONCE = threading.BoundedSemaphore(2)


@dataclass(frozen=True)
class Settings:
    """What ``srformer serve`` configures.

    Attributes:
        models: weights files or run folders offered besides the shipped models.
        device: where the models run (``None``: CUDA when present, else the CPU, as ``srformer upscale``).
        max_upload_bytes: largest upload accepted.
        max_pixels: largest image accepted, in pixels (width * height of the upload).
        max_waiting: upscales that may wait in the queue (over all models); more get 429.
        abandon_after: seconds without a look after which an unfinished job is cancelled.
        keep_for: seconds without a look after which a finished job's result is deleted.
        workdir: the folder for uploads and results (default: a new temporary folder, deleted at shutdown).
    """

    models: tuple[Path, ...] = ()
    device: str | None = None
    max_upload_bytes: int = 50 * 2**20
    max_pixels: int = 4_200_000
    max_waiting: int = 4
    abandon_after: float = 90.0
    keep_for: float = 600.0
    workdir: Path | None = None


class ApiError(Exception):
    """An answer ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class BodyTooLarge(Exception):
    """The request body grew past the limit while it streamed in."""


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def download_name(client_name: str | None, scale: int, suffix: str) -> str:
    """``<stem>_x<scale><suffix>`` for the Content-Disposition header (the client's name, sanitised, is only
    ever used here, never on disk)."""
    stem = Path(client_name or "").stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:80] or "image"
    return f"{stem}_x{scale}{suffix}"


def create_app(
    settings: Settings | None = None,
    *,
    catalog: Catalog | None = None,
    opener: Callable[[str, int], Any] | None = None,
    runner: Runner | None = None,
) -> Starlette:
    """The server's application. ``catalog`` defaults to :meth:`Catalog.build` over ``settings.models``;
    ``opener`` and ``runner`` (how a model is opened, how a file is upscaled) default to :mod:`.engine`."""
    settings = settings or Settings()
    catalog = catalog or Catalog.build(settings.models, settings.device)
    opener = opener or (lambda reference, scale: engine.open_handle(reference, scale, settings.device))
    if runner is None:

        def runner(handle: Any, job: Job, on_tile: Callable[[int, int], None]) -> None:
            engine.upscale(
                handle, job.source, job.result, max_pixels=settings.max_pixels, on_tile=on_tile, metadata=job.metadata
            )

    jobs = JobQueue(
        settings.workdir,
        opener,
        runner,
        max_waiting=settings.max_waiting,
        abandon_after=settings.abandon_after,
        keep_for=settings.keep_for,
        preopened=catalog.opened,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await asyncio.to_thread(jobs.close)

    async def models(request: Request) -> Response:
        return JSONResponse(
            {
                "models": catalog.as_json(),
                "scales": catalog.scales(),
                "default_scale": engine.default_scale(),
                "max_pixels": settings.max_pixels,
                "max_upload_bytes": settings.max_upload_bytes,
            }
        )

    async def receive_job(request: Request) -> Job:
        """Read the form, store and check the upload, and queue its job; raises :class:`ApiError`."""
        limit = settings.max_upload_bytes + _FORM_OVERHEAD
        too_large = f"the upload is larger than this server's limit of {settings.max_upload_bytes / 2**20:.0f} MB"
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise ApiError(413 if length.isdigit() else 400, too_large if length.isdigit() else "bad Content-Length")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(400, "send a multipart form (multipart/form-data) with the image in the field 'image'")
        limited = Request(request.scope, _limited_receive(request.receive, limit))
        try:
            form = await limited.form(max_files=2, max_fields=8)
        except BodyTooLarge:
            raise ApiError(413, too_large) from None
        except HTTPException as err:
            raise ApiError(400, f"the multipart form cannot be read ({str(err.detail).rstrip('.')})") from None
        try:
            image = form.get("image")
            model, scale = form.get("model"), form.get("scale")
            if not isinstance(image, UploadFile):
                raise ApiError(400, "send the image file in the multipart form field 'image'")
            if not isinstance(model, (str, type(None))) or not isinstance(scale, (str, type(None))):
                raise ApiError(400, "the form fields 'model' and 'scale' must be text, not files")
            try:
                offer, scale_value = catalog.pick(model, scale)
            except UploadError as err:
                raise ApiError(err.status, str(err)) from None
            job_id, folder = jobs.new_folder()
            try:
                return await _queue(job_id, folder, image, offer, scale_value)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
        finally:
            await form.close()

    async def _queue(job_id: str, folder: Path, image: UploadFile, offer: Any, scale: int) -> Job:
        upload = folder / "upload"
        await asyncio.to_thread(_save, image, upload)
        try:
            info = await asyncio.to_thread(_check, upload, settings.max_pixels)
        except UploadError as err:
            raise ApiError(err.status, str(err)) from None
        source = upload.rename(upload.with_suffix(info.suffix))
        reference, reason, metadata = offer.reference, "", {}
        if offer.name == AUTO:
            try:
                choice = await asyncio.to_thread(engine.choose, source, scale)
            except SRFormerError as err:
                raise ApiError(400, " ".join(str(err).split())) from None
            reference, reason, metadata = choice.reference, choice.reason, engine.auto_metadata(choice)
        suffix = engine.output_suffix(source)
        job = Job(
            id=job_id,
            folder=folder,
            source=source,
            result=folder / f"result{suffix}",
            reference=reference,
            model=offer.name if offer.name != AUTO else reference,
            scale=scale,
            download_name=download_name(image.filename, scale, suffix),
            reason=reason,
            metadata=metadata,
        )
        try:
            return jobs.submit(job)
        except QueueFull as err:
            raise ApiError(429, str(err)) from None

    def result_response(job: Job, background: BackgroundTask | None = None) -> Response:
        headers = {
            "Content-Disposition": f'attachment; filename="{job.download_name}"',
            "X-SRFormer-Model": _header_text(job.model),
            "X-SRFormer-Description": _header_text(job.description),
            "X-SRFormer-Seconds": f"{job.seconds or 0:.3f}",
            "Cache-Control": "no-store",
        }
        media_type = _MEDIA_TYPES.get(job.result.suffix, "application/octet-stream")
        return FileResponse(job.result, media_type=media_type, headers=headers, background=background)

    def failure(job: Job) -> ApiError:
        if job.state == DONE:
            return ApiError(500, "the result is missing")
        if job.state == "cancelled":
            return ApiError(409, "the upscale was cancelled")
        return ApiError(422 if job.error_is_users else 500, job.error)

    async def upscale(request: Request) -> Response:
        job = await receive_job(request)
        answered = False
        try:
            while not job.finished.is_set():
                job.touch()
                if await request.is_disconnected():
                    log.info("job %s: the client went away; cancelled", job.id)
                    return Response(status_code=499)
                await asyncio.sleep(0.05)
            if job.state != DONE or not job.result.is_file():
                raise failure(job)
            answered = True
            return result_response(job, BackgroundTask(jobs.remove, job.id))
        finally:
            if not answered:
                jobs.remove(job.id)

    async def submit(request: Request) -> Response:
        job = await receive_job(request)
        return JSONResponse(status_of(job), status_code=202)

    def find(request: Request) -> Job:
        job = jobs.get(request.path_params["job_id"])
        if job is None:
            raise ApiError(404, "there is no such job (finished jobs are kept for a while, then deleted)")
        return job

    def status_of(job: Job) -> dict[str, Any]:
        return {**job.status(), "position": jobs.position(job)}

    async def job_status(request: Request) -> Response:
        return JSONResponse(status_of(find(request)))

    async def job_result(request: Request) -> Response:
        job = find(request)
        if job.state not in FINAL_STATES:
            raise ApiError(409, f"the job is still {job.state}; ask again when its state is 'done'")
        if job.state != DONE or not job.result.is_file():
            raise failure(job)
        return result_response(job)

    async def job_cancel(request: Request) -> Response:
        job = find(request)
        jobs.cancel(job.id)
        return JSONResponse(status_of(job))

    async def job_delete(request: Request) -> Response:
        jobs.remove(find(request).id)
        return Response(status_code=204)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error(exc.status, exc.message)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        messages = {404: "there is nothing at this address", 405: "this address does not take that method"}
        return error(exc.status_code, messages.get(exc.status_code, str(exc.detail)))

    async def internal_error(request: Request, exc: Exception) -> Response:
        return error(500, "the server failed with an internal error; see its log")

    routes = [
        Route("/", page),
        Route("/api/models", models),
        Route("/api/upscale", upscale, methods=["POST"]),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs/{job_id}", job_status),
        Route("/api/jobs/{job_id}", job_delete, methods=["DELETE"]),
        Route("/api/jobs/{job_id}/result", job_result),
        Route("/api/jobs/{job_id}/cancel", job_cancel, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: internal_error},
    )
    app.state.jobs = jobs
    app.state.catalog = catalog
    return app


def _limited_receive(receive: Callable[[], Any], limit: int) -> Callable[[], Any]:
    """``receive`` that raises :class:`BodyTooLarge` once more than ``limit`` body bytes have arrived."""
    received = 0

    async def limited() -> Any:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
        return message

    return limited


def _header_text(text: str) -> str:
    """``text`` as a header value can carry it: printable ASCII, anything else as ``?``."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def _save(image: UploadFile, destination: Path) -> None:
    image.file.seek(0)
    with open(destination, "wb") as handle:
        shutil.copyfileobj(image.file, handle, 2**20)


def _check(path: Path, max_pixels: int) -> Any:
    with _CHECKS_AT_ONCE:
        return check_upload(path, max_pixels)
