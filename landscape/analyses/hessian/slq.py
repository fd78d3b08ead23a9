"""Spectral density of a symmetric operator by stochastic Lanczos quadrature (SLQ).

For each random unit start vector ``v``, ``n_steps`` Lanczos steps give a tridiagonal ``T``; its eigenvalues are quadrature nodes and the squared first components of its eigenvectors
the weights, so that ``Σ wᵢ f(θᵢ) ≈ vᵀ f(A) v``. Weights are averaged over vectors (they sum to 1) and smoothed
with a Gaussian kernel onto a grid.

Re-orthogonalisation (``reorthogonalize=True``, the default): full, two Gram-Schmidt passes against the stored
basis, which is kept in the operator's work dtype (float32 for a float32 model: ``4·n_steps`` bytes per parameter,
half of a float64 basis) with float64-accumulated coefficients; no ghost Ritz values. With ``False`` only the
three-term recurrence runs (three vectors, whatever ``n_steps``): in finite precision converged Ritz values then
reappear as ghost copies that share their weight, so each quadrature stays close to that of a nearby matrix
(Paige; Greenbaum 1989) and the smoothed density and its moments stay accurate (Chen, Trogdon & Ubaru 2021), but
``nodes`` may list an outlier more than once. The tests hold both to the same checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from landscape.analyses.hessian._vectors import dot64, orthogonalise
from landscape.analyses.hessian.operator import (
    CountingMatvec,
    SymmetricOperator,
    require_workspace,
    work_dtype,
)
from landscape.core.budget import require_memory
from landscape.errors import LandscapeError


@dataclass(frozen=True)
class DensityResult:
    """A smoothed spectral density (``density`` integrates to 1 over ``grid``) and its raw quadrature."""

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray  # (n_vectors, n_steps) Ritz values
    weights: np.ndarray  # (n_vectors, n_steps), each row sums to 1 / n_vectors
    sigma: float
    n_matvec: int
    seconds: float
    seed: int


def _tridiagonal(op: SymmetricOperator, v: torch.Tensor, n_steps: int,
                 apply: Callable[[torch.Tensor], torch.Tensor], *, reorthogonalize: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    wd = v.dtype
    basis = torch.zeros(n_steps if reorthogonalize else 2, op.size, dtype=wd, device=op.device)
    basis[0] = v
    alpha, beta = np.zeros(n_steps), np.zeros(max(n_steps - 1, 0))
    steps = n_steps
    for j in range(n_steps):
        row = j if reorthogonalize else j % 2
        w = apply(basis[row])
        if reorthogonalize:
            alpha[j] = float(orthogonalise(w, basis[: j + 1])[j])
        else:  # w ← A v_j − β_{j−1} v_{j−1} − α_j v_j
            if j:
                w.sub_(basis[1 - row], alpha=float(beta[j - 1]))
            alpha[j] = dot64(w, basis[row])
            w.sub_(basis[row], alpha=float(alpha[j]))
        if j + 1 == n_steps:
            break
        b = dot64(w, w) ** 0.5
        if b <= 1e-12 * max(abs(alpha[: j + 1]).max(), 1e-300):  # invariant subspace: the quadrature is exact
            steps = j + 1
            break
        beta[j] = b
        basis[j + 1 if reorthogonalize else 1 - row] = w.div_(b)
        del w
    t = np.diag(alpha[:steps]) + np.diag(beta[: steps - 1], 1) + np.diag(beta[: steps - 1], -1)
    theta, s = np.linalg.eigh(t)
    nodes, weights = np.zeros(n_steps), np.zeros(n_steps)
    nodes[:steps], weights[:steps] = theta, s[0, :] ** 2
    if steps < n_steps:  # pad with zero-weight copies so arrays stay rectangular
        nodes[steps:] = theta[-1]
    return nodes, weights


def density(op: SymmetricOperator, *, n_steps: int = 100, n_vectors: int = 1, seed: int = 0,
            sigma_sq: float = 1e-5, n_bins: int = 10_000, reorthogonalize: bool = True,
            callback: Callable[[int], None] | None = None) -> DensityResult:
    """SLQ spectral density with ``n_vectors`` Gaussian start vectors and ``n_steps`` Lanczos steps each.

    The kernel variance is ``sigma_sq · max(1, λmax − λmin)`` (PyHessian's choice); the grid spans the nodes with
    a margin of 5σ on either side.
    """
    if n_steps < 1 or n_vectors < 1:
        raise LandscapeError(f"n_steps={n_steps} and n_vectors={n_vectors} must both be at least 1")
    n_steps = min(n_steps, int(op.size))
    wd = work_dtype(op.dtype)
    stored = n_steps if reorthogonalize else 2
    require_workspace(wd.itemsize * float(op.size) * (stored + 2), op.device,
                      what=f"a Lanczos basis of {stored:,} vectors of {op.size:,} values",
                      fix="use fewer Lanczos steps or reorthogonalize=False")
    require_memory(2 * 8.0 * n_vectors * n_steps, what=f"the quadrature of {n_vectors:,} vectors × {n_steps:,} steps",
                   fix="use fewer start vectors")
    t0 = time.perf_counter()
    apply = CountingMatvec(op, callback, expected=n_steps * n_vectors, what="the spectral density")

    gen = torch.Generator().manual_seed(int(seed))
    nodes, weights = np.zeros((n_vectors, n_steps)), np.zeros((n_vectors, n_steps))
    for i in range(n_vectors):
        v = torch.randn(op.size, generator=gen, dtype=torch.float64)
        nodes[i], weights[i] = _tridiagonal(op, (v / v.norm()).to(op.device, wd), n_steps, apply,
                                            reorthogonalize=reorthogonalize)
    weights /= n_vectors
    lo, hi = float(nodes.min()), float(nodes.max())
    sigma = float(np.sqrt(sigma_sq * max(1.0, hi - lo)))
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, n_bins)
    values = np.zeros(n_bins)
    for node, weight in zip(nodes.ravel(), weights.ravel()):
        if weight > 0:
            values += weight * np.exp(-((grid - node) ** 2) / (2 * sigma**2))
    values /= np.sqrt(2 * np.pi) * sigma
    # np.trapz is NumPy < 2.0's name; the stubs of NumPy 2 lack it
    trapezoid = np.trapezoid if hasattr(np, "trapezoid") else np.trapz  # type: ignore[attr-defined]
    area = trapezoid(values, grid)
    values /= area  # remove the tiny truncation and discretisation error so it integrates to 1 exactly
    return DensityResult(grid=grid, density=values, nodes=nodes, weights=weights, sigma=sigma, n_matvec=apply.count,
                         seconds=time.perf_counter() - t0, seed=seed)
