"""Extreme eigenpairs of a symmetric operator: thick-restart Lanczos with full re-orthogonalisation.

Single-vector Krylov (block Lanczos would batch HVPs, but batching 8 vectors saved nothing per HVP in our
measurements); the Krylov basis in the operator's work dtype (float32 for a float32 model: ``ncv + 1`` vectors, the
thick restart done in place) and the small projected matrix in float64, with float64-accumulated coefficients; two
passes of classical Gram-Schmidt against the whole basis at every step (no ghost eigenvalues); Ritz values checked after every step so the run stops at the
first matvec where all ``k`` wanted pairs meet ``‖Av − θv‖ ≤ tol·|θ|``; when the basis is full it restarts thick,
keeping the best Ritz vectors (Wu & Simon 2000).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from landscape.analyses.hessian._vectors import combine_rows_, dot64
from landscape.analyses.hessian._vectors import orthogonalise as _orthogonalise
from landscape.analyses.hessian.operator import (
    CountingMatvec,
    SymmetricOperator,
    require_workspace,
    work_dtype,
)
from landscape.errors import LandscapeError

Which = Literal["LA", "SA", "LM"]
_EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class EigenResult:
    """Eigenpairs ordered from the ``which`` end, with the Lanczos residual norms ``‖Av − λv‖``."""

    eigenvalues: np.ndarray
    residuals: np.ndarray
    converged: np.ndarray
    n_matvec: int
    n_restarts: int
    seconds: float
    seed: int
    which: str
    tol: float
    eigenvectors: torch.Tensor | None = None  # (k, size) in the operator's work dtype, unit norm, when asked for


def _order(theta: np.ndarray, which: str) -> np.ndarray:
    if which == "LA":
        return np.argsort(-theta, kind="stable")
    if which == "SA":
        return np.argsort(theta, kind="stable")
    return np.argsort(-np.abs(theta), kind="stable")


def random_unit(size: int, *, seed: int, device: torch.device) -> torch.Tensor:
    """A seeded Gaussian unit vector (drawn on CPU so every device sees the same one)."""
    g = torch.Generator().manual_seed(int(seed))
    v = torch.randn(size, generator=g, dtype=torch.float64)
    return (v / v.norm()).to(device)


def lanczos(op: SymmetricOperator, *, k: int = 1, which: Which = "LA", tol: float = 1e-3,
            max_matvec: int | None = None, ncv: int | None = None, seed: int = 0,
            v0: torch.Tensor | None = None, return_eigenvectors: bool = False,
            callback: Callable[[int], None] | None = None) -> EigenResult:
    """The ``k`` eigenpairs of ``op`` at the ``which`` end ("LA" largest, "SA" smallest, "LM" largest |λ|).

    Stops when every wanted pair has ``‖Av − θv‖ ≤ tol · |θ|`` or after ``max_matvec`` matvecs (then
    ``converged`` says which did not make it). ``ncv`` is the largest basis size (default ``max(2k + 1, 20)``).
    """
    n = int(op.size)
    if which not in ("LA", "SA", "LM"):
        raise LandscapeError(f"which={which!r} is not one of LA, SA, LM")
    if not 1 <= k <= n:
        raise LandscapeError(f"k={k} must be between 1 and the operator size {n}")
    if tol <= 0:
        raise LandscapeError(f"tol={tol} must be positive, e.g. 1e-3")
    m = min(n, ncv if ncv is not None else max(2 * k + 1, 20))
    if m < min(n, k + 2) and m < n:
        raise LandscapeError(f"ncv={ncv} must be at least k + 2 = {k + 2}")
    max_matvec = max_matvec if max_matvec is not None else max(20 * m, 300)
    if max_matvec < 1:
        raise LandscapeError(f"max_matvec={max_matvec} must be at least 1")
    device = op.device
    wd = work_dtype(op.dtype)
    # The basis (restarted in place) and two work vectors: the product and the Gram-Schmidt temporary.
    require_workspace(wd.itemsize * float(n) * (m + 3), device,
                      what=f"a Lanczos basis of {m + 1} vectors of {n:,} values",
                      fix="ask for fewer eigenvalues (k) or a smaller ncv")
    apply = CountingMatvec(op, callback)
    t0 = time.perf_counter()
    basis = torch.zeros(m + 1, n, dtype=wd, device=device)
    start_vector = random_unit(n, seed=seed, device=device) if v0 is None else v0.to(device, torch.float64)
    basis[0] = (start_vector / start_vector.norm()).to(wd)
    del start_vector
    proj = np.zeros((m + 1, m), dtype=np.float64)  # A V_m = V_{m+1} proj  (upper Hessenberg, ~ symmetric)
    start, n_matvec, n_restarts, extra_seed = 0, 0, 0, 1
    theta = s = beta = None
    while True:
        for j in range(start, m):
            w = apply(basis[j])
            n_matvec = apply.count
            h = _orthogonalise(w, basis[: j + 1])
            beta = dot64(w, w) ** 0.5
            proj[: j + 1, j] = h.cpu().numpy()
            proj[j + 1, j] = beta
            scale = float(np.abs(proj[: j + 2, : j + 1]).max()) or 1.0
            if beta <= 1e3 * _EPS * scale:
                # Invariant subspace found: continue from a fresh random direction (residual stays exact).
                proj[j + 1, j] = beta = 0.0
                if j + 1 < n:
                    r = random_unit(n, seed=seed + 7919 * extra_seed, device=device).to(wd)
                    extra_seed += 1
                    _orthogonalise(r, basis[: j + 1])
                    basis[j + 1] = r.div_(dot64(r, r) ** 0.5)
                    del r
            else:
                basis[j + 1] = w.div_(beta)
            del w
            size = j + 1
            if size < min(k, n):
                continue
            t = proj[:size, :size]
            theta, s = np.linalg.eigh((t + t.T) / 2)
            res = np.abs(proj[size, size - 1] * s[size - 1, :])
            want = _order(theta, which)[:k]
            floor = max(np.abs(theta).max(), 1e-300) * _EPS ** (2 / 3)
            conv = res[want] <= tol * np.maximum(np.abs(theta[want]), floor)
            if conv.all() or n_matvec >= max_matvec or size == n:
                return _finish(basis[:size], theta, s, res, want, conv, which, tol, seed, n_matvec, n_restarts,
                               t0, return_eigenvectors)
        # Thick restart: keep the best Ritz vectors and the residual direction.
        assert theta is not None and s is not None, "the inner loop reaches size >= k before a restart"
        n_restarts += 1
        keep = min(m - 1, max(k + (m - k) // 2, k + 1))
        idx = _order(theta, which)[:keep]
        # In place: rows [:keep] become the Ritz vectors, a column block at a time (no second basis).
        combine_rows_(basis, torch.from_numpy(np.ascontiguousarray(s[:, idx].T)).to(device))
        coupling = proj[m, m - 1] * s[m - 1, idx]
        basis[keep] = basis[m]
        basis[keep + 1:].zero_()
        proj[:] = 0.0
        proj[np.arange(keep), np.arange(keep)] = theta[idx]
        proj[keep, :keep] = coupling
        start = keep


def _finish(basis: torch.Tensor, theta: np.ndarray, s: np.ndarray, res: np.ndarray, want: np.ndarray,
            conv: np.ndarray, which: str, tol: float, seed: int, n_matvec: int, n_restarts: int, t0: float,
            return_eigenvectors: bool) -> EigenResult:
    vecs = None
    if return_eigenvectors:
        # The basis is no longer needed: its first rows become the eigenvectors (no (k, size) matrix beside it).
        combine_rows_(basis, torch.from_numpy(np.ascontiguousarray(s[:, want].T)).to(basis.device))
        vecs = basis[: len(want)].clone()
        for v in vecs:
            v.div_(dot64(v, v) ** 0.5)
    return EigenResult(eigenvalues=theta[want].copy(), residuals=res[want].copy(), converged=conv.copy(),
                       n_matvec=n_matvec, n_restarts=n_restarts, seconds=time.perf_counter() - t0, seed=seed,
                       which=which, tol=tol, eigenvectors=vecs)
