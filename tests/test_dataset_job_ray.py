"""``srformer upscale-dataset --engine ray`` on a local Ray instance (2 CPUs): outputs bit-identical to
``srformer upscale``, the report, idempotent re-runs, and runs whose worker or driver is killed midway.

Helpers and the data sets come from ``test_dataset_job.py`` (the same checks on the local engine).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("ray.data")

import ray  # noqa: E402
import test_dataset_job as shared  # noqa: E402
from test_dataset_job import (  # noqa: E402
    BAD,
    IMAGES,
    MANY,
    SETTINGS,
    UPSCALE_ARGS,
    check_report,
    command_line,
    descendants,
    kill_driver_midway,
    one_already_done,
    outputs_in,
    wait_for,
)

from srformer.dataset_job import REPORT_NAME, RayOptions, read_report, run_job  # noqa: E402

# The data sets and their `srformer upscale` outputs (module-scoped fixtures, made again for this module).
dataset, reference, many, many_reference = shared.dataset, shared.reference, shared.many, shared.many_reference


def upscale_workers() -> list[int]:
    """Process ids of the Ray actors holding a model (descendants of this test process, which runs Ray)."""
    return [pid for pid in descendants(os.getpid()) if "_UpscaleWorker" in command_line(pid)]


@pytest.fixture(scope="module")
def cluster() -> str:
    """A local Ray instance of 2 CPUs for this module; its address, for drivers in other processes."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_ray_equals_upscale_reports_every_input_and_a_rerun_skips_all(
    cluster: str, dataset: Path, reference: dict[str, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    already = one_already_done(out, reference)
    options = RayOptions(workers=2, cpus_per_worker=1)
    summary = run_job([str(dataset)], str(out), SETTINGS, engine="ray", ray_options=options)

    assert (summary.done, summary.skipped, summary.failed) == (len(IMAGES) - 1, 1, 1)
    assert outputs_in(out) == reference  # bit for bit, relative paths kept; nothing for the bad file
    records = read_report(out / REPORT_NAME)
    check_report(records, dataset, done=set(IMAGES) - {already}, skipped={already}, failed={BAD})
    assert "cannot read" in next(r.reason for r in records if r.status == "failed")

    times = {p: p.stat().st_mtime_ns for p in out.rglob("*_x4.*")}
    again = run_job([str(dataset)], str(out), SETTINGS, engine="ray", ray_options=options)
    assert (again.done, again.skipped, again.failed) == (0, len(IMAGES), 1)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*_x4.*")} == times


def test_ray_worker_killed_midway_is_replaced_and_the_job_completes(
    cluster: str, many: Path, many_reference: dict[str, bytes], tmp_path: Path
) -> None:
    """SIGKILL the worker process while it upscales: Ray restarts the actor and retries its task, the image in
    flight is redone (its partial file never counts), and the run ends with every output right."""
    out = tmp_path / "out"
    killed: list[int] = []

    def kill_the_worker() -> None:
        wait_for(lambda: len(outputs_in(out)) >= 1, 300, "the first output")
        workers = upscale_workers()
        assert len(workers) == 1, workers
        killed.append(len(outputs_in(out)))
        os.kill(workers[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_the_worker, daemon=True)
    killer.start()
    summary = run_job([str(many)], str(out), SETTINGS, engine="ray", ray_options=RayOptions(workers=1))
    killer.join(timeout=10)

    assert killed and killed[0] < len(MANY), "the worker was killed before the job ended"
    assert summary.failed == 0 and summary.done + summary.skipped == len(MANY)
    assert outputs_in(out) == many_reference
    records = read_report(out / REPORT_NAME)
    assert sorted(Path(r.input).name for r in records) == sorted(MANY)  # one record per input, retries included
    assert {r.status for r in records} <= {"done", "skipped"}  # skipped: published just before the kill
    again = run_job([str(many)], str(out), SETTINGS, engine="ray", ray_options=RayOptions(workers=1))
    assert (again.done, again.skipped) == (0, len(MANY))


def test_ray_driver_killed_midway_resumes_to_the_same_outputs(
    cluster: str, many: Path, many_reference: dict[str, bytes], tmp_path: Path
) -> None:
    """A driver in another process joins this Ray instance and is SIGKILLed once it has written an output:
    Ray ends its workers, and a re-run does only the images that were not finished."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "srformer.commands.upscale_dataset", str(many), "-o", str(out)]
    command += [*UPSCALE_ARGS, "--engine", "ray", "--address", cluster, "--workers", "1"]
    written = kill_driver_midway(command, out, len(MANY))
    left = outputs_in(out)
    assert left == {name: many_reference[name] for name in left}  # what exists is complete
    wait_for(lambda: not upscale_workers(), 60, "Ray to end the killed driver's workers")

    summary = run_job([str(many)], str(out), SETTINGS, engine="ray", ray_options=RayOptions(workers=1))
    assert summary.failed == 0 and summary.skipped >= written and summary.done + summary.skipped == len(MANY)
    assert outputs_in(out) == many_reference
