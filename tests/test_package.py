"""Packaging: the shipped models resolve to package data, and the wheel carries them and the ``srformer`` script."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

from srformer import shipped
from srformer.errors import CheckpointError

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
#: The models whose files are in the repository.
TRAINED = ["x4", "x4_small", "x4_tiny", "x3", "x3_small", "x2", "x2_tiny", "real", "real_small"]
#: Distribution name -> the module its users import (where the two differ).
IMPORT_NAMES = {"pytorch-lightning": "pytorch_lightning", "hydra-core": "hydra", "pillow": "PIL",
                "scikit-image": "skimage", "spandrel-extra-arches": "spandrel_extra_arches"}  # fmt: skip
#: Declared for tools, not imported by the code: the test runner, the linter, the plots of bench/.
TOOLS = {"pytest", "ruff"}
#: Declared because a library we import needs them without declaring them: the importer must be imported.
NEEDED_BY = {"pywavelets": "skimage.restoration", "httpx2": "starlette.testclient", "python-multipart": "starlette"}


def _setuptools_major() -> int:
    try:
        return int(metadata.version("setuptools").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return 0


def test_shipped_names() -> None:
    assert set(TRAINED) <= set(shipped.names())
    assert set(TRAINED) <= set(shipped.installed())


@pytest.mark.parametrize("name", TRAINED)
def test_shipped_names_resolve_to_package_data(name: str) -> None:
    path = shipped.model_path(name)
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert path.parent == Path(shipped.__file__).parent / "weights"
    assert shipped.model_path(path.stem) == path  # the file stem is a name too
    assert shipped.resolve(name) == path


def test_default_model_per_scale() -> None:
    assert shipped.default_model() == shipped.default_model(4) == shipped.model_path("x4")
    assert shipped.default_model(3) == shipped.model_path("x3")
    assert shipped.default_model(2) == shipped.model_path("x2")
    with pytest.raises(CheckpointError, match=r"no shipped x8 model.*--model"):
        shipped.default_model(8)


def test_unknown_name_lists_the_shipped_names() -> None:
    with pytest.raises(CheckpointError) as error:
        shipped.model_path("x8_huge")
    message = str(error.value)
    assert "x8_huge" in message and all(name in message for name in shipped.names())


def test_a_missing_model_file_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path)
    (tmp_path / "srformer_x2.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"'x4' is not installed .*installed: none.*--model"):
        shipped.model_path("x4")
    with pytest.raises(CheckpointError, match=r"srformer_x2\.json missing"):
        shipped.model_path("x2")
    with pytest.raises(CheckpointError, match="'real' is not installed"):
        shipped.model_path("real")


def test_resolve_prefers_existing_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert shipped.resolve("run_folder") == Path("run_folder")  # not a name: the loader explains it
    (tmp_path / "x4").mkdir()
    assert shipped.resolve("x4") == Path("x4")  # an existing folder named like a model wins


def test_pyproject_declares_the_script_and_the_weights() -> None:
    assert PYPROJECT["project"]["scripts"]["srformer"] == "srformer.cli:console_main"
    assert "zoo" in PYPROJECT["project"]["optional-dependencies"]
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["srformer"]
    for name in TRAINED:
        for path in (shipped.model_path(name), shipped.model_path(name).with_suffix(".json")):
            relative = path.relative_to(REPO / "srformer").as_posix()
            assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative


def test_wheel_contains_the_weights_and_the_script(tmp_path: Path) -> None:
    """Builds the wheel (a few seconds, no network) from a copy of the sources: a build in the checkout would
    leave a build/ folder there, whose stale files could slip into later wheels."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "srformer", source / "srformer", ignore=shutil.ignore_patterns("__pycache__"))
    # The installed setuptools when it is recent enough (seconds, torch brings one), else pip's isolated build.
    isolation = ["--no-build-isolation"] if _setuptools_major() >= 77 else []
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", *isolation, "-q", "-w", "dist"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("srformer-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        files = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in files if n.endswith(".dist-info/entry_points.txt"))
    for name in TRAINED:
        stem = shipped.model_path(name).stem
        assert {f"srformer/weights/{stem}.safetensors", f"srformer/weights/{stem}.json"} <= files
    assert {"srformer/cli.py", "srformer/__main__.py", "srformer/shipped.py"} <= files
    assert "srformer = srformer.cli:console_main" in entry_points


def test_every_declared_dependency_is_used() -> None:
    """A declared dependency that nothing imports is a defect (it costs every user an install)."""
    import re

    declared = list(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        declared += extra
    sources = [*REPO.glob("srformer/**/*.py"), *REPO.glob("bench/*.py"), *REPO.glob("tests/*.py"), REPO / "train.py"]
    code = "\n".join(path.read_text() for path in sources)
    for requirement in declared:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()
        if name in TOOLS:
            continue
        module = NEEDED_BY.get(name) or IMPORT_NAMES.get(name, name.replace("-", "_"))
        assert re.search(rf"^\s*(import|from) {re.escape(module)}\b", code, re.MULTILINE), f"{name} is never imported"
