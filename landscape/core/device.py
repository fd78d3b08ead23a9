"""Device selection shared by every command."""

from __future__ import annotations

import torch

from landscape.errors import LandscapeError


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is a user error."""
    if isinstance(spec, torch.device):
        return spec
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise LandscapeError(f"device={spec} asked for, but this torch build sees no CUDA device; use device=cpu")
    try:
        return torch.device(spec)
    except RuntimeError:
        raise LandscapeError(f"unknown device '{spec}'; use auto, cpu, cuda or cuda:N") from None
