"""Private helpers shared by the analyses that evaluate a model on given inputs."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from landscape.errors import LandscapeError


def readonly(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    a.flags.writeable = False
    return a


class EvalMode:
    """Eval mode inside the block; the previous train/eval flag of every submodule restored afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modes: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> nn.Module:
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        for m, mode in self.modes:
            m.training = mode


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
