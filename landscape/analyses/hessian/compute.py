"""Model-level entry points: eigenvalues, trace and spectral density of the loss Hessian."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from landscape.analyses.hessian.hutch import TraceMethod
from landscape.analyses.hessian.hutch import trace as _trace_op
from landscape.analyses.hessian.krylov import Which, lanczos
from landscape.analyses.hessian.operator import Batch, HessianOperator, Hvp, LossFn
from landscape.analyses.hessian.slq import density as _slq

Params = str | Sequence[str] | None


@dataclass(frozen=True)
class HessianEigenResult:
    """Top (or bottom) Hessian eigenvalues, ordered from the ``which`` end, with residuals ``‖Hv − λv‖``."""

    eigenvalues: np.ndarray
    residuals: np.ndarray
    converged: np.ndarray
    n_hvp: int
    seconds: float
    seed: int
    which: str
    tol: float
    loss: float
    n_samples: int
    eigenvectors: tuple[dict[str, np.ndarray], ...] | None = None  # unit norm over the chosen parameters


@dataclass(frozen=True)
class HessianTraceResult:
    """``tr(H)`` estimate with its standard error."""

    estimate: float
    stderr: float
    n_hvp: int
    method: str
    seconds: float
    seed: int
    samples: np.ndarray
    dimension: int


@dataclass(frozen=True)
class HessianDensityResult:
    """Spectral density of H (``density`` integrates to 1 over ``grid``) and its raw SLQ nodes and weights."""

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float
    n_hvp: int
    seconds: float
    seed: int


@contextlib.contextmanager
def _progress(desc: str, total: int | None, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="hvp", disable=None, leave=False)
    try:
        yield lambda count: bar.update(count - bar.n)
    finally:
        bar.close()


def eigenvalues(model: nn.Module, data: Batch | Iterable[Batch], *, k: int = 1,
                which: Which = "LA", tol: float = 1e-3, max_iter: int | None = None,
                ncv: int | None = None, loss_fn: LossFn | None = None, params: Params = None,
                train_mode: bool = False, seed: int = 0, return_eigenvectors: bool = False,
                progress: bool = False, hvp: Hvp = "reverse") -> HessianEigenResult:
    """The ``k`` extreme eigenvalues of the loss Hessian (Lanczos, stopping at ``‖Hv − λv‖ ≤ tol·|λ|``).

    ``max_iter`` caps the number of HVPs; ``ncv`` is the Krylov basis size before a thick restart. ``hvp`` picks the
    Hessian-vector product (see :class:`~landscape.analyses.hessian.operator.HessianOperator`).
    """
    t0 = time.perf_counter()
    with HessianOperator(model, data, loss_fn=loss_fn, params=params, train_mode=train_mode, seed=seed,
                         hvp=hvp) as op, \
            _progress("Hessian eigenvalues", None, progress) as cb:
        res = lanczos(op, k=k, which=which, tol=tol, max_matvec=max_iter, ncv=ncv, seed=seed,
                               return_eigenvectors=return_eigenvectors, callback=cb)
        vecs = None
        if res.eigenvectors is not None:
            vecs = tuple({n: t.numpy() for n, t in op.parameter_dict(v).items()} for v in res.eigenvectors)
        return HessianEigenResult(eigenvalues=res.eigenvalues, residuals=res.residuals, converged=res.converged,
                                  n_hvp=op.n_hvp, seconds=time.perf_counter() - t0, seed=seed, which=which,
                                  tol=tol, loss=op.loss, n_samples=op.n_samples, eigenvectors=vecs)


def trace(model: nn.Module, data: Batch | Iterable[Batch], *, n_probes: int = 100,
          method: TraceMethod = "hutch++", loss_fn: LossFn | None = None,
          params: Params = None, train_mode: bool = False, seed: int = 0,
          progress: bool = False, hvp: Hvp = "reverse") -> HessianTraceResult:
    """``tr(H)`` by Hutch++ (default) or Hutchinson with ``n_probes`` HVPs, with a standard error."""
    t0 = time.perf_counter()
    with HessianOperator(model, data, loss_fn=loss_fn, params=params, train_mode=train_mode, seed=seed,
                         hvp=hvp) as op, \
            _progress("Hessian trace", op.size if method == "exact" else n_probes, progress) as cb:
        res = _trace_op(op, n_probes=n_probes, method=method, seed=seed, callback=cb)
        return HessianTraceResult(estimate=res.estimate, stderr=res.stderr, n_hvp=op.n_hvp,
                                  method=method, seconds=time.perf_counter() - t0, seed=seed,
                                  samples=res.samples, dimension=op.size)


def density(model: nn.Module, data: Batch | Iterable[Batch], *, n_steps: int = 100, n_vectors: int = 1,
            sigma_sq: float = 1e-5, n_bins: int = 10_000, loss_fn: LossFn | None = None, params: Params = None,
            train_mode: bool = False, seed: int = 0, progress: bool = False, reorthogonalize: bool = True,
            hvp: Hvp = "reverse") -> HessianDensityResult:
    """Spectral density of the loss Hessian by stochastic Lanczos quadrature.

    ``reorthogonalize=False`` keeps three vectors instead of an ``n_steps``-vector basis (see
    :mod:`landscape.analyses.hessian.slq` for what that changes)."""
    t0 = time.perf_counter()
    with HessianOperator(model, data, loss_fn=loss_fn, params=params, train_mode=train_mode, seed=seed,
                         hvp=hvp) as op, \
            _progress("Hessian density", n_steps * n_vectors, progress) as cb:
        res = _slq(op, n_steps=n_steps, n_vectors=n_vectors, seed=seed, sigma_sq=sigma_sq,
                   n_bins=n_bins, reorthogonalize=reorthogonalize, callback=cb)
        return HessianDensityResult(grid=res.grid, density=res.density, nodes=res.nodes, weights=res.weights,
                                    sigma=res.sigma, n_hvp=op.n_hvp, seconds=time.perf_counter() - t0,
                                    seed=seed)
