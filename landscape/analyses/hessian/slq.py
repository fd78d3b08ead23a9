"""Spectral density of a symmetric operator by stochastic Lanczos quadrature (SLQ).

For each random unit start vector ``v``, ``n_steps`` Lanczos steps with full re-orthogonalisation give a
tridiagonal ``T``; its eigenvalues are quadrature nodes and the squared first components of its eigenvectors
the weights, so that ``Σ wᵢ f(θᵢ) ≈ vᵀ f(A) v``. Weights are averaged over vectors (they sum to 1) and smoothed
with a Gaussian kernel onto a grid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from landscape.analyses.hessian.krylov import _orthogonalise
from landscape.analyses.hessian.operator import CountingMatvec, SymmetricOperator, require_workspace
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
                 apply: Callable[[torch.Tensor], torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    basis = torch.zeros(n_steps, op.size, dtype=torch.float64, device=op.device)
    basis[0] = v
    alpha, beta = np.zeros(n_steps), np.zeros(max(n_steps - 1, 0))
    steps = n_steps
    for j in range(n_steps):
        w = apply(basis[j])
        h = _orthogonalise(w, basis[: j + 1])
        alpha[j] = float(h[j])
        if j + 1 == n_steps:
            break
        b = float(w.norm())
        if b <= 1e-12 * max(abs(alpha[: j + 1]).max(), 1e-300):  # invariant subspace: the quadrature is exact
            steps = j + 1
            break
        beta[j] = b
        basis[j + 1] = w / b
    t = np.diag(alpha[:steps]) + np.diag(beta[: steps - 1], 1) + np.diag(beta[: steps - 1], -1)
    theta, s = np.linalg.eigh(t)
    nodes, weights = np.zeros(n_steps), np.zeros(n_steps)
    nodes[:steps], weights[:steps] = theta, s[0, :] ** 2
    if steps < n_steps:  # pad with zero-weight copies so arrays stay rectangular
        nodes[steps:] = theta[-1]
    return nodes, weights


def density(op: SymmetricOperator, *, n_steps: int = 100, n_vectors: int = 1, seed: int = 0,
            sigma_sq: float = 1e-5, n_bins: int = 10_000, callback: Callable[[int], None] | None = None
            ) -> DensityResult:
    """SLQ spectral density with ``n_vectors`` Gaussian start vectors and ``n_steps`` Lanczos steps each.

    The kernel variance is ``sigma_sq · max(1, λmax − λmin)`` (PyHessian's choice); the grid spans the nodes with
    a margin of 5σ on either side.
    """
    if n_steps < 1 or n_vectors < 1:
        raise LandscapeError(f"n_steps={n_steps} and n_vectors={n_vectors} must both be at least 1")
    n_steps = min(n_steps, int(op.size))
    require_workspace(8.0 * n_steps * op.size, op.device,
                      what=f"a Lanczos basis of {n_steps:,} vectors of {op.size:,} values",
                      fix="use fewer Lanczos steps")
    require_memory(2 * 8.0 * n_vectors * n_steps, what=f"the quadrature of {n_vectors:,} vectors × {n_steps:,} steps",
                   fix="use fewer start vectors")
    t0 = time.perf_counter()
    apply = CountingMatvec(op, callback, expected=n_steps * n_vectors, what="the spectral density")

    gen = torch.Generator().manual_seed(int(seed))
    nodes, weights = np.zeros((n_vectors, n_steps)), np.zeros((n_vectors, n_steps))
    for i in range(n_vectors):
        v = torch.randn(op.size, generator=gen, dtype=torch.float64)
        nodes[i], weights[i] = _tridiagonal(op, (v / v.norm()).to(op.device), n_steps, apply)
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
