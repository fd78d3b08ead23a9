"""Per-layer curvature: top eigenvalues and trace of each layer's own diagonal block of the Hessian."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from landscape.analyses.hessian.hutch import TraceMethod
from landscape.analyses.hessian.hutch import trace as _trace_op
from landscape.analyses.hessian.krylov import lanczos
from landscape.analyses.hessian.operator import Batch, HessianOperator, LossFn, select_parameters
from landscape.errors import LandscapeError


@dataclass(frozen=True)
class LayerCurvature:
    """Curvature of one layer's Hessian block ``∂²L/∂θ_l²``."""

    name: str
    size: int
    eigenvalues: np.ndarray
    residuals: np.ndarray
    trace: float
    trace_stderr: float
    n_hvp: int


@dataclass(frozen=True)
class PerLayerResult:
    layers: tuple[LayerCurvature, ...]
    n_hvp: int
    seconds: float
    seed: int


def layer_groups(model: nn.Module, *, depth: int | None = None) -> dict[str, list[str]]:
    """Parameter names grouped by the module that owns them (``depth`` = number of name parts kept, e.g. 2 for
    ``layer1.0``; default: the owning module itself)."""
    groups: dict[str, list[str]] = {}
    for name, _ in model.named_parameters():
        parts = name.split(".")[:-1] or [name]
        key = ".".join(parts if depth is None else parts[:depth]) or name
        groups.setdefault(key, []).append(name)
    return groups


def per_layer(model: nn.Module, data: Batch | Iterable[Batch], *, k: int = 1, tol: float = 1e-3,
              n_probes: int = 30, method: TraceMethod = "hutch++", depth: int | None = None,
              groups: dict[str, list[str]] | None = None, params: str | Sequence[str] | None = None,
              loss_fn: LossFn | None = None, train_mode: bool = False, seed: int = 0,
              progress: bool = False) -> PerLayerResult:
    """Top-``k`` eigenvalues and trace of each layer's Hessian block.

    ``params`` (globs, as for the operator) keeps only the matching parameters, and so only the layers holding them.
    Blocks of at most ``n_probes`` parameters get their exact trace (one HVP per unit vector); larger ones use
    ``method``. Over several batches, pass a list (an iterator is consumed by the first layer).
    """
    t0 = time.perf_counter()
    if not isinstance(data, (list, tuple)):
        data = list(data)
    groups = groups if groups is not None else layer_groups(model, depth=depth)
    if params is not None:
        chosen = {n for n, _ in select_parameters(model, params)}
        groups = {g: kept for g, names in groups.items() if (kept := [n for n in names if n in chosen])}
    if not groups:
        raise LandscapeError("the model has no parameters to analyse per layer")
    layers, total = [], 0
    items = list(groups.items())
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="per-layer Hessian", unit="layer", disable=None, leave=False)
    for name, names in items:
        exact = {n for n, _ in model.named_parameters()}
        unknown = [n for n in names if n not in exact]
        if unknown:
            raise LandscapeError(f"layer group {name!r} names unknown parameters: {', '.join(unknown[:3])}")
        with HessianOperator(model, data, loss_fn=loss_fn, params=names, train_mode=train_mode, seed=seed) as op:
            kk = min(k, op.size)
            eig = lanczos(op, k=kk, tol=tol, seed=seed)
            how = "exact" if op.size <= n_probes else method
            tr = _trace_op(op, n_probes=n_probes, method=how, seed=seed)
            layers.append(LayerCurvature(name=name, size=op.size, eigenvalues=eig.eigenvalues,
                                         residuals=eig.residuals, trace=tr.estimate, trace_stderr=tr.stderr,
                                         n_hvp=op.n_hvp))
            total += op.n_hvp
    return PerLayerResult(layers=tuple(layers), n_hvp=total, seconds=time.perf_counter() - t0, seed=seed)
