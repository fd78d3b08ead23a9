"""landscape: loss landscapes, Hessian spectra and smoothness probes for neural networks."""

from landscape._version import __version__
from landscape.checkpoint import load_checkpoint, save_checkpoint
from landscape.data import load_dataset
from landscape.errors import LandscapeError
from landscape.models import build_model

__all__ = [
    "LandscapeError",
    "__version__",
    "build_model",
    "load_checkpoint",
    "load_dataset",
    "save_checkpoint",
]
