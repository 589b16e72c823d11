"""Hydra configs: every experiment and debug preset composes and instantiates, the published recipes say what
the papers say, and every experiment's optimizer, schedule and loss are what they were before they became
config groups (``configs/{optimizer,scheduler,loss}/``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from srformer.models import SRFormer, build_model
from srformer.training import SRLitModule
from srformer.training.losses import CharbonnierLoss
from srformer.training.schedules import MultiStepDecay, WarmupCosine

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
    assert module.hparams.scheduler.get("total_steps", cfg.trainer.max_steps) == cfg.trainer.max_steps
    assert module.configure_optimizers()["lr_scheduler"]["interval"] == "step"
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
    optimizer, scheduler = cfg.module.optimizer, cfg.module.scheduler
    assert (optimizer._target_, optimizer.lr, list(optimizer.betas)) == ("torch.optim.Adam", 2e-4, [0.9, 0.99])
    assert scheduler._target_ == "srformer.training.schedules.multistep"
    assert list(scheduler.milestones) == [250_000, 400_000, 450_000, 475_000]
    assert scheduler.gamma == 0.5


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
    overrides = ["scale=2", "model=light", "loss=charbonnier", "module.loss.eps=0.01", "module.ema_decay=0"]
    cfg = compose_train_config([*overrides, "logger=none"], tmp_path)
    module = instantiate(cfg.module, net=instantiate(cfg.model), _convert_="all")
    assert module.net.scale == 2 and module.hparams.preset == "light"
    assert isinstance(module.criterion, CharbonnierLoss) and module.criterion.eps == 0.01 and module.net_ema is None
    assert dict(cfg.logger) == {}
    sr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(module.criterion(sr, hr), torch.sqrt((sr - hr) ** 2 + 1e-4).mean())
    l1 = instantiate(compose_train_config(["logger=none"], tmp_path).module, net=build_model("tiny", 4))
    assert isinstance(l1.criterion, torch.nn.L1Loss)


def param_group_values(optimizer: torch.optim.Optimizer) -> list[dict]:
    """Each parameter group's settings (tuples as lists) and its number of tensors."""
    return [
        {k: list(v) if isinstance(v, tuple) else v for k, v in group.items() if k != "params"}
        | {"tensors": len(group["params"])}
        for group in optimizer.param_groups
    ]


#: What each recipe was when the module took flat switches (module.lr, module.scheduler=cosine, ...):
#: (learning rate, schedule, warmup steps, EMA decay); every one Adam (0.9, 0.99), no weight decay, L1.
RECIPES_BEFORE = {
    "": (2e-4, MultiStepDecay([250_000, 400_000, 450_000, 475_000], 0.5, 0), 0.999),
    "experiment=bsd400_x2_tiny": (5e-4, WarmupCosine(2000, 100, 0.0), 0.999),
    "experiment=bsd400_x3_small": (2e-4, WarmupCosine(2500, 100, 0.0), 0.999),
    "experiment=bsd400_x4_grown": (2e-4, WarmupCosine(6000, 300, 0.0), 0.999),
    "experiment=bsd400_x4_light": (5e-4, WarmupCosine(15000, 300, 0.0), 0.999),
    "experiment=bsd400_x4_real": (2e-4, WarmupCosine(3000, 100, 0.0), 0.998),
    "experiment=bsd400_x4_tiny": (5e-4, WarmupCosine(15000, 300, 0.0), 0.999),
    # new with its config groups (the campaign's recipe, tests/test_campaign.py checks it against the campaign)
    "experiment=bsd400_x4_light_campaign": (5e-4, WarmupCosine(45700, 285, 0.0), 0.9964),
    "experiment=bsd400_x4_real_campaign": (2e-4, WarmupCosine(20450, 256, 0.0), 0.9959),
    "experiment=bsd400_x2_light_campaign": (5e-4, WarmupCosine(21750, 272, 0.0), 0.9962),
    "experiment=bsd400_x3_light_campaign": (5e-4, WarmupCosine(29130, 364, 0.0), 0.9971),  # x3-1's measured steps
    "experiment=div2k_x2_light": (2e-4, MultiStepDecay([250_000, 400_000, 450_000, 475_000], 0.5, 0), 0.999),
    "experiment=div2k_x4_base": (2e-4, MultiStepDecay([250_000, 400_000, 450_000, 475_000], 0.5, 0), 0.999),
    "experiment=div2k_x4_light": (2e-4, MultiStepDecay([250_000, 400_000, 450_000, 475_000], 0.5, 0), 0.999),
    "experiment=div2k_x4_real": (2e-4, WarmupCosine(100_000, 1000, 0.0), 0.999),
    "experiment=quickstart": (1e-3, WarmupCosine(250, 20, 0.0), 0.99),
    "debug=overfit": (2e-4, MultiStepDecay([], 1.0, 0), 0.0),
    # the tiny model's first phase (assets/README.md): the experiment's warmup, a constant rate
    "experiment=bsd400_x4_tiny scheduler=constant": (5e-4, MultiStepDecay([], 1.0, 300), 0.999),
}


def test_every_recipe_is_unchanged(tmp_path: Path) -> None:
    """The optimizer and schedule each config builds equal what the flat recipe built, parameter group for
    parameter group (Adam over weight matrices with the weight decay, and over biases and norms without)."""
    assert {o for o in RECIPES_BEFORE if o.startswith("experiment=") and " " not in o} == {
        f"experiment={e}" for e in EXPERIMENTS
    }
    for overrides, (lr, factor, ema_decay) in RECIPES_BEFORE.items():
        cfg = compose_train_config([*overrides.split(), "logger=none", *ON_CPU], tmp_path)
        net = build_model("tiny", cfg.scale)
        module = instantiate(cfg.module, net=net, _convert_="all")
        configured = module.configure_optimizers()
        # the module's optimizer and schedule before they became config objects, as it built them
        params = list(net.parameters())
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.0},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        before = torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.99))
        schedule_before = torch.optim.lr_scheduler.LambdaLR(before, factor)
        assert param_group_values(configured["optimizer"]) == param_group_values(before), overrides
        schedule = configured["lr_scheduler"]["scheduler"]
        assert schedule.state_dict() == schedule_before.state_dict(), overrides
        assert type(schedule.lr_lambdas[0]) is type(factor), overrides
        assert (module.hparams.ema_decay, type(module.criterion)) == (ema_decay, torch.nn.L1Loss), overrides


def test_a_new_optimizer_needs_only_a_yaml_file(tmp_path: Path) -> None:
    """torch.optim.SGD, known to no code here, from a config file in a search-path folder: one training step."""
    from test_training import SyntheticSRData, make_trainer

    (tmp_path / "conf" / "optimizer").mkdir(parents=True)
    (tmp_path / "conf" / "optimizer" / "sgd.yaml").write_text(
        "# @package module.optimizer\n_target_: torch.optim.SGD\n_partial_: true\nlr: 0.05\nmomentum: 0.9\n"
        "weight_decay: 1.0e-4\n"
    )
    overrides = [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "optimizer=sgd", "scheduler=constant"]
    cfg = compose_train_config([*overrides, "logger=none", *ON_CPU], tmp_path)
    module = instantiate(cfg.module, net=build_model("tiny", 4), _convert_="all")
    before = [p.detach().clone() for p in module.net.parameters()]
    trainer = make_trainer(tmp_path, max_steps=1, val_every=100)
    trainer.fit(module, datamodule=SyntheticSRData(train_batches=1))
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.SGD) and trainer.global_step == 1
    assert [(g["lr"], g["momentum"], g["weight_decay"]) for g in optimizer.param_groups] == [
        (0.05, 0.9, 1e-4), (0.05, 0.9, 0.0),
    ]  # fmt: skip
    assert any(not torch.equal(a, b) for a, b in zip(before, module.net.parameters(), strict=True))
    assert module.hparams.optimizer == {
        "_target_": "torch.optim.sgd.SGD", "_partial_": True, "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4,
    }  # fmt: skip


def test_run_folder_layout(tmp_path: Path) -> None:
    cfg = compose_train_config(["experiment=bsd400_x4_tiny", "run_name=my_run"], tmp_path)
    # under the folder train.py starts from; Hydra makes it absolute (runtime.output_dir) when the run starts
    assert Path(cfg.hydra.run.dir) == Path("logs") / "bsd400_x4_tiny" / "runs" / "my_run"
