"""Train an SR model: ``python train.py experiment=quickstart`` (see docs/TRAINING.md).

Every config value can be overridden (``python train.py experiment=bsd400_x4_tiny module.lr=1e-4``),
``-m`` sweeps (``python train.py -m module.lr=1e-4,2e-4``), and re-running a command with the same
``run_name=...`` resumes it from its ``last.ckpt``.
"""

import sys

import hydra
from omegaconf import DictConfig

from srformer.errors import SRFormerError


@hydra.main(version_base="1.3", config_path="configs", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    from srformer.training.run import train  # after Hydra has parsed the command line: fast --help

    try:
        metrics = train(cfg)
    except SRFormerError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    # The monitored value, for sweepers that optimise it (e.g. Optuna).
    return metrics.get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
