"""Train an SR model: ``python train.py experiment=quickstart`` (see docs/TRAINING.md).

Every config value can be overridden (``python train.py experiment=bsd400_x4_tiny module.optimizer.lr=1e-4``),
``-m`` sweeps (``python train.py -m module.optimizer.lr=1e-4,2e-4``), and re-running a command with the same
``run_name=...`` resumes it from its ``last.ckpt``.

A user error or a diverged run prints one line ``error: ...`` and writes ``failed.json`` in the run folder;
a single run then exits with status 2, while a sweep records the failed job and goes on with the next one.
A command line Hydra cannot compose (``model=nope``, a key the config lacks) is one line ``error: ...`` and
exit status 2 too.
"""

import re
import sys

import hydra
from omegaconf import DictConfig

from srformer.errors import ConfigError, SRFormerError, hydra_errors_as_user_errors, report_user_error

#: Keys of the flat ``module.*`` recipe that moved when the optimizer, scheduler and loss became config groups.
MOVED_KEYS = {
    "lr": "module.optimizer.lr",
    "betas": "module.optimizer.betas",
    "weight_decay": "module.optimizer.weight_decay",
    "warmup_steps": "module.scheduler.warmup_steps",
    "milestones": "module.scheduler.milestones",
    "gamma": "module.scheduler.gamma",
    "total_steps": "module.scheduler.total_steps",
    "min_lr_ratio": "module.scheduler.min_ratio",
    "charbonnier_eps": "module.loss.eps (with loss=charbonnier)",
}


@hydra.main(version_base="1.3", config_path="configs", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    from srformer.training.run import run_task  # after Hydra has parsed the command line: fast --help

    # The best value of the monitored metric, for sweepers that optimise it (e.g. Optuna); NaN for a failed job.
    return run_task(cfg)


def cli() -> None:
    """``main`` with Hydra's own errors reported as every entry point reports a user error."""
    try:
        with hydra_errors_as_user_errors():
            main()
    except SRFormerError as err:
        sys.exit(report_user_error(with_moved_key_hint(err)))


def with_moved_key_hint(err: SRFormerError) -> SRFormerError:
    """``module.lr=1e-4`` (an override of the flat recipe) names where the key is now."""
    unknown = re.match(r"there is no key 'module\.(\w+)' in the config", str(err))
    if unknown is None or unknown[1] not in MOVED_KEYS:
        return err
    return ConfigError(
        f"module.{unknown[1]} is now {MOVED_KEYS[unknown[1]]}: the optimizer, scheduler and loss are config"
        " groups (optimizer=adamw, scheduler=cosine, loss=charbonnier; see docs/TRAINING.md)"
    )


if __name__ == "__main__":
    cli()
