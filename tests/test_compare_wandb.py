"""srformer compare in W&B: one run per method in one group with the same crop keys (read back from real offline
runs), models given as W&B artifact references (a fake ``wandb.Api``; no network), lineage via ``use_artifact``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from skimage import data
from test_training import read_wandb_records, wandb_key

from srformer.checkpoint import save_weights
from srformer.commands.compare import main
from srformer.errors import CheckpointError
from srformer.models import build_model
from srformer.tracking import artifact_reference, resolve_model_source

FAST = ["--scale", "4", "--no-cache", "--repeats", "1", "--cost-size", "16", "--crop", "16", "--device", "cpu"]


def tiny_weights(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = build_model("tiny", 4)
    last = [m for m in model.upsampler.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.normal_(last.weight, std=0.02)
    return save_weights(model, path)


@pytest.fixture()
def benchmarks(tmp_path: Path) -> list[Path]:
    """Two one-image benchmark folders (so the overall mean differs from each dataset's)."""
    folders = []
    for dataset, name, image in (("Photos", "astronaut", data.astronaut()[100:148, 150:198]),
                                 ("Cats", "chelsea", data.chelsea()[50:90, 100:140])):  # fmt: skip
        folder = tmp_path / dataset
        folder.mkdir()
        Image.fromarray(image).save(folder / f"{name}.png")
        folders.append(folder)
    return folders


def printed_psnr(table: str, method: str) -> list[str]:
    """The PSNR cells (``"27.12"``) of ``method``'s row of the printed markdown table, one per dataset."""
    (row,) = [line for line in table.splitlines() if line.startswith(f"| {method} |")]
    return [cell.split(" / ")[0] for cell in row.split(" | ") if " / " in cell]


def offline_run(folder: Path) -> dict[str, Any]:
    """Name, group, job type, config, summary and media (key -> sha256) of an offline run folder."""
    run_file = next(folder.glob("run-*.wandb"))
    # wandb's writer is another process: wait until the file stops growing before reading it.
    deadline, size = time.monotonic() + 20, -1
    while run_file.stat().st_size != size and time.monotonic() < deadline:
        size = run_file.stat().st_size
        time.sleep(0.5)
    run: dict[str, Any] = {"config": {}, "summary": {}, "history": {}}
    for record in read_wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(name=record.run.display_name, group=record.run.run_group, job_type=record.run.job_type)
            run["config"].update({wandb_key(i): json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            run["config"].update({wandb_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            run["summary"].update({wandb_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "history":
            run["history"].update({wandb_key(i): json.loads(i.value_json) for i in record.history.item})
    history = run["history"]
    run["media"] = {
        key.removesuffix("/_type"): history[key.replace("/_type", "/sha256")]
        for key, value in history.items()
        if key.endswith("/_type") and value == "image-file"
    }
    return run


def test_one_offline_run_per_method_grouped_with_the_same_crops(
    tmp_path: Path, benchmarks: list[Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    tiny_weights(tmp_path / "first" / "best.safetensors", seed=0)
    # A run folder whose relative path reads like an artifact reference: a path on disk wins, even offline.
    tiny_weights(tmp_path / "proj" / "run:v1" / "best.safetensors", seed=1)
    monkeypatch.chdir(tmp_path)
    args = ["first/best.safetensors", "proj/run:v1", "--data", *map(str, benchmarks), "-o", "out"]
    assert main([*args, *FAST, "--wandb-group", "cmp-1"]) == 0
    table = capsys.readouterr().out

    runs = {run["name"]: run for run in map(offline_run, (tmp_path / "out" / "wandb").glob("offline-run-*"))}
    assert sorted(runs) == ["bicubic", "first/best", "run:v1/best"]
    assert {(run["group"], run["job_type"]) for run in runs.values()} == {("cmp-1", "compare")}
    images = {f"{kind}/{dataset}/{name}" for kind in ("crops", "hr") for dataset, name in
              (("Photos", "astronaut"), ("Cats", "chelsea"))}  # fmt: skip
    for name, run in runs.items():
        assert set(run["media"]) == images, name
        summary = run["summary"]
        assert [f"{summary['Photos/psnr_y']:.2f}", f"{summary['Cats/psnr_y']:.2f}"] == printed_psnr(table, name)
        assert summary["psnr_y"] == pytest.approx((summary["Photos/psnr_y"] + summary["Cats/psnr_y"]) / 2)
        assert 0 < summary["ssim_y"] <= 1
        assert run["config"]["method"]["name"] == name and run["config"]["scale"] == 4
    # The same HR crop (same box) in every run; each method's own crop under the same key.
    for key in images:
        hashes = {run["media"][key] for run in runs.values()}
        assert len(hashes) == (1 if key.startswith("hr/") else 3), key
    model = runs["run:v1/best"]["config"]["method"]
    assert model["architecture"] == "srformer" and model["preset"] == "tiny" and model["source"] == "proj/run:v1"
    assert model["params"] > 0 and model["flops_per_px"] > 0 and model["artifact"] is None
    assert runs["bicubic"]["config"]["method"]["architecture"] == "bicubic (MATLAB)"


class FakeArtifact:
    """What ``wandb.Api().artifact`` returns, enough for compare: its version's name and a download."""

    def __init__(self, qualified_name: str, seed: int) -> None:
        self.qualified_name = qualified_name
        self.seed = seed
        self.downloads: list[Path] = []

    def download(self, root: str) -> str:
        # The files training's ExportBestWeights logs in a weights artifact.
        tiny_weights(Path(root) / "best.safetensors", self.seed)
        self.downloads.append(Path(root))
        return root


class RecordedRun:
    def __init__(self, out: Path, **init: Any) -> None:
        self.init, self.summary, self.logged, self.used, self.finished = init, {}, {}, [], False
        self.dir = str(out)

    def log(self, values: dict[str, Any]) -> None:
        self.logged.update(values)

    def use_artifact(self, artifact: Any) -> None:
        self.used.append(artifact)

    def finish(self) -> None:
        self.finished = True


def test_artifact_reference_is_downloaded_and_recorded_as_the_runs_input(
    tmp_path: Path, benchmarks: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    artifact = FakeArtifact("me/train/weights-abc123:v3", seed=2)
    asked: list[str] = []

    class FakeApi:
        def artifact(self, name: str) -> FakeArtifact:
            asked.append(name)
            return artifact

    runs: list[RecordedRun] = []
    monkeypatch.setattr(wandb, "Api", FakeApi)
    monkeypatch.setattr(wandb, "init", lambda **init: runs.append(RecordedRun(tmp_path, **init)) or runs[-1])
    monkeypatch.setenv("SRFORMER_CACHE_DIR", str(tmp_path / "cache"))
    local = tiny_weights(tmp_path / "local" / "best.safetensors", seed=0)
    models = [str(local), "me/train/weights-abc123:best"]
    args = [*models, "--data", str(benchmarks[0]), "-o", str(tmp_path / "out"), "--wandb-mode", "online"]
    assert main([*args, *FAST]) == 0

    assert asked == ["me/train/weights-abc123:best"]
    assert artifact.downloads == [tmp_path / "cache" / "wandb-artifacts" / "me" / "train" / "weights-abc123" / "v3"]
    by_name = {run.init["name"]: run for run in runs}
    assert sorted(by_name) == ["bicubic", "local/best", "weights-abc123:best"]
    assert len({run.init["group"] for run in runs}) == 1 and all(run.finished for run in runs)
    assert by_name["weights-abc123:best"].used == [artifact]
    assert by_name["local/best"].used == [] and by_name["bicubic"].used == []
    method = by_name["weights-abc123:best"].init["config"]["method"]
    assert method["source"] == "me/train/weights-abc123:best" and method["artifact"] == "me/train/weights-abc123:v3"
    assert by_name["weights-abc123:best"].logged.keys() == by_name["local/best"].logged.keys()


def test_artifact_reference_offline_is_one_clear_error(
    tmp_path: Path, benchmarks: list[Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import wandb

    def no_network() -> None:
        raise AssertionError("offline mode must not reach W&B")

    monkeypatch.setattr(wandb, "Api", no_network)
    args = ["ent/proj/weights-abc123:best", "--data", str(benchmarks[0]), "-o", str(tmp_path / "out")]
    assert main([*args, *FAST]) == 2  # offline is the default
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ent/proj/weights-abc123:best is not a file here") and "--wandb-mode online" in err
    assert "\n" not in err and not (tmp_path / "out").exists()


def test_artifact_that_cannot_be_fetched_is_a_checkpoint_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb

    class FailingApi:
        def artifact(self, name: str) -> None:
            raise wandb.errors.CommError(f"artifact {name} not found\ndetails")

    monkeypatch.setattr(wandb, "Api", FailingApi)
    with pytest.raises(CheckpointError, match=r"W&B artifact proj/w:best could not be downloaded: artifact proj/w"):
        resolve_model_source("proj/w:best", "online")


def test_artifact_reference_forms(tmp_path: Path) -> None:
    assert artifact_reference("ent/proj/weights-abc:best") == "ent/proj/weights-abc:best"
    assert artifact_reference("proj/weights-abc:v3") == "proj/weights-abc:v3"
    assert artifact_reference("wandb-artifact:///ent/proj/model-x:latest") == "ent/proj/model-x:latest"
    for path in ("C:/models/x.pth", "weights.safetensors", "x4", "runs/last.ckpt", "/abs/proj/w:best", "w:best"):
        assert artifact_reference(path) is None, path
    existing = tmp_path / "proj" / "w:best"
    existing.mkdir(parents=True)
    assert artifact_reference(str(existing)) is None
    with pytest.raises(CheckpointError, match="wandb-artifact://entity/project/name:alias"):
        artifact_reference("wandb-artifact://_id/QXJ0aWZhY3Q=")
