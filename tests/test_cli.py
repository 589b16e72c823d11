"""The ``srformer`` command: help, version, errors, and dispatch to each module's ``main(argv)``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import srformer
from srformer import cli, shipped

REPO = Path(__file__).resolve().parent.parent


def _image(path: Path, height: int = 6, width: int = 7) -> Path:
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def test_help_lists_every_command_with_a_description(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: srformer")
    for name in ("upscale", "evaluate", "compare", "export", "explain"):
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert len(line.split()) > 2, line  # name, then a one-line description


def test_version(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"srformer {srformer.__version__}"


@pytest.mark.parametrize("argv", [["upscal"], ["train"], ["--bogus"], []])
def test_unknown_or_missing_command_is_one_sentence_and_exit_2(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert "upscale, evaluate, compare, export, explain" in captured.err
    if argv == ["upscal"]:
        assert "did you mean 'upscale'" in captured.err


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_each_command_help_is_the_module_help(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main([command, "--help"])
    assert stop.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_upscale_dispatches_the_arguments(tmp_path: Path) -> None:
    source = _image(tmp_path / "a.png")
    model = shipped.model_path("x4_tiny")
    assert cli.main(["upscale", str(source), "-o", str(tmp_path / "out"), "--model", str(model), "--quiet"]) == 0
    assert Image.open(tmp_path / "out" / "a_x4.png").size == (28, 24)
    # the module's exit status comes back: a missing input is a user error
    assert cli.main(["upscale", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o2"), "--quiet"]) == 2


def test_python_m_srformer_upscales_with_the_shipped_model_from_any_folder(tmp_path: Path) -> None:
    _image(tmp_path / "photo.png", 5, 4)
    done = subprocess.run(
        [sys.executable, "-m", "srformer", "upscale", "photo.png", "-o", "out/", "--quiet", "--device", "cpu"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "out" / "photo_x4.png").size == (16, 20)


@pytest.mark.parametrize(
    ("entry", "status"),
    [
        ("lambda: 3", 3),
        ("lambda: None", 0),
        ("lambda: __import__('argparse').ArgumentParser().parse_args(['--bogus'])", 2),  # SystemExit(2)
    ],
)
def test_exit_after_keeps_the_status_runs_exit_handlers_and_flushes(entry: str, status: int) -> None:
    """The fast exit skips the interpreter's teardown, not what a command relies on: its status, its exit
    handlers (temporary folders, W&B) and what it printed without a newline into a pipe."""
    program = (
        "import atexit, sys\n"
        "from srformer.cli import exit_after\n"
        "atexit.register(lambda: print('handler ran'))\n"
        "print('buffered', end='')\n"
        f"exit_after({entry})\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == status, done.stderr
    assert done.stdout == "bufferedhandler ran\n"


def test_exit_after_leaves_a_message_exit_to_the_interpreter() -> None:
    program = "from srformer.cli import exit_after\nimport sys\nexit_after(lambda: sys.exit('one sentence'))\n"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (1, "one sentence\n")


def test_exit_after_waits_for_a_thread_still_working(tmp_path: Path) -> None:
    marker = tmp_path / "written-by-the-thread"
    program = (
        "import threading, time\n"
        "from pathlib import Path\n"
        "from srformer.cli import exit_after\n"
        f"threading.Thread(target=lambda: (time.sleep(0.5), Path({str(marker)!r}).write_text('done'))).start()\n"
        "exit_after(lambda: 4)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 4, done.stderr
    assert marker.read_text() == "done"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (at any depth: lazy imports count), relative imports left out."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_commands_sit_above_the_library_and_beside_each_other() -> None:
    """Library modules import neither a command, the dispatcher nor argparse; no command imports another."""
    package = REPO / "srformer"
    faces = {"srformer/cli.py", "srformer/__main__.py"}
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(REPO).as_posix()
        imports = _imports(path)
        if name.startswith("srformer/commands/"):
            shared = ("srformer.commands.options", f"srformer.commands.{path.stem}")
            others = {m for m in imports if m.startswith("srformer.commands.") and not m.startswith(shared)}
            assert not others, (name, others)
        elif name not in faces:
            upward = {m for m in imports if m.startswith(("srformer.commands", "srformer.cli"))}
            assert not upward, (name, upward)
            assert "argparse" not in imports, name
