"""srformer: image super-resolution with windowed self- and cross-attention."""

from srformer.errors import CheckpointError, DataError, ImageError, SRFormerError

__version__ = "0.1.0"

__all__ = ["CheckpointError", "DataError", "ImageError", "SRFormerError", "__version__", "load_model"]


def load_model(path, device="cpu", scale=None):
    """Load a ready-to-run model from weights (.safetensors + .json), a Lightning checkpoint or a run folder.

    With ``scale``, a model trained for another scale is refused with a clear :class:`CheckpointError`.
    """
    from srformer.checkpoint import load_model as _load_model

    return _load_model(path, device=device, scale=scale)
