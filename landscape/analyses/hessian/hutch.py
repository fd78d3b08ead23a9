"""Stochastic trace estimates of a symmetric operator: Hutchinson and Hutch++ (Meyer, Musco, Musco, Woodruff 2021).

Both use Rademacher probes drawn on a private CPU generator and streamed one at a time: Hutchinson holds two
vectors, Hutch++ its sketch (``n_probes // 3`` vectors, orthonormalised as they arrive) and three more. Vectors are in
the operator's work dtype (float32 for a float32 model); samples and dot products are accumulated in float64.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from landscape.analyses.hessian._vectors import coefficients64, dot64, orthogonalise
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


def rademacher(size: int, count: int, *, generator: torch.Generator, device: torch.device,
               dtype: torch.dtype = torch.float64) -> Iterator[torch.Tensor]:
    """``count`` Rademacher vectors of length ``size`` (``dtype``), drawn in chunks of rows.

    The generator yields the same rows as one ``(count, size)`` draw would, without holding them all at once: at
    most 16 MiB of int8 bits, and one vector of ``dtype`` at a time.
    """
    rows = max(1, (1 << 24) // max(size, 1))  # ~16 MiB of int8 per chunk
    for start in range(0, count, rows):
        bits = torch.randint(0, 2, (min(rows, count - start), size), generator=generator, dtype=torch.int8)
        for row in bits:
            yield row.to(device=device, dtype=dtype).mul_(2).sub_(1)


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

    wd = apply.dtype
    if method == "exact":
        eye = torch.zeros(n, dtype=wd, device=op.device)
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
        samples = np.array([dot64(z, apply(z)) for z in rademacher(n, n_probes, generator=gen, device=op.device,
                                                                    dtype=wd)])
        est, err = _stats(samples)
        return TraceResult(est, err, apply.count, method, time.perf_counter() - t0, seed, samples)

    n_sketch = min(n_probes // 3, n)
    n_rest = n_probes - 2 * n_sketch
    # The sketch's orthonormal rows, a probe, its product and the projection's temporary.
    require_workspace(wd.itemsize * float(n) * (n_sketch + 4), op.device,
                      what=f"the Hutch++ sketch of {n_sketch:,} vectors of {n:,} values",
                      fix="use fewer probes or method='hutchinson'")
    # Q: an orthonormal basis of A·S, built row by row as the products arrive (two-pass Gram-Schmidt), so the
    # sketch never exists beside its QR factor. A product already in the span (A of low rank, or two equal probes)
    # is replaced by a random direction, as a Householder QR would complete the basis: Q keeps n_sketch rows.
    q = torch.empty(n_sketch, n, dtype=wd, device=op.device)
    spare = torch.Generator().manual_seed(int(seed) + 7919)  # not ``gen``: the residual probes stay as drawn
    floor = 1e3 * float(torch.finfo(wd).eps)
    for i, s in enumerate(rademacher(n, n_sketch, generator=gen, device=op.device, dtype=wd)):
        y = apply(s)
        for _ in range(3):
            before = dot64(y, y) ** 0.5
            orthogonalise(y, q[:i])
            after = dot64(y, y) ** 0.5
            if after > floor * before:
                break
            y = torch.randn(n, generator=spare, dtype=torch.float64).to(device=op.device, dtype=wd)
        q[i] = y.div_(after)
        del y
    sketch_trace = float(sum(dot64(q[i], apply(q[i])) for i in range(n_sketch)))
    samples_list = []
    for g in rademacher(n, n_rest, generator=gen, device=op.device, dtype=wd):
        orthogonalise(g, q)  # g ← (I − QQᵀ) g
        ag = apply(g)
        # gᵀ (I − QQᵀ) A (I − QQᵀ) g, with g already projected: gᵀAg − (Qg)·(QAg)
        samples_list.append(dot64(g, ag) - float(coefficients64(q, g) @ coefficients64(q, ag)))
        del ag
    samples = np.array(samples_list)
    est, err = _stats(samples)
    if n_sketch == n:  # the sketch spans everything: the trace is exact
        est, err = 0.0, 0.0
    return TraceResult(sketch_trace + est, err, apply.count, method, time.perf_counter() - t0, seed, samples,
                       sketch_trace=sketch_trace)
