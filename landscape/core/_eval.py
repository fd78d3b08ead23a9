"""Private helpers shared by the analyses that evaluate a model on given inputs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from landscape.core.budget import warn_if_long
from landscape.errors import LandscapeError


def readonly(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    a.flags.writeable = False
    return a


def on_model_device(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
           batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if inputs.ndim < 2 or inputs.shape[0] != targets.shape[0] or inputs.shape[0] == 0:
        raise LandscapeError(f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} must be non-empty "
                             "with one target per sample")
    if batch_size < 1:
        raise LandscapeError(f"batch_size={batch_size} must be at least 1")
    p = next(iter(model.parameters()), None)
    device, dtype = (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)
    return inputs.to(device=device, dtype=dtype), targets.to(device=device, dtype=torch.long)


class Pace:
    """Times the first forward passes of an analysis and warns once if the whole will take more than a day."""

    def __init__(self, total: int, *, what: str) -> None:
        self.total, self.what = total, what
        self.t0: float | None = None
        self.points = 0
        self.checked = False

    def add(self, points: int) -> None:
        """Report ``points`` more evaluated; the speed is measured from the first report (setup excluded)."""
        if self.checked:
            return
        now = time.perf_counter()
        if self.t0 is None:
            self.t0 = now
            return
        self.points += points
        if now - self.t0 > 0.5:  # long enough for a stable speed
            self.checked = True
            warn_if_long((now - self.t0) / self.points * self.total, what=f"{self.what} ({self.total:,} points)")


@contextlib.contextmanager
def batchnorm_guard(batch_size: int) -> Iterator[None]:
    """PyTorch's ValueError for a train-mode BatchNorm that sees one value per channel, as a one-line error."""
    try:
        yield
    except ValueError as exc:
        if "Expected more than 1 value per channel" not in str(exc):
            raise
        raise LandscapeError(f"a batch of {batch_size} sample(s) leaves a BatchNorm layer one value per channel in "
                             "train mode; use larger batches or BatchNorm in eval mode") from None
