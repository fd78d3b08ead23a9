"""The training losses, per sample (shape ``(B,)``, the contract of ``landscape.core.evaluate``) and as batch means.

``cross_entropy``: softmax cross-entropy on class indices. ``mse``: the square loss ``½‖f(x) − e_y‖²`` against the
one-hot target ``e_y`` (summed over classes), as in Cohen et al. (2021), whose edge-of-stability experiments use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from landscape.errors import LandscapeError

LossName = Literal["cross_entropy", "mse"]
LOSSES: tuple[str, ...] = ("cross_entropy", "mse")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample softmax cross-entropy, shape ``(B,)``."""
    return F.cross_entropy(outputs, targets, reduction="none")


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample ``½‖outputs − onehot(targets)‖²``, shape ``(B,)``."""
    onehot = F.one_hot(targets, outputs.shape[1]).to(outputs.dtype)
    return 0.5 * (outputs - onehot).square().sum(dim=1)


def mean_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs, targets)


def mean_mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return mse(outputs, targets).mean()


def per_sample(name: str) -> LossFn:
    """The per-sample loss called ``name`` (``"cross_entropy"`` or ``"mse"``)."""
    check_loss(name)
    return cross_entropy if name == "cross_entropy" else mse


def batch_mean(name: str) -> LossFn:
    """The batch-mean loss called ``name``: what a training step differentiates."""
    check_loss(name)
    return mean_cross_entropy if name == "cross_entropy" else mean_mse


def check_loss(name: str) -> None:
    if name not in LOSSES:
        raise LandscapeError(f"loss={name!r}; use one of {', '.join(LOSSES)}")
