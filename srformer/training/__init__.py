"""Training: the LightningModule, EMA, learning-rate schedules, callbacks, loggers and the Hydra entry."""

from srformer.training.module import SRLitModule

__all__ = ["SRLitModule"]
