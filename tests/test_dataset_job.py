"""``srformer upscale-dataset`` with the local engine: planning (folders, globs, manifests, remote file systems),
outputs bit-identical to ``srformer upscale``, the report, idempotent re-runs, and a killed driver resumed.

The helpers and fixtures here are shared with ``test_dataset_job_ray.py`` (the same checks on Ray).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image

from srformer.cli import main as srformer_main
from srformer.commands import upscale_dataset
from srformer.dataset_job import (
    REPORT_NAME,
    DatasetJobError,
    Record,
    Summary,
    UpscaleSettings,
    plan_items,
    read_report,
    run_job,
)
from srformer.upscaling import UpscaleOptions

REPO = Path(__file__).resolve().parent.parent
MODEL = "x4_tiny"
TILE = 32  # two or more tiles per image: the tiled path of upscale, as a large image takes it
UPSCALE_ARGS = ["--model", MODEL, "--tile", str(TILE), "--quiet"]
SETTINGS = UpscaleSettings(model=MODEL, options=UpscaleOptions(tile=TILE))

#: The test data set: relative path -> (width, height, mode); ``sub/bad.png`` is a truncated PNG.
IMAGES = {
    "a.png": (44, 36, "RGB"),
    "b.jpg": (40, 32, "RGB"),
    "sub/c.png": (52, 40, "L"),
    "sub/deep/d.png": (36, 28, "RGBA"),
}
BAD = "sub/bad.png"

#: A second set for the runs killed midway: enough images that a run is still busy when the first is written.
MANY = {f"m{i}.png": (48 + 4 * (i % 3), 40, "RGB") for i in range(6)}


def make_image(path: Path, width: int, height: int, mode: str, seed: int) -> None:
    """A smooth gradient with texture and noise (something a model does not leave flat)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * 180
    texture = 40 * np.sin(x[..., None] * 0.7 + y[..., None] * 0.3 + np.arange(3))
    pixels = np.clip(base + texture + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    if mode == "L":
        image = image.convert("L")
    elif mode == "RGBA":
        image.putalpha(Image.fromarray((np.linspace(60, 255, width)[None, :].repeat(height, 0)).astype(np.uint8)))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=90) if path.suffix == ".jpg" else image.save(path)


def make_dataset(root: Path, images: dict[str, tuple[int, int, str]], bad: str | None = None) -> Path:
    for seed, (relative, (width, height, mode)) in enumerate(images.items()):
        make_image(root / relative, width, height, mode, seed)
    if bad is not None:
        good = root / next(iter(images))
        (root / bad).parent.mkdir(parents=True, exist_ok=True)
        (root / bad).write_bytes(good.read_bytes()[:200])  # a PNG cut off in its pixel data
    (root / "README.txt").write_text("not an image: a folder input takes image files only\n")
    return root


def output_of(relative: str) -> str:
    """``upscale``'s output name for ``relative`` with the default suffix and format."""
    path = PurePosixPath(relative)
    return str(path.with_name(f"{path.stem}_x4{path.suffix}"))


def upscale_reference(root: Path, relatives: list[str], out: Path) -> dict[str, bytes]:
    """What ``srformer upscale`` writes for each input (one run per folder, as its outputs are flat):
    output relative path -> file bytes."""
    folders: dict[str, list[str]] = {}
    for relative in relatives:
        folders.setdefault(str(PurePosixPath(relative).parent), []).append(relative)
    for folder, members in folders.items():
        status = srformer_main(["upscale", *(str(root / m) for m in members), "-o", str(out / folder), *UPSCALE_ARGS])
        assert status == 0
    return {output_of(r): (out / output_of(r)).read_bytes() for r in relatives}


def outputs_in(out: Path) -> dict[str, bytes]:
    """Every finished output under ``out`` (relative path -> bytes): not the report, not a temporary file."""
    found = {}
    for path in out.rglob("*"):
        if path.is_file() and path.name != REPORT_NAME and not path.name.startswith("."):
            found[path.relative_to(out).as_posix()] = path.read_bytes()
    return found


def records_by_input(records: list[Record], root: Path) -> dict[str, Record]:
    by_input = {Path(r.input).relative_to(root).as_posix(): r for r in records}
    assert len(by_input) == len(records), "one record per input"
    return by_input


def descendants(pid: int) -> list[int]:
    """Process ids of every descendant of ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_for(condition: Callable[[], bool], timeout: float, what: str, alive: Callable[[], bool] = lambda: True):
    deadline = time.monotonic() + timeout
    while not condition():
        assert alive(), f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def kill_driver_midway(command: list[str], out: Path, expected: int) -> int:
    """Run ``command`` (a driver) in a subprocess, SIGKILL it once it has written its first output, and kill
    anything it started that is still alive (a local Ray instance's processes); returns the outputs it left."""
    log = out.parent / f"{out.name}.driver.log"
    with open(log, "wb") as stream:
        process = subprocess.Popen(command, cwd=REPO, stdout=stream, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for(lambda: len(outputs_in(out)) >= 1, 240, "the first output", lambda: process.poll() is None)
        except AssertionError as err:
            raise AssertionError(f"{err}; the driver's output:\n{log.read_text()[-3000:]}") from None
        started = descendants(process.pid)
        written = len(outputs_in(out))
        assert written < expected, "the run finished before it could be killed midway"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    for pid in started:
        with contextlib.suppress(ProcessLookupError):  # ended with the driver
            os.kill(pid, signal.SIGKILL)
    return written


def check_report(records: list[Record], root: Path, done: set[str], skipped: set[str], failed: set[str]) -> None:
    by_input = records_by_input(records, root)
    assert set(by_input) == done | skipped | failed
    for relative, record in by_input.items():
        expected = "done" if relative in done else "skipped" if relative in skipped else "failed"
        assert record.status == expected, (relative, record)
        assert record.seconds >= 0
        assert record.output.endswith(output_of(relative))
        if expected == "failed":
            assert record.reason and "\n" not in record.reason
        else:
            assert (record.output_pixels > 0) == (expected == "done")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("dataset"), IMAGES, BAD)


@pytest.fixture(scope="module")
def reference(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return upscale_reference(dataset, list(IMAGES), tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("many"), MANY)


@pytest.fixture(scope="module")
def many_reference(many: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return upscale_reference(many, list(MANY), tmp_path_factory.mktemp("many_reference"))


def one_already_done(out: Path, reference: dict[str, bytes]) -> str:
    """Put ``a.png``'s finished output in OUT before the run, as an earlier run would have left it."""
    done = output_of("a.png")
    (out / done).parent.mkdir(parents=True, exist_ok=True)
    (out / done).write_bytes(reference[done])
    return "a.png"


# ----------------------------------------------------------------------------------------------- the local engine
def test_local_engine_equals_upscale_reports_every_input_and_a_rerun_skips_all(
    dataset: Path, reference: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    already = one_already_done(out, reference)
    status = upscale_dataset.main([str(dataset), "-o", str(out), *UPSCALE_ARGS])

    assert status == 1  # a file failed
    assert outputs_in(out) == reference  # bit for bit, relative paths kept; nothing for the bad file
    summary = capsys.readouterr().err.strip().splitlines()
    assert summary[-2].startswith(f"3 written to {out}, 1 skipped (exist), 1 failed (reasons in ")
    assert "bad.png" in summary[-1] and "cannot read" in summary[-1]
    records = read_report(out / REPORT_NAME)
    check_report(records, dataset, done=set(IMAGES) - {already}, skipped={already}, failed={BAD})

    times = {p: p.stat().st_mtime_ns for p in out.rglob("*_x4.*")}
    summary = run_job([str(dataset)], str(out), SETTINGS)
    assert (summary.done, summary.skipped, summary.failed) == (0, len(IMAGES), 1)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*_x4.*")} == times  # nothing rewritten
    check_report(read_report(out / REPORT_NAME), dataset, done=set(), skipped=set(IMAGES), failed={BAD})


def test_local_driver_killed_midway_resumes_to_the_same_outputs(
    many: Path, many_reference: dict[str, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "srformer.commands.upscale_dataset", str(many), "-o", str(out), *UPSCALE_ARGS]
    written = kill_driver_midway(command, out, len(MANY))
    left = outputs_in(out)
    assert left == {name: many_reference[name] for name in left}  # what exists is complete

    summary = run_job([str(many)], str(out), SETTINGS)
    assert (summary.done, summary.skipped, summary.failed) == (len(MANY) - written, written, 0)
    assert outputs_in(out) == many_reference


def test_model_auto_chooses_per_file_as_upscale_does(dataset: Path, tmp_path: Path) -> None:
    """``--model auto`` (both commands' default): the same model per file, the same bytes (the choice is
    recorded in the PNG), and the choice in the report."""
    inputs = [str(dataset / "a.png")]
    assert srformer_main(["upscale", *inputs, "-o", str(tmp_path / "ref"), "--tile", str(TILE), "--quiet"]) == 0
    settings = UpscaleSettings(options=UpscaleOptions(tile=TILE))  # model "auto" by default
    summary = run_job(inputs, str(tmp_path / "out"), settings)
    assert summary.done == 1
    assert outputs_in(tmp_path / "out") == outputs_in(tmp_path / "ref")
    assert {r.model for r in read_report(tmp_path / "out" / REPORT_NAME)} <= {"shipped x4", "shipped real"}


def test_remote_file_systems_through_pyarrow_and_fsspec(
    dataset: Path, reference: dict[str, bytes], tmp_path: Path
) -> None:
    """Inputs as ``file://`` URIs (pyarrow's file system) and OUT on fsspec's in-memory file system: each
    input is staged to a local file and each output uploaded whole once written."""
    fsspec = pytest.importorskip("fsspec")
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"file://{dataset}/sub/c.png\nfile://{dataset}/b.jpg\n")
    summary = run_job([str(manifest)], "memory://job/out", SETTINGS, report=str(tmp_path / "report.jsonl"))
    assert (summary.done, summary.failed) == (2, 0)
    memory = fsspec.filesystem("memory")
    assert memory.cat("/job/out/sub/c_x4.png") == reference["sub/c_x4.png"]
    assert memory.cat("/job/out/b_x4.jpg") == reference["b_x4.jpg"]
    assert sorted(r.output for r in read_report(tmp_path / "report.jsonl")) == [
        "memory://job/out/b_x4.jpg",
        "memory://job/out/sub/c_x4.png",
    ]
    again = run_job([str(manifest)], "memory://job/out", SETTINGS, report=str(tmp_path / "report.jsonl"))
    assert (again.done, again.skipped) == (0, 2)
    memory.rm("/job", recursive=True)


# ---------------------------------------------------------------------------------------------------- planning
def name_x4(relative: PurePosixPath) -> PurePosixPath:
    return PurePosixPath(output_of(str(relative)))


def planned(inputs: list[str], out: Path) -> dict[str, str]:
    """Planned items as input relative path -> output path relative to ``out``."""
    return {item.relative: os.path.relpath(item.target, out) for item in plan_items(inputs, str(out), name_x4)}


def test_folders_globs_and_manifests_keep_relative_paths(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    everything = {r: output_of(r) for r in [*IMAGES, BAD]}
    assert planned([str(dataset)], out) == everything
    assert planned([f"{dataset}/**/*.png"], out) == {r: o for r, o in everything.items() if r.endswith(".png")}
    assert planned([f"{dataset}/sub/*.png"], out) == {"c.png": "c_x4.png", "bad.png": "bad_x4.png"}

    text = tmp_path / "lists" / "files.txt"
    text.parent.mkdir()
    relative = os.path.relpath(dataset / "sub" / "deep" / "d.png", text.parent)  # against the manifest's folder
    text.write_text(f"# a comment\n{dataset}/sub/c.png\n\n{relative}\n")
    assert planned([str(text)], out) == {"c.png": "c_x4.png", "deep/d.png": "deep/d_x4.png"}

    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pyarrow.table({"id": [1, 2], "path": [f"{dataset}/a.png", f"{dataset}/sub/deep/d.png"]})
    pq.write_table(table, tmp_path / "files.parquet")
    assert planned([str(tmp_path / "files.parquet")], out) == {
        "a.png": "a_x4.png",
        "sub/deep/d.png": "sub/deep/d_x4.png",
    }


def test_outputs_under_an_input_folder_are_not_inputs(dataset: Path, tmp_path: Path) -> None:
    root = shutil.copytree(dataset, tmp_path / "photos")
    (root / "up").mkdir()
    (root / "up" / "a_x4.png").write_bytes((root / "a.png").read_bytes())  # an earlier run's output
    assert "up/a_x4.png" not in planned([str(root)], root / "up")


def test_clashing_or_overwriting_outputs_and_missing_inputs_are_refused(dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "clash"
    make_dataset(root, {"x.png": (8, 8, "RGB"), "x.jpg": (8, 8, "RGB")})
    with pytest.raises(DatasetJobError, match="would both be written to"):
        plan_items([str(root)], str(tmp_path / "out"), lambda r: r.with_name(f"{r.stem}.png"))
    with pytest.raises(DatasetJobError, match="would overwrite an input image"):
        plan_items([str(root / "x.png")], str(root), lambda r: r)
    with pytest.raises(DatasetJobError, match="the output folder is the input folder"):
        plan_items([str(root)], str(root), name_x4)
    with pytest.raises(DatasetJobError, match="input not found"):
        plan_items([str(tmp_path / "nope")], str(tmp_path / "out"), name_x4)
    with pytest.raises(DatasetJobError, match="no image file matches"):
        plan_items([f"{root}/*.tif"], str(tmp_path / "out"), name_x4)
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(DatasetJobError, match="lists no files"):
        plan_items([str(tmp_path / "empty.txt")], str(tmp_path / "out"), name_x4)


def test_engine_ray_without_ray_says_how_to_install_it(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    status = upscale_dataset.main([str(dataset), "-o", str(tmp_path / "out"), "--engine", "ray"])
    error = capsys.readouterr().err.strip()
    assert status == 2
    assert error == 'error: the ray engine needs Ray Data: pip install "srformer[ray]" (or pip install "ray[data]")'
    assert not (tmp_path / "out").exists()


def test_summary_line_is_upscales() -> None:
    summary = Summary(done=3, skipped=1, failed=1, output_pixels=2_000_000, seconds=4.0)
    assert (
        summary.line("out", "out/r.jsonl")
        == "3 written to out, 1 skipped (exist), 1 failed (reasons in out/r.jsonl); 0.50 Mpx/s"
    )
    assert Summary(done=2, output_pixels=10**6, seconds=1.0).line("o", "r") == "2 written to o; 1.00 Mpx/s"
