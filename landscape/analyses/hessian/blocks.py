"""Block heterogeneity of the Hessian: for each block of parameters, its own diagonal block ``∂²L/∂θ_b²`` — the
SLQ spectral density (one grid and one Gaussian kernel for all blocks, so they are comparable), the top
eigenvalue (Lanczos) and the trace (Hutch++) — and the Jensen–Shannon distance between the block densities
(Zhang et al. 2024, "Why Transformers need Adam: a Hessian perspective").

Blocks are parameter tensors (``block_by="parameter"``), the modules owning them (``block_by="module"``) or glob
patterns (``blocks=["*.attention.*", "layer1.*"]``): each pattern is one block, a parameter joins the first
pattern that matches it, and the parameters no pattern matches form one last block named ``"other"``.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from torch import nn

from landscape.analyses.hessian.hutch import TraceMethod
from landscape.analyses.hessian.hutch import trace as _trace_op
from landscape.analyses.hessian.krylov import lanczos
from landscape.analyses.hessian.operator import Batch, HessianOperator, LossFn, select_parameters
from landscape.analyses.hessian.perlayer import layer_groups
from landscape.analyses.hessian.slq import density as _slq
from landscape.errors import LandscapeError

BlockBy = Literal["parameter", "module"]
OTHER = "other"  # the block of the parameters that no pattern matches


@dataclass(frozen=True)
class BlockSpectrum:
    """One block: its parameters, top eigenvalue with residual, trace ± stderr, and SLQ density on the common grid
    (``nodes``/``weights`` are the raw quadrature, ``(n_vectors, n_steps)``)."""

    name: str
    params: tuple[str, ...]
    size: int
    eigenvalues: np.ndarray
    residuals: np.ndarray
    trace: float
    trace_stderr: float
    trace_method: str
    nodes: np.ndarray
    weights: np.ndarray
    density: np.ndarray
    n_hvp: int


@dataclass(frozen=True)
class PerBlockResult:
    """All blocks on one ``grid`` with kernel width ``sigma``; ``js_distance[i, j]`` between blocks i and j (base 2,
    in [0, 1]) and ``js_mean`` its mean over the pairs i < j (NaN for a single block)."""

    blocks: tuple[BlockSpectrum, ...]
    grid: np.ndarray
    sigma: float
    js_distance: np.ndarray
    js_mean: float
    settings: dict[str, Any]
    n_hvp: int
    seconds: float
    seed: int

    def stored(self) -> dict[str, Any]:
        """The in-memory layout of ``Hessian.per_block`` (what ``schema.write_per_block`` writes)."""
        return {"grid": self.grid, "sigma": self.sigma, "js_distance": self.js_distance, "js_mean": self.js_mean,
                "settings": dict(self.settings),
                "blocks": {b.name: {"params": list(b.params), "size": b.size, "eigenvalues": b.eigenvalues,
                                    "residuals": b.residuals, "trace": b.trace, "trace_stderr": b.trace_stderr,
                                    "trace_method": b.trace_method, "values": b.density, "nodes": b.nodes,
                                    "weights": b.weights} for b in self.blocks}}


def block_groups(model: nn.Module, *, block_by: BlockBy = "parameter", blocks: str | Sequence[str] | None = None,
                 params: str | Sequence[str] | None = None) -> dict[str, list[str]]:
    """Parameter names per block, in the model's parameter order (pattern order with ``blocks``).

    ``blocks``: each entry is one block (comma-separated globs inside an entry form one block, and a module prefix
    such as ``fc`` matches its parameters); the unmatched parameters form the block ``"other"``. ``params`` first
    keeps only the matching parameters, so ``params`` equal to the patterns drops the rest.
    """
    named = [n for n, _ in select_parameters(model, params)]
    if blocks:
        entries = [blocks] if isinstance(blocks, str) else list(blocks)
        groups: dict[str, list[str]] = {}
        left = list(named)
        for entry in entries:
            globs = [g.strip() for g in entry.split(",") if g.strip()]
            if not globs or entry in groups or entry == OTHER:
                raise LandscapeError(f"blocks={entry!r} is empty, repeated or the reserved name {OTHER!r}; give each "
                                     "block one distinct glob pattern")
            hit = [n for n in left if any(fnmatch.fnmatchcase(n, g) or fnmatch.fnmatchcase(n, g + ".*")
                                          for g in globs)]
            if not hit:
                taken = " that an earlier pattern did not take" if len(left) < len(named) else ""
                raise LandscapeError(f"blocks={entry!r} matches no parameter{taken}; names look like: "
                                     f"{', '.join(named[:4])}, ...")
            groups[entry] = hit
            left = [n for n in left if n not in set(hit)]
        if left:
            groups[OTHER] = left
        return groups
    if block_by == "parameter":
        return {n: [n] for n in named}
    if block_by == "module":
        chosen = set(named)
        return {g: kept for g, names in layer_groups(model).items() if (kept := [n for n in names if n in chosen])}
    raise LandscapeError(f"block_by={block_by!r} is not one of parameter, module")


def smoothed_density(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
    """``Σ wᵢ N(θᵢ, σ²)`` on ``grid``, normalised to integrate to 1 there (a zero-mass input stays zero)."""
    nodes, weights = np.ravel(nodes), np.ravel(weights)
    keep = weights > 0
    diff = grid[None, :] - nodes[keep, None]
    values = (weights[keep, None] * np.exp(-(diff**2) / (2 * sigma**2))).sum(axis=0)
    area = float(np.sum((values[1:] + values[:-1]) * np.diff(grid)) / 2)
    return values / area if area > 0 else values


def common_grid(nodes: Sequence[np.ndarray], *, sigma_sq: float = 1e-5, n_bins: int = 10_000
                ) -> tuple[np.ndarray, float]:
    """One grid and kernel width for all blocks: the rule of ``slq.density`` over the union of their nodes
    (``σ² = sigma_sq · max(1, λmax − λmin)``, a margin of 5σ either side)."""
    lo = min(float(np.min(n)) for n in nodes)
    hi = max(float(np.max(n)) for n in nodes)
    sigma = float(np.sqrt(sigma_sq * max(1.0, hi - lo)))
    return np.linspace(lo - 5 * sigma, hi + 5 * sigma, n_bins), sigma


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon distance ``sqrt(JSD)`` (base 2, so in [0, 1]) between two densities on the same uniform grid,
    each turned into probability masses on the grid points."""
    p = np.asarray(p, dtype=np.float64) / np.sum(p)
    q = np.asarray(q, dtype=np.float64) / np.sum(q)
    m = (p + q) / 2
    div = 0.0
    for a in (p, q):
        nz = (a > 0) & (m > 0)  # 0·log 0 = 0; m underflows to 0 only beside a subnormal a, whose term is ~0
        div += 0.5 * float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))
    return float(np.sqrt(min(max(div, 0.0), 1.0)))  # clip rounding just outside [0, 1]


def js_matrix(densities: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    """The symmetric matrix of pairwise JS distances (zero diagonal) and its mean over pairs i < j."""
    n = len(densities)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = js_distance(densities[i], densities[j])
    mean = float(out[np.triu_indices(n, 1)].mean()) if n > 1 else float("nan")
    return out, mean


def per_block(model: nn.Module, data: Batch | Iterable[Batch], *, block_by: BlockBy = "parameter",
              blocks: str | Sequence[str] | None = None, groups: dict[str, list[str]] | None = None,
              tol: float = 1e-3, n_probes: int = 30, method: TraceMethod = "hutch++", lanczos_steps: int = 100,
              density_vectors: int = 1, sigma_sq: float = 1e-5, n_bins: int = 10_000,
              params: str | Sequence[str] | None = None, loss_fn: LossFn | None = None, train_mode: bool = False,
              seed: int = 0, progress: bool = False) -> PerBlockResult:
    """Top eigenvalue, trace and SLQ density of each block's Hessian, and the JS distances between the densities.

    Each block runs ``min(lanczos_steps, size)`` Lanczos steps from ``density_vectors`` start vectors (the same
    seed for every block); blocks of at most ``n_probes`` parameters get their exact trace. ``groups`` (name →
    parameter names) overrides ``block_by``/``blocks``. Over several batches, pass a list.
    """
    t0 = time.perf_counter()
    if lanczos_steps < 1 or density_vectors < 1:
        raise LandscapeError(f"lanczos_steps={lanczos_steps} and density_vectors={density_vectors} must both be "
                             "at least 1")
    if not isinstance(data, (list, tuple)):
        data = list(data)
    how_blocks = "groups" if groups is not None else "patterns" if blocks else block_by
    groups = groups if groups is not None else block_groups(model, block_by=block_by, blocks=blocks, params=params)
    if not groups:
        raise LandscapeError("the model has no parameters to split into blocks")
    items: Iterable[tuple[str, list[str]]] = list(groups.items())
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="per-block Hessian", unit="block", disable=None, leave=False)
    raw: list[dict[str, Any]] = []
    total = 0
    for name, names in items:
        with HessianOperator(model, data, loss_fn=loss_fn, params=names, train_mode=train_mode, seed=seed) as op:
            eig = lanczos(op, k=1, tol=tol, seed=seed)
            how: TraceMethod = "exact" if op.size <= n_probes else method
            tr = _trace_op(op, n_probes=n_probes, method=how, seed=seed)
            # Only the raw quadrature is kept (hence 2 bins): the smoothing comes below, on the common grid.
            d = _slq(op, n_steps=min(lanczos_steps, op.size), n_vectors=density_vectors, seed=seed, n_bins=2)
            raw.append({"name": name, "params": tuple(names), "size": op.size, "eigenvalues": eig.eigenvalues,
                        "residuals": eig.residuals, "trace": tr.estimate, "trace_stderr": tr.stderr,
                        "trace_method": how, "nodes": d.nodes, "weights": d.weights, "n_hvp": op.n_hvp})
            total += op.n_hvp
    # The densities are smoothed only now, with one kernel on one grid, so that the JS distances compare shapes.
    grid, sigma = common_grid([r["nodes"] for r in raw], sigma_sq=sigma_sq, n_bins=n_bins)
    spectra = tuple(BlockSpectrum(density=smoothed_density(r["nodes"], r["weights"], grid, sigma), **r) for r in raw)
    matrix, mean = js_matrix([b.density for b in spectra])
    patterns = None if not blocks or how_blocks == "groups" else [blocks] if isinstance(blocks, str) else list(blocks)
    settings = {"block_by": how_blocks, "patterns": patterns,
                "lanczos_steps": lanczos_steps, "density_vectors": density_vectors, "probes": n_probes,
                "trace_method": method, "tol": tol, "sigma_sq": sigma_sq, "n_bins": n_bins}
    return PerBlockResult(blocks=spectra, grid=grid, sigma=sigma, js_distance=matrix, js_mean=mean,
                          settings=settings, n_hvp=total, seconds=time.perf_counter() - t0, seed=seed)
