"""Training: LightningModule, EMA, schedules, callbacks, resume, and (slow) train.py end to end and DDP.

Everything runs on CPU with the tiny model on 16x16 LR patches and a handful of steps. The validation
numbers are checked against a PSNR computed here from the protocol's formula, not by srformer.metrics.
"""

from __future__ import annotations

import csv
import json
import math
import os
import struct
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from srformer.checkpoint import load_model
from srformer.models import build_model
from srformer.training import SRLitModule, schedules
from srformer.training.callbacks import ExportBestWeights, ImagePanel, SampleUpscale, TrainingClock
from srformer.training.ema import ema_decay_at, make_ema_copy, update_ema
from srformer.training.losses import CharbonnierLoss
from srformer.training.module import NonFiniteLossError
from srformer.training.schedules import MultiStepDecay, WarmupCosine, build_scheduler

REPO = Path(__file__).resolve().parents[1]
SCALE = 4
PATCH = 16


# ------------------------------------------------------------------------------------- synthetic data
def synthetic_image(seed: int, height: int, width: int) -> torch.Tensor:
    """A smooth random RGB image (3, H, W) with edges, on uint8 levels."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    channels = []
    for _ in range(3):
        f = torch.rand(4, generator=g) * 12
        c = 0.5 + 0.25 * torch.sin(f[0] * xx + f[1] * yy) + 0.2 * torch.cos(f[2] * xx * yy + f[3])
        c = c + 0.15 * (xx + yy > torch.rand(1, generator=g).item() + 0.5).float()
        channels.append(c)
    return torch.stack(channels).clamp(0, 1).mul(255).round().div(255)


def downscale(hr: torch.Tensor) -> torch.Tensor:
    """Box downscale rounded to uint8 levels (enough for training tests; not the protocol's bicubic)."""
    return F.avg_pool2d(hr[None], SCALE)[0].mul(255).round().div(255)


class PairList(Dataset):
    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


class SyntheticSRData(pl.LightningDataModule):
    """Training pairs of 16x16 LR patches and two validation sets (3 and 2 whole images), deterministic."""

    val_set_names = ["SetA", "SetB"]
    test_set_names = ["SetA", "SetB"]

    def __init__(self, train_batches: int = 2, batch_size: int = 2, nan_at_sample: int | None = None) -> None:
        super().__init__()
        train = []
        for i in range(train_batches * batch_size):
            hr = synthetic_image(i, PATCH * SCALE, PATCH * SCALE)
            lr = downscale(hr)
            if i == nan_at_sample:
                lr = lr.clone()
                lr[0, 0, 0] = float("nan")
            train.append({"lr": lr, "hr": hr})
        self.train_items = train
        sizes = {"SetA": [(48, 40), (32, 64), (40, 40)], "SetB": [(64, 48), (36, 44)]}
        self.val_items = [
            [
                {"lr": downscale(hr), "hr": hr, "name": f"{set_name}_{k}.png"}
                for k, (h, w) in enumerate(sizes[set_name])
                for hr in [synthetic_image(1000 + 10 * s + k, h, w)]
            ]
            for s, set_name in enumerate(self.val_set_names)
        ]
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(PairList(self.train_items), batch_size=self.batch_size, shuffle=False)

    def val_dataloader(self) -> list[DataLoader]:
        return [DataLoader(PairList(items), batch_size=1) for items in self.val_items]

    def test_dataloader(self) -> list[DataLoader]:
        return self.val_dataloader()


def reference_psnr_y(sr: torch.Tensor, hr: torch.Tensor, border: int) -> float:
    """The protocol from the brief: uint8 RGB -> BT.601 studio-range Y -> crop border -> PSNR (peak 255)."""

    def y(image: torch.Tensor) -> np.ndarray:
        rgb = np.round(np.clip(image.detach().double().numpy(), 0, 1) * 255)
        luma = 16 + (65.481 * rgb[0] + 128.553 * rgb[1] + 24.966 * rgb[2]) / 255
        return luma[border:-border, border:-border]

    mse = np.mean((y(sr) - y(hr)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def make_module(lr: float = 1e-3, seed: int = 0, **overrides) -> SRLitModule:
    """The tiny model with Adam at ``lr`` (betas 0.9, 0.99) and a constant rate, unless overridden."""
    torch.manual_seed(seed)
    settings = {
        "optimizer": partial(torch.optim.Adam, lr=lr, betas=(0.9, 0.99)),
        "scheduler": partial(schedules.constant),
        "ema_decay": 0.9,
    }
    settings.update(overrides)
    return SRLitModule(net=build_model("tiny", SCALE), preset="tiny", **settings)


def make_trainer(root: Path, max_steps: int, val_every: int, callbacks: list | None = None, **options):
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        val_check_interval=val_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks or []),
        callbacks=callbacks or [],
        default_root_dir=root,
        **options,
    )


def last_checkpoint_callback(directory: Path) -> pl.callbacks.ModelCheckpoint:
    return pl.callbacks.ModelCheckpoint(
        dirpath=directory, filename="best", monitor="val/psnr", mode="max", save_top_k=1, save_last=True
    )


# ------------------------------------------------------------------------------------ schedules, EMA
def test_multistep_schedule_halves_at_milestones() -> None:
    factor = MultiStepDecay([250_000, 400_000, 450_000, 475_000], 0.5)
    assert [factor(s) for s in (0, 249_999, 250_000, 399_999, 400_000, 450_000, 475_000, 499_999)] == [
        1.0, 1.0, 0.5, 0.5, 0.25, 0.125, 0.0625, 0.0625,
    ]  # fmt: skip
    assert MultiStepDecay([10], 0.5, warmup_steps=4)(0) == 0.25


def test_cosine_schedule_warms_up_then_decays_to_floor() -> None:
    factor = WarmupCosine(total_steps=110, warmup_steps=10, min_ratio=0.1)
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0)
    assert factor(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert factor(110) == pytest.approx(0.1)
    assert factor(500) == pytest.approx(0.1)


def test_scheduler_state_restores_the_schedule() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=1.0)
    scheduler = build_scheduler(optimizer, "multistep", total_steps=10, milestones=[3], gamma=0.1)
    state = scheduler.state_dict()
    optimizer2 = torch.optim.Adam([param], lr=1.0)
    restored = build_scheduler(optimizer2, "multistep", total_steps=10, milestones=[99], gamma=0.5)
    restored.load_state_dict(state)
    for _ in range(4):
        optimizer2.step()
        restored.step()
    assert optimizer2.param_groups[0]["lr"] == pytest.approx(0.1)


def test_ema_update_matches_formula() -> None:
    model = torch.nn.Linear(3, 2)
    ema = make_ema_copy(model)
    before = ema.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    update_ema(ema, model, 0.75)
    torch.testing.assert_close(ema.weight, 0.75 * before + 0.25 * model.weight.detach())
    assert not ema.weight.requires_grad
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(10**6, 0.999) == 0.999


# ----------------------------------------------------------------------------------- the module
def test_hparams_are_primitive_and_rebuild_the_model_and_recipe() -> None:
    module = make_module(
        scheduler=partial(schedules.multistep, milestones=(7, 5), warmup_steps=2), loss=CharbonnierLoss(0.01)
    )
    assert module.hparams.arch == module.net.config
    assert module.hparams.scheduler == {
        "_target_": "srformer.training.schedules.multistep", "_partial_": True, "milestones": [7, 5], "warmup_steps": 2,
    }  # fmt: skip
    assert module.hparams.optimizer["lr"] == 1e-3 and module.hparams.optimizer["betas"] == [0.9, 0.99]
    assert module.hparams.loss == {"_target_": "srformer.training.losses.CharbonnierLoss", "eps": 0.01}
    rebuilt = SRLitModule(**module.hparams)
    assert rebuilt.net.config == module.net.config
    assert isinstance(rebuilt.criterion, CharbonnierLoss) and rebuilt.criterion.eps == 0.01
    # The rebuilt recipe is the same optimizer and schedule, value for value.
    from test_configs import param_group_values

    first, second = module.configure_optimizers(), rebuilt.configure_optimizers()
    assert param_group_values(first["optimizer"]) == param_group_values(second["optimizer"])
    assert first["lr_scheduler"]["scheduler"].state_dict() == second["lr_scheduler"]["scheduler"].state_dict()

    def primitive(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and primitive(v) for k, v in value.items())
        if isinstance(value, list):
            return all(primitive(v) for v in value)
        return value is None or isinstance(value, bool | int | float | str)

    assert primitive(dict(module.hparams))


def test_grown_model_starts_as_its_source_and_x4_reuses_x2(tmp_path: Path) -> None:
    from srformer.checkpoint import save_weights
    from srformer.training.run import load_matching_weights

    torch.manual_seed(0)
    tiny = build_model("tiny", 4).eval()
    for parameter in tiny.parameters():  # a "trained" model: no zero-initialised tensors left
        parameter.data.normal_(0.0, 0.05)
    source = save_weights(tiny, tmp_path / "tiny.safetensors")

    grown = build_model("small", 4)  # tiny's groups, twice (experiment=bsd400_x4_grown)
    assert grown.config["dim"] == tiny.config["dim"] and len(grown.groups) > len(tiny.groups)
    fresh = load_matching_weights(grown, str(source))
    assert fresh and all(name.startswith(("groups.2.", "groups.3.")) for name in fresh)
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        torch.testing.assert_close(grown.eval()(x), tiny(x), rtol=0, atol=1e-6)
    # The identity groups still learn: their residual conv gets a gradient.
    grown.train()
    F.l1_loss(grown(x), torch.rand(1, 3, 80, 112)).backward()
    assert grown.groups[3].conv.weight.grad.abs().sum() > 0

    x2 = build_model("tiny", 2)
    fresh = load_matching_weights(x2, str(source))
    assert fresh and all(name.startswith("upsampler.") for name in fresh)
    assert torch.equal(x2.groups[1].conv.weight, tiny.groups[1].conv.weight)
    assert x2.groups[1].conv.weight.abs().sum() > 0  # the groups it shares are not reset


def test_fast_dev_run(tmp_path: Path) -> None:
    module = make_module()
    trainer = make_trainer(tmp_path, max_steps=-1, val_every=1, fast_dev_run=True)
    trainer.fit(module, datamodule=SyntheticSRData())
    assert trainer.global_step == 1
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    assert {"val/SetA/psnr", "val/SetB/ssim", "val/psnr"} <= set(trainer.callback_metrics)


def test_validation_uses_ema_weights_and_per_set_psnr(tmp_path: Path) -> None:
    data = SyntheticSRData()
    module = make_module(ema_decay=0.9, lr=2e-3)
    trainer = make_trainer(tmp_path, max_steps=3, val_every=100)
    trainer.fit(module, datamodule=data)
    raw = dict(module.net.named_parameters())
    differences = [(p - raw[n]).abs().max().item() for n, p in module.net_ema.named_parameters()]
    assert max(differences) > 1e-4, "EMA weights should lag behind the raw weights"

    metrics = trainer.validate(module, datamodule=data, verbose=False)[0]
    per_set = {}
    for set_name, items in zip(data.val_set_names, data.val_items, strict=True):
        with torch.no_grad():
            ema_scores = [reference_psnr_y(module.net_ema(i["lr"][None])[0], i["hr"], SCALE) for i in items]
            raw_scores = [reference_psnr_y(module.net(i["lr"][None])[0], i["hr"], SCALE) for i in items]
        per_set[set_name] = np.mean(ema_scores)
        assert metrics[f"val/{set_name}/psnr"] == pytest.approx(per_set[set_name], abs=1e-3)
        assert abs(np.mean(raw_scores) - per_set[set_name]) > 1e-3, "raw and EMA weights should score apart"
    assert metrics["val/psnr"] == pytest.approx(np.mean(list(per_set.values())), abs=1e-3)


def test_resume_from_last_continues_step_optimizer_and_schedule(tmp_path: Path) -> None:
    """4 steps, stop, resume to 6 == 6 steps in one go (weights, Adam state, learning rate)."""
    data = SyntheticSRData(train_batches=2)
    settings = {"scheduler": partial(schedules.multistep, milestones=[5], gamma=0.5)}

    straight = make_module(**settings)
    make_trainer(tmp_path / "straight", max_steps=6, val_every=100).fit(straight, datamodule=data)

    first = make_module(**settings)
    checkpoint_dir = tmp_path / "stopped"  # last.ckpt is written at the validation of step 4
    make_trainer(checkpoint_dir, 4, 4, [last_checkpoint_callback(checkpoint_dir)]).fit(first, datamodule=data)
    saved = torch.load(checkpoint_dir / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 4
    assert saved["optimizer_states"][0]["state"][0]["step"] == 4
    assert saved["hyper_parameters"]["arch"] == first.net.config

    resumed = make_module(seed=99, **settings)  # different init: everything must come from the checkpoint
    # Same validation interval as the first session, as when re-running the same command.
    trainer = make_trainer(checkpoint_dir, 6, 4, [last_checkpoint_callback(checkpoint_dir)])
    trainer.fit(resumed, datamodule=data, ckpt_path="last")
    assert trainer.global_step == 6
    optimizer = trainer.optimizers[0]
    assert int(optimizer.state[optimizer.param_groups[0]["params"][0]]["step"]) == 6
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"{name} differs after resume")


def test_a_checkpoint_of_the_flat_recipe_resumes_and_says_why_it_cannot_rebuild(tmp_path: Path) -> None:
    """A checkpoint written when the module took flat switches: the same weights, optimizer and schedule state
    as now, and hyper-parameters ``optimizer="adam", lr=..., scheduler="multistep", ...``."""
    from srformer.errors import CheckpointError

    data = SyntheticSRData(train_batches=2)
    recipe = {"scheduler": partial(schedules.multistep, milestones=[3], gamma=0.5)}
    first = make_module(**recipe)
    make_trainer(tmp_path, 2, 2, [last_checkpoint_callback(tmp_path)]).fit(first, datamodule=data)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    saved["hyper_parameters"] = {
        "arch": first.net.config, "preset": "tiny", "loss": "l1", "charbonnier_eps": 1e-3, "optimizer": "adam",
        "lr": 1e-3, "betas": [0.9, 0.99], "weight_decay": 0.0, "scheduler": "multistep", "warmup_steps": 0,
        "milestones": [3], "gamma": 0.5, "total_steps": 500_000, "min_lr_ratio": 0.0, "ema_decay": 0.9,
        "compile": False, "channels_last": False, "nonfinite_loss": "stop",
    }  # fmt: skip
    legacy = tmp_path / "legacy.ckpt"
    torch.save(saved, legacy)
    with pytest.raises(CheckpointError, match="names its optimizer 'adam', as checkpoints did before .* train.py"):
        SRLitModule.load_from_checkpoint(legacy, weights_only=True)
    x = synthetic_image(5, 12, 12)[None]
    with torch.no_grad():
        torch.testing.assert_close(load_model(legacy)(x), first.net_ema(x))

    resumed = make_module(seed=99, **recipe)
    trainer = make_trainer(tmp_path / "resumed", 4, 100)
    trainer.fit(resumed, datamodule=data, ckpt_path=str(legacy))
    assert trainer.global_step == 4
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5)  # past milestone 3


def test_training_clock_is_logged_and_sums_over_resumes(tmp_path: Path, monkeypatch) -> None:
    """Fake monotonic clock: 1 hour per call. The resumed run starts from the saved hours, not from zero."""
    fake_now = iter(range(0, 10_000 * 3600, 3600))
    monkeypatch.setattr("srformer.training.callbacks.time.monotonic", lambda: float(next(fake_now)))
    data = SyntheticSRData(train_batches=2)
    clock = TrainingClock()
    first = make_trainer(tmp_path, 2, 2, [clock, last_checkpoint_callback(tmp_path)])
    first.fit(make_module(), datamodule=data)
    logged = float(first.callback_metrics["time/train_hours"])
    assert logged >= 1.0
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    saved_hours = next(v["hours"] for k, v in saved["callbacks"].items() if "TrainingClock" in k)
    assert saved_hours >= logged

    resumed_clock = TrainingClock()
    second = make_trainer(tmp_path, 4, 2, [resumed_clock, last_checkpoint_callback(tmp_path)])
    second.fit(make_module(), datamodule=data, ckpt_path="last")
    assert resumed_clock.hours_before_resume == saved_hours
    assert float(second.callback_metrics["time/train_hours"]) > saved_hours


def test_checkpoint_loads_safely_and_prefers_ema(tmp_path: Path) -> None:
    module = make_module()
    make_trainer(tmp_path, 2, 2, [last_checkpoint_callback(tmp_path)]).fit(module, datamodule=SyntheticSRData())
    model = load_model(tmp_path / "last.ckpt")
    x = synthetic_image(7, 12, 20)[None]
    with torch.no_grad():
        torch.testing.assert_close(model(x), module.net_ema(x))
    restored = SRLitModule.load_from_checkpoint(tmp_path / "last.ckpt", weights_only=True)
    torch.testing.assert_close(restored.net_ema.state_dict(), module.net_ema.state_dict())


def test_nonfinite_loss_stops_naming_the_step_before_any_update(tmp_path: Path) -> None:
    data = SyntheticSRData(train_batches=3, batch_size=1, nan_at_sample=2)
    module = make_module()
    trainer = make_trainer(tmp_path, 5, 100)
    with pytest.raises(NonFiniteLossError, match="nan at step 2"):
        trainer.fit(module, datamodule=data)
    assert trainer.global_step == 2
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_nonfinite_loss_skip_leaves_weights_untouched(tmp_path: Path) -> None:
    """Skipping the NaN batch (the 3rd) gives exactly the weights of training on the first two only."""
    module = make_module(nonfinite_loss="skip")
    trainer = make_trainer(tmp_path, 3, 100)
    trainer.fit(module, datamodule=SyntheticSRData(train_batches=3, batch_size=1, nan_at_sample=2))
    assert module.skipped_batches == 1 and trainer.global_step == 3
    reference = make_module(nonfinite_loss="skip")
    make_trainer(tmp_path, 2, 100).fit(reference, datamodule=SyntheticSRData(train_batches=2, batch_size=1))
    for (name, value), expected in zip(module.state_dict().items(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(value, expected, msg=f"{name} changed on a skipped batch")


def test_interrupted_checkpoint_write_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    from srformer.training.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1}, path)

    def killed_mid_write(obj, file) -> None:
        file.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"global_step": 1}


# ------------------------------------------------------------------------------ export and images
def test_best_export_panels_and_sample(tmp_path: Path) -> None:
    data = SyntheticSRData()
    module = make_module()
    callbacks = [
        ExportBestWeights(str(tmp_path / "checkpoints"), training_data="synthetic"),
        ImagePanel(crop=16, num_images=2, save_dir=str(tmp_path / "panels")),
        SampleUpscale(str(tmp_path)),
    ]
    trainer = make_trainer(tmp_path, 4, 2, callbacks)
    trainer.fit(module, datamodule=data)

    info = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert info["preset"] == "tiny" and info["scale"] == SCALE and info["data"] == "synthetic"
    assert info["arch"] == module.net.config and info["ema"] is True
    best_psnr = callbacks[0].best_score
    assert info["metrics"]["val/psnr"] == pytest.approx(best_psnr, abs=1e-5)
    assert info["steps"] in (2, 4)
    if info["steps"] == 4:  # the final weights are the exported ones: same outputs
        model = load_model(tmp_path / "checkpoints" / "best.safetensors")
        x = synthetic_image(3, 10, 10)[None]
        with torch.no_grad():
            torch.testing.assert_close(model(x), module.net_ema(x))

    panels = sorted((tmp_path / "panels").glob("*.png"))
    assert [p.name for p in panels] == [f"step{s:07d}_{i}.png" for s in (2, 4) for i in (0, 1)]
    panel = np.asarray(Image.open(panels[-1]))
    assert panel.shape == (16, 4 * 16 + 3 * 4, 3)
    hr = data.val_items[0][1]["hr"]  # second image of the first set, centre 16x16 crop of the HR
    top, left = (hr.shape[1] // SCALE - 4) // 2 * SCALE, (hr.shape[2] // SCALE - 4) // 2 * SCALE
    expected_hr = (hr[:, top : top + 16, left : left + 16] * 255).round().byte().permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(np.asarray(Image.open(panels[1]))[:, -16:], expected_hr)

    sample = Image.open(tmp_path / "sample_SetA_0_sr_x4.png")
    assert sample.size == (40, 48)  # HR of SetA_0 is 48x40
    assert (tmp_path / "sample_SetA_0_lr.png").is_file()
    assert (tmp_path / "sample_SetA_0_bicubic_x4.png").is_file()


# --------------------------------------------------------------- train.py: config to files, resume
def synthetic_data_config_dir(tmp_path: Path) -> Path:
    """A Hydra search-path folder with ``data/synthetic.yaml`` pointing at :class:`SyntheticSRData`."""
    conf = tmp_path / "conf"
    (conf / "data").mkdir(parents=True, exist_ok=True)
    (conf / "data" / "synthetic.yaml").write_text(f"_target_: {__name__}.SyntheticSRData\n")
    return conf


def fast_run_overrides(tmp_path: Path, max_steps: int, logger: str) -> list[str]:
    return [
        f"hydra.searchpath=[file://{synthetic_data_config_dir(tmp_path)}]",
        "data=synthetic",
        "trainer=cpu",
        f"logger={logger}",
        f"trainer.max_steps={max_steps}",
        "trainer.val_check_interval=2",
        "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1",
        "callbacks.image_panel.crop=16",
        "~callbacks.progress_bar",
        "~callbacks.model_summary",
    ]


def run_train(
    tmp_path: Path, output_dir: Path, max_steps: int, logger: str = "csv", extra: tuple[str, ...] = ()
) -> dict[str, float]:
    from test_configs import compose_train_config

    from srformer.training.run import train

    cfg = compose_train_config([*fast_run_overrides(tmp_path, max_steps, logger), *extra], output_dir)
    return train(cfg)


def read_csv_metrics(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_train_writes_run_folder_and_rerun_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    metrics = run_train(tmp_path, run_dir, max_steps=2)
    assert metrics["val/psnr"] == pytest.approx(np.mean([metrics["val/SetA/psnr"], metrics["val/SetB/psnr"]]))
    assert {"test/SetA/psnr", "test/SetB/ssim", "test/psnr"} <= set(metrics)
    for name in ("checkpoints/last.ckpt", "checkpoints/best.ckpt", "checkpoints/best.safetensors",
                 "checkpoints/best.json", "panels/step0000002_0.png", "sample_SetA_0_sr_x4.png"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "checkpoints" / "best.json").read_text())["data"] == "synthetic"

    run_train(tmp_path, run_dir, max_steps=4)  # the same command again, longer: continues from step 2
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert not list(run_dir.glob("checkpoints/.*.tmp")), "temporary checkpoint files must be renamed"
    first, second = (read_csv_metrics(run_dir / "csv" / f"version_{v}" / "metrics.csv") for v in (0, 1))
    # Lightning logs validation at the index of the last batch: global step 2 is logged as step 1.
    assert {int(r["step"]) for r in first if r.get("val/psnr")} == {1}
    assert {int(r["step"]) for r in second if r.get("val/psnr")} == {3}, "resumed run must not redo step 2"
    assert min(int(r["step"]) for r in second if r.get("train/loss")) >= 2
    # The training clock goes on from where the first session stopped.
    first_hours = max(float(r["time/train_hours"]) for r in first if r.get("time/train_hours"))
    assert max(float(r["time/train_hours"]) for r in second if r.get("time/train_hours")) > first_hours


def read_wandb_records(path: Path) -> list:
    """Records of an offline ``run-*.wandb`` file: a 7-byte file header, then LevelDB-log blocks of 32 KiB
    holding chunks (4-byte CRC, 2-byte length, 1-byte type: full/first/middle/last) of protobuf records."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, records, pending = 7, [], b""
    while position + 7 <= len(data):
        if 32768 - position % 32768 < 7:  # block trailer too short for a chunk header: zero padding
            position += 32768 - position % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 2):
            pending = chunk
        elif kind in (3, 4):
            pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def wandb_key(item) -> str:
    return item.key or "/".join(item.nested_key)


def test_wandb_offline_run_has_metrics_and_image_panel(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    metrics = run_train(tmp_path, run_dir, max_steps=2, logger="wandb", extra=("test=false",))
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run_id = (run_dir / "wandb_run_id.txt").read_text().strip()
    assert runs[0].name.endswith(run_id)
    panels = list((runs[0] / "files" / "media" / "images" / "val").glob("panel_*.png"))
    assert len(panels) == 2
    assert np.asarray(Image.open(panels[0])).shape == (16, 4 * 16 + 3 * 4, 3)

    run_file = runs[0] / f"run-{run_id}.wandb"
    # wandb's writer is another process: wait until the file stops growing before reading it.
    deadline, size = time.monotonic() + 20, -1
    while run_file.stat().st_size != size and time.monotonic() < deadline:
        size = run_file.stat().st_size
        time.sleep(0.5)
    records = read_wandb_records(run_file)
    history = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            history.update({wandb_key(item): json.loads(item.value_json) for item in record.history.item})
    assert history["val/psnr"] == pytest.approx(metrics["val/psnr"], abs=1e-4)
    assert history["val/SetA/psnr"] == pytest.approx(metrics["val/SetA/psnr"], abs=1e-4)
    assert "train/loss" in history and "lr-Adam/pg1" in history
    assert history["val/panel/count"] == 2
    artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert [(a.name, a.type) for a in artifacts] == [(f"weights-{run_id}", "model")]
    config = {}
    for record in records:
        if record.WhichOneof("record_type") == "config":
            config.update({wandb_key(item): json.loads(item.value_json) for item in record.config.update})
    assert config["model"]["preset"] == "tiny" and config["module"]["optimizer"]["lr"] == 2e-4


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_single_process_validation(tmp_path: Path) -> None:
    """Two gloo ranks train; the validation PSNR (3 + 2 images, uneven over 2 ranks) equals the
    single-process value for the same weights, and Hydra made exactly one run folder."""
    logs = tmp_path / "logs"
    command = [
        sys.executable, str(REPO / "train.py"), *fast_run_overrides(tmp_path, 4, "csv"),
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
        "trainer.val_check_interval=4", "test=false", f"paths.log_dir={logs}",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "GLOBAL_RANK: 1" in output and "MEMBER: 2/2" in output
    run_dirs = list((logs / "train" / "runs").iterdir())
    assert len(run_dirs) == 1, run_dirs
    run_dir = run_dirs[0]
    assert len(list(run_dir.glob("**/.hydra"))) == 1
    rows = read_csv_metrics(run_dir / "csv" / "version_0" / "metrics.csv")
    ddp_psnr = {k: float(r[k]) for r in rows if r.get("val/psnr") for k in ("val/psnr", "val/SetA/psnr")}

    module = SRLitModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    single = make_trainer(tmp_path, 1, 1).validate(module, datamodule=SyntheticSRData(), verbose=False)[0]
    assert single["val/SetA/psnr"] == pytest.approx(ddp_psnr["val/SetA/psnr"], abs=1e-4)
    assert single["val/psnr"] == pytest.approx(ddp_psnr["val/psnr"], abs=1e-4)
