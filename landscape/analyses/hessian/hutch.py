"""Stochastic trace estimates of a symmetric operator: Hutchinson and Hutch++ (Meyer, Musco, Musco, Woodruff 2021).

Both use Rademacher probes drawn on a private CPU generator; samples are accumulated in float64.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from landscape.analyses.hessian.operator import CountingMatvec, SymmetricOperator, require_workspace
from landscape.errors import LandscapeError

TraceMethod = Literal["hutch++", "hutchinson", "exact"]


@dataclass(frozen=True)
class TraceResult:
    """A trace estimate with its standard error (0 for the exact parts) and the probe samples."""

    estimate: float
    stderr: float
    n_matvec: int
    method: str
    seconds: float
    seed: int
    samples: np.ndarray  # the Hutchinson samples zᵀAz (of the deflated operator for Hutch++)
    sketch_trace: float = 0.0  # Hutch++: the exact trace on the sketched subspace


def rademacher(size: int, count: int, *, generator: torch.Generator, device: torch.device) -> Iterator[torch.Tensor]:
    """``count`` Rademacher vectors of length ``size`` (float64), drawn in chunks of rows.

    The generator yields the same rows as one ``(count, size)`` draw would, without holding them all at once.
    """
    rows = max(1, (1 << 24) // max(size, 1))  # ~16 MiB of int8 per chunk
    for start in range(0, count, rows):
        bits = torch.randint(0, 2, (min(rows, count - start), size), generator=generator, dtype=torch.int8)
        yield from (bits.to(torch.float64) * 2 - 1).to(device)


def _stats(samples: np.ndarray) -> tuple[float, float]:
    if samples.size == 0:
        return 0.0, 0.0
    stderr = float(samples.std(ddof=1) / np.sqrt(samples.size)) if samples.size > 1 else float("inf")
    return float(samples.mean()), stderr


def trace(op: SymmetricOperator, *, n_probes: int = 100, method: TraceMethod = "hutch++", seed: int = 0,
          callback: Callable[[int], None] | None = None) -> TraceResult:
    """Estimate ``tr(A)`` with ``n_probes`` matvecs.

    ``hutch++`` spends a third of the budget on a sketch ``Q`` of the top subspace, a third on ``tr(QᵀAQ)`` exactly,
    and the rest on Hutchinson for ``(I − QQᵀ) A (I − QQᵀ)``; its stderr is that of the last part. ``exact`` uses
    ``size`` matvecs with the unit vectors (``n_probes`` ignored).
    """
    t0 = time.perf_counter()
    n = int(op.size)
    if method not in ("hutch++", "hutchinson", "exact"):
        raise LandscapeError(f"trace method {method!r} is not one of hutch++, hutchinson, exact")
    expected = n if method == "exact" else n_probes
    apply = CountingMatvec(op, callback, expected=expected, what=f"the {method} trace")

    if method == "exact":
        eye = torch.zeros(n, dtype=torch.float64, device=op.device)
        total = 0.0
        for i in range(n):
            eye.zero_()
            eye[i] = 1.0
            total += float(apply(eye)[i])
        return TraceResult(total, 0.0, apply.count, method, time.perf_counter() - t0, seed, np.zeros(0))
    # Hutch++ needs ≥ 2 residual probes after its 2·⌊m/3⌋-matvec sketch for a finite stderr: m ≥ 4.
    minimum = 4 if method == "hutch++" else 2
    if n_probes < minimum:
        raise LandscapeError(f"n_probes={n_probes} is too few for {method}; use at least {minimum}")
    gen = torch.Generator().manual_seed(int(seed))
    if method == "hutchinson":
        samples = np.array([float(z @ apply(z)) for z in rademacher(n, n_probes, generator=gen, device=op.device)])
        est, err = _stats(samples)
        return TraceResult(est, err, apply.count, method, time.perf_counter() - t0, seed, samples)

    n_sketch = min(n_probes // 3, n)
    n_rest = n_probes - 2 * n_sketch
    # The sketch A·S, its QR factor and LAPACK's workspace: about three float64 (size, n_sketch) matrices.
    require_workspace(3 * 8.0 * n * n_sketch, op.device, what=f"the Hutch++ sketch of {n_sketch:,} vectors of "
                      f"{n:,} values", fix="use fewer probes or method='hutchinson'")
    sketch = torch.stack([apply(s) for s in rademacher(n, n_sketch, generator=gen, device=op.device)], dim=1)
    q, _ = torch.linalg.qr(sketch)  # (n, n_sketch) orthonormal basis of A·S
    sketch_trace = float(sum(float(q[:, i] @ apply(q[:, i].contiguous())) for i in range(q.shape[1])))
    samples_list = []
    for g in rademacher(n, n_rest, generator=gen, device=op.device):
        g = g - q @ (q.T @ g)
        ag = apply(g)
        samples_list.append(float(g @ (ag - q @ (q.T @ ag))))
    samples = np.array(samples_list)
    est, err = _stats(samples)
    if n_sketch == n:  # the sketch spans everything: the trace is exact
        est, err = 0.0, 0.0
    return TraceResult(sketch_trace + est, err, apply.count, method, time.perf_counter() - t0, seed, samples,
                       sketch_trace=sketch_trace)
