"""Upscale jobs of the web server: a small queue, one worker thread per model, cancellation and clean-up.

A job owns a private folder under the server's work folder (named by the server, never by a client) holding
the uploaded file and its result. Each model has its own worker thread, created on its first job, that opens
the model once and then runs that model's jobs one at a time, so the event loop never runs the model and two
models can work side by side. At most ``max_waiting`` jobs wait (over all models); :meth:`JobQueue.submit`
raises :class:`QueueFull` beyond that.

A job is cancelled when asked (:meth:`JobQueue.cancel`), and when nobody has asked about it for
``abandon_after`` seconds (the page that started it was closed): a waiting job never starts, a running one
stops after its current tile and leaves no file. Finished jobs are deleted, files and all, once nobody has
asked about them for ``keep_for`` seconds.
"""

from __future__ import annotations

import logging
import queue
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srformer.errors import SRFormerError

log = logging.getLogger(__name__)

#: Job states; the last three are final.
QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINAL_STATES = frozenset({DONE, FAILED, CANCELLED})

#: ``opener(reference, scale)`` -> an opened model (any object the runner takes).
Opener = Callable[[str, int], Any]
#: ``runner(model, job, on_tile)``: write the upscaled ``job.source`` to ``job.result``.
Runner = Callable[[Any, "Job", Callable[[int, int], None]], None]


class QueueFull(SRFormerError):
    """Too many jobs are waiting; the client should try again later."""


class Cancelled(Exception):
    """Raised from a tile callback to stop a cancelled job."""


@dataclass
class Job:
    """One upscale: its files, its progress and its outcome. Fields are written by the worker thread and read
    by the server; each is a single assignment, so readers see whole values."""

    id: str
    folder: Path
    source: Path
    result: Path
    reference: str
    model: str
    scale: int
    download_name: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    description: str = ""
    state: str = QUEUED
    done: int = 0
    total: int = 0
    seconds: float | None = None
    error: str = ""
    error_is_users: bool = True
    removed: bool = False
    last_seen: float = field(default_factory=time.monotonic)
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    def touch(self) -> None:
        """Someone still wants this job (a page polling it, a request waiting for it)."""
        self.last_seen = time.monotonic()

    def status(self) -> dict[str, Any]:
        """The job as the API reports it (``GET /api/jobs/<id>``)."""
        return {
            "id": self.id,
            "state": self.state,
            "model": self.model,
            "description": self.description,
            "reason": self.reason,
            "scale": self.scale,
            "done": self.done,
            "total": self.total,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "error": self.error or None,
            "download_name": self.download_name,
        }


class JobQueue:
    """Jobs by id, one worker thread per model reference, and a reaper thread for abandoned and stale jobs.

    Args:
        workdir: a folder of the server's own; each job gets a folder inside it. ``None``: a new temporary
            folder, made at the first job and deleted by :meth:`close`.
        opener: opens a model by reference and scale (once per model, in its worker thread).
        runner: upscales one file with an opened model.
        max_waiting: jobs allowed to wait (not yet running) over all models.
        abandon_after: seconds without :meth:`get`/:meth:`Job.touch` after which an unfinished job is cancelled.
        keep_for: seconds without a look after which a finished job and its files are deleted.
        preopened: models already opened (at start-up), by ``(reference, scale)``.
    """

    def __init__(
        self,
        workdir: Path | None,
        opener: Opener,
        runner: Runner,
        *,
        max_waiting: int = 4,
        abandon_after: float = 90.0,
        keep_for: float = 600.0,
        preopened: dict[tuple[str, int], Any] | None = None,
    ) -> None:
        self.workdir, self.owns_workdir = workdir, workdir is None
        self.opener, self.runner = opener, runner
        self.max_waiting, self.abandon_after, self.keep_for = max_waiting, abandon_after, keep_for
        self.jobs: dict[str, Job] = {}
        self.models: dict[tuple[str, int], Any] = dict(preopened or {})
        self.queues: dict[tuple[str, int], queue.Queue[Job | None]] = {}
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.reaper: threading.Thread | None = None

    # -- the server's side -------------------------------------------------------------------------------------

    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and its (created) folder, for the upload to be written into before :meth:`submit`."""
        with self.lock:
            if self.workdir is None:
                self.workdir = Path(tempfile.mkdtemp(prefix="srformer-serve-"))
        job_id = secrets.token_hex(12)
        folder = self.workdir / job_id
        folder.mkdir(parents=True)
        return job_id, folder

    def submit(self, job: Job) -> Job:
        """Queue ``job`` (its source written) behind its model's earlier jobs; raises :class:`QueueFull`."""
        with self.lock:
            # A cancelled job still in a queue is skipped when its turn comes: it holds no place.
            waiting = sum(o.state == QUEUED and not o.cancel_requested.is_set() for o in self.jobs.values())
            if waiting >= self.max_waiting:
                raise QueueFull(
                    f"the server is busy ({waiting} upscales are waiting, the most it queues); try again in a minute"
                )
            self.jobs[job.id] = job
            key = (job.reference, job.scale)
            jobs = self.queues.get(key)
            if jobs is None:
                jobs = self.queues[key] = queue.Queue()
                name = f"upscale {job.reference} x{job.scale}"
                worker = threading.Thread(target=self._work, args=(jobs,), name=name, daemon=True)
                self.threads.append(worker)
                worker.start()
            jobs.put(job)
        self._start_reaper()
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id (and it is marked as still wanted), or ``None``."""
        job = self.jobs.get(job_id)
        if job is not None:
            job.touch()
        return job

    def position(self, job: Job) -> int:
        """Unfinished jobs ahead of ``job`` on its model (0: it runs, or runs next)."""
        ahead = 0
        with self.lock:
            for other in self.jobs.values():  # in submission order
                if other is job:
                    break
                same_model = (other.reference, other.scale) == (job.reference, job.scale)
                ahead += same_model and other.state in (QUEUED, RUNNING)
        return ahead

    def cancel(self, job_id: str) -> bool:
        """Ask the job to stop (a waiting job never starts); ``False`` when there is no such job."""
        job = self.jobs.get(job_id)
        if job is None:
            return False
        job.cancel_requested.set()
        return True

    def remove(self, job_id: str) -> None:
        """Cancel the job if unfinished, forget it, and delete its folder once the worker is done with it."""
        job = self.jobs.get(job_id)
        if job is None:
            return
        job.removed = True
        job.cancel_requested.set()
        if job.finished.is_set():
            self._delete(job)
        # else: the worker deletes it when it stops (it sees the cancel after its current tile)

    def close(self, timeout: float = 10.0) -> None:
        """Cancel every job, stop the threads and delete every job's files."""
        self.stopping.set()
        with self.lock:
            for job in self.jobs.values():
                job.cancel_requested.set()
            for jobs in self.queues.values():
                jobs.put(None)
        deadline = time.monotonic() + timeout
        for thread in [*self.threads, self.reaper]:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        for job in list(self.jobs.values()):
            if job.finished.is_set() or job.state == QUEUED:
                self._delete(job)
        if self.owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the threads' side -------------------------------------------------------------------------------------

    def _delete(self, job: Job) -> None:
        with self.lock:
            self.jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    def _work(self, jobs: queue.Queue[Job | None]) -> None:
        while not self.stopping.is_set():
            job = jobs.get()
            if job is None:
                return
            self._run(job)

    def _run(self, job: Job) -> None:
        if job.cancel_requested.is_set():
            self._finish(job, CANCELLED)
            return
        job.state = RUNNING
        start = time.perf_counter()

        def on_tile(done: int, total: int) -> None:
            job.done, job.total = done, total
            if job.cancel_requested.is_set():
                raise Cancelled

        try:
            key = (job.reference, job.scale)
            model = self.models.get(key)
            if model is None:
                model = self.models[key] = self.opener(job.reference, job.scale)
            job.description = str(getattr(model, "name", "") or job.model)
            self.runner(model, job, on_tile)
        except Cancelled:
            self._finish(job, CANCELLED)
        except SRFormerError as err:
            job.error = " ".join(str(err).split())
            self._finish(job, FAILED)
        except Exception:  # a bug: logged with its traceback for the server's operator, one sentence for the page
            log.exception("upscale job %s failed", job.id)
            job.error, job.error_is_users = "the upscale failed with an internal error; see the server's log", False
            self._finish(job, FAILED)
        else:
            job.seconds = time.perf_counter() - start
            self._finish(job, DONE)

    def _finish(self, job: Job, state: str) -> None:
        job.state = state
        job.finished.set()
        job.touch()
        job.source.unlink(missing_ok=True)  # the upload is not needed any more
        if state != DONE:
            job.result.unlink(missing_ok=True)
        if job.removed or self.stopping.is_set():
            self._delete(job)

    def _start_reaper(self) -> None:
        with self.lock:
            if self.reaper is None and not self.stopping.is_set():
                self.reaper = threading.Thread(target=self._reap_forever, name="job reaper", daemon=True)
                self.reaper.start()

    def _reap_forever(self) -> None:
        while not self.stopping.wait(min(1.0, self.abandon_after / 4)):
            self.reap()

    def reap(self) -> None:
        """Cancel abandoned unfinished jobs; delete finished jobs nobody looked at for ``keep_for`` seconds."""
        now = time.monotonic()
        for job in list(self.jobs.values()):
            idle = now - job.last_seen
            if job.finished.is_set():
                if idle > self.keep_for:
                    self._delete(job)
            elif idle > self.abandon_after and not job.cancel_requested.is_set():
                log.info("job %s abandoned after %.0f s without a look: cancelled", job.id, idle)
                job.cancel_requested.set()
