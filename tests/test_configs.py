"""Hydra configs: every experiment and debug preset composes and instantiates, and the published recipes
say what the papers say."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from srformer.models import SRFormer
from srformer.training import SRLitModule

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
DEBUG_PRESETS = sorted(p.stem for p in (CONFIGS / "debug").glob("*.yaml"))


def compose_train_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose ``configs/train.yaml`` as ``python train.py <overrides>`` would, with the run folder at
    ``output_dir`` (what Hydra's ``${hydra:runtime.output_dir}`` is during a run)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose("train.yaml", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(REPO)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


# Instantiating on a CPU-only machine: GPU trainers are switched to CPU, everything else as configured.
ON_CPU = ["trainer.accelerator=cpu", "trainer.precision=32-true", "trainer.devices=1"]


def test_experiments_exist() -> None:
    required = {"quickstart", "bsd400_x4_tiny", "bsd400_x4_light", "div2k_x2_light", "div2k_x4_light"}
    assert required | {"div2k_x4_base"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_instantiates(experiment: str, tmp_path: Path) -> None:
    cfg = compose_train_config([f"experiment={experiment}", "logger=csv", *ON_CPU], tmp_path)
    net = instantiate(cfg.model, _convert_="all")
    assert isinstance(net, SRFormer)
    assert net.scale == cfg.scale
    module = instantiate(cfg.module, net=net, _convert_="all")
    assert isinstance(module, SRLitModule)
    assert module.hparams.preset == cfg.model.preset
    assert module.hparams.total_steps == cfg.trainer.max_steps
    datamodule = instantiate(cfg.data, _convert_="all")
    assert isinstance(datamodule, pl.LightningDataModule)
    callbacks = [instantiate(c, _convert_="all") for c in cfg.callbacks.values()]
    loggers = [instantiate(c, _convert_="all") for c in cfg.logger.values()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, _convert_="all")
    assert trainer.max_steps == cfg.trainer.max_steps
    # checkpoints follow optimized_metric, which must be a score validation logs: the mean or one val set's
    monitor = trainer.checkpoint_callback.monitor
    assert monitor == cfg.optimized_metric
    assert monitor == "val/psnr" or (monitor.split("/")[1] in cfg.data.val_dirs and monitor.endswith("/psnr"))
    assert Path(trainer.checkpoint_callback.dirpath) == tmp_path / "checkpoints"


@pytest.mark.parametrize(
    ("experiment", "preset", "scale", "batch_size"),
    [
        ("div2k_x2_light", "light", 2, 64),
        ("div2k_x4_light", "light", 4, 64),
        ("div2k_x4_base", "base", 4, 32),
    ],
)
def test_published_recipes(experiment: str, preset: str, scale: int, batch_size: int, tmp_path: Path) -> None:
    cfg = compose_train_config([f"experiment={experiment}"], tmp_path)
    assert (cfg.model.preset, cfg.scale, cfg.model.scale) == (preset, scale, scale)
    assert (cfg.data.patch_size, cfg.data.batch_size) == (64, batch_size)
    assert cfg.trainer.max_steps == 500_000
    assert cfg.trainer.precision == "bf16-mixed"
    assert (cfg.module.optimizer, cfg.module.lr, cfg.module.scheduler) == ("adam", 2e-4, "multistep")
    assert list(cfg.module.milestones) == [250_000, 400_000, 450_000, 475_000]
    assert cfg.module.gamma == 0.5


@pytest.mark.parametrize("preset", DEBUG_PRESETS)
def test_debug_presets_compose(preset: str, tmp_path: Path) -> None:
    cfg = compose_train_config([f"debug={preset}"], tmp_path)
    assert cfg.task_name == "debug"
    assert cfg.trainer.accelerator == "cpu"
    assert "wandb" not in cfg.logger


def test_defaults_wandb_offline_and_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SRFORMER_DATA_DIR", raising=False)
    cfg = compose_train_config([], tmp_path)
    assert cfg.logger.wandb.offline is True
    # relative to the folder train.py starts from (Hydra keeps the working directory: job.chdir is false)
    assert Path(cfg.paths.data_dir) == Path("..") / "shared" / "data"
    assert cfg.paths.output_dir == str(tmp_path)
    assert cfg.callbacks.export_best_weights.training_data == "quickstart"
    monkeypatch.setenv("SRFORMER_DATA_DIR", "/somewhere/else")
    assert compose_train_config([], tmp_path).paths.data_dir == "/somewhere/else"


def test_overrides_reach_the_objects(tmp_path: Path) -> None:
    overrides = ["scale=2", "model=light", "module.loss=charbonnier", "module.ema_decay=0", "logger=none"]
    cfg = compose_train_config(overrides, tmp_path)
    module = instantiate(cfg.module, net=instantiate(cfg.model), _convert_="all")
    assert module.net.scale == 2 and module.hparams.preset == "light"
    assert module.hparams.loss == "charbonnier" and module.net_ema is None
    assert dict(cfg.logger) == {}


def test_run_folder_layout(tmp_path: Path) -> None:
    cfg = compose_train_config(["experiment=bsd400_x4_tiny", "run_name=my_run"], tmp_path)
    # under the folder train.py starts from; Hydra makes it absolute (runtime.output_dir) when the run starts
    assert Path(cfg.hydra.run.dir) == Path("logs") / "bsd400_x4_tiny" / "runs" / "my_run"
