"""Parameters and state dicts as per-tensor dicts ("directions"): selection, dot, axpy, norms, per-filter norms.

A direction is an ordered ``dict[str, Tensor]`` keyed like the model's ``state_dict``. ``dir_type="weights"`` covers
the parameters only; ``"states"`` covers every floating-point entry of the state dict (BN running statistics
included; integer counters such as ``num_batches_tracked`` are never perturbed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

import numpy as np
import torch
from torch import nn

from landscape.errors import LandscapeError

Direction = dict[str, torch.Tensor]
DirType = Literal["weights", "states"]


def tensor_names(model: nn.Module, *, dir_type: DirType = "weights") -> list[str]:
    """The state-dict keys a direction of ``dir_type`` covers, in state-dict order."""
    if dir_type == "weights":
        params = {id(p) for p in model.parameters()}
        return [k for k, v in model.state_dict(keep_vars=True).items() if id(v) in params]
    if dir_type == "states":
        return [k for k, v in model.state_dict().items() if v.is_floating_point()]
    raise LandscapeError(f"dir_type '{dir_type}' is unknown; use weights or states")


def live_tensors(model: nn.Module, names: Iterable[str]) -> Direction:
    """The model's own tensors (sharing storage) for ``names``: writing into them changes the model."""
    state = model.state_dict()  # detached views that share storage with parameters and buffers
    return {k: state[k] for k in names}


def get_tensors(model: nn.Module, *, dir_type: DirType = "weights") -> Direction:
    """A detached copy of the tensors a direction of ``dir_type`` covers."""
    state = model.state_dict()
    return {k: state[k].detach().clone() for k in tensor_names(model, dir_type=dir_type)}


@torch.no_grad()
def set_tensors(live: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor],
                steps: Iterable[tuple[float, Mapping[str, torch.Tensor]]] = ()) -> None:
    """Write ``base + Σ coef·direction`` into ``live``, from the base every time (no accumulated drift)."""
    steps = [(float(c), d) for c, d in steps if c != 0.0]
    for k, t in live.items():
        t.copy_(base[k])
        for coef, d in steps:
            t.add_(d[k], alpha=coef)


def dot(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Σ over tensors of ⟨a_k, b_k⟩, accumulated in float64."""
    total = torch.zeros((), dtype=torch.float64)
    for k, t in a.items():
        total += (t.double() * b[k].double()).sum().cpu()
    return float(total)


def norm(a: Mapping[str, torch.Tensor]) -> float:
    """Euclidean norm of all tensors together (float64)."""
    return dot(a, a) ** 0.5


def axpy(alpha: float, x: Mapping[str, torch.Tensor], y: Mapping[str, torch.Tensor]) -> Direction:
    """``y + alpha·x`` as a new direction."""
    return {k: y[k] + alpha * x[k] for k in y}


def sub(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> Direction:
    """``a − b`` key by key; the keys and shapes must agree."""
    missing = [k for k in a if k not in b]
    if missing:
        raise LandscapeError(f"tensor '{missing[0]}' is missing from the other model ({len(missing)} keys differ); "
                             "are both checkpoints the same architecture?")
    out: Direction = {}
    for k, t in a.items():
        if t.shape != b[k].shape:
            raise LandscapeError(f"tensor '{k}' has shape {tuple(t.shape)} here and {tuple(b[k].shape)} in the other "
                                 "model; are both checkpoints the same architecture?")
        out[k] = t - b[k].to(t.device, t.dtype)
    return out


def zeros_like(a: Mapping[str, torch.Tensor]) -> Direction:
    return {k: torch.zeros_like(t) for k, t in a.items()}


def filter_norms(t: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of each slice along dim 0 (one conv filter / the weights into one neuron), shape (dim0,)."""
    if t.dim() == 0:
        return t.abs().reshape(1)
    return t.reshape(t.shape[0], -1).norm(dim=1)


def to_numpy(a: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: t.detach().cpu().numpy() for k, t in a.items()}


def from_numpy(a: Mapping[str, np.ndarray], *, like: Mapping[str, torch.Tensor]) -> Direction:
    """Tensors on the device and dtype of ``like`` (same keys)."""
    return {k: torch.as_tensor(np.asarray(a[k])).to(device=t.device, dtype=t.dtype) for k, t in like.items()}
