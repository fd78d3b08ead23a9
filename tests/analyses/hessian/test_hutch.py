"""Hutchinson and Hutch++ on matrices with known trace: unbiased, calibrated stderr, Hutch++ wins on decay."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.analyses.hessian import DenseOperator
from landscape.analyses.hessian.hutch import trace
from landscape.errors import LandscapeError


def _rotated(eigs: np.ndarray, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.as_tensor(eigs, dtype=torch.float64)) @ q.T


# A rotated diag(1/i): Rademacher probes have non-zero variance (on a diagonal they would have none).
EIGS = 1.0 / np.arange(1, 121)
A = _rotated(EIGS)


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_unbiased_within_standard_errors(method: str) -> None:
    ests = np.array([trace(DenseOperator(A), n_probes=30, method=method, seed=s).estimate for s in range(40)])
    mean, se = ests.mean(), ests.std(ddof=1) / np.sqrt(len(ests))
    assert abs(mean - EIGS.sum()) < 4 * se


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_stderr_is_calibrated(method: str) -> None:
    runs = [trace(DenseOperator(A), n_probes=30, method=method, seed=s) for s in range(40)]
    spread = np.std([r.estimate for r in runs], ddof=1)
    mean_se = np.mean([r.stderr for r in runs])
    assert 0.6 < mean_se / spread < 1.6


def test_hutchpp_beats_hutchinson_on_decaying_spectrum() -> None:
    err = {m: np.mean([abs(trace(DenseOperator(A), n_probes=45, method=m, seed=s).estimate - EIGS.sum())
                       for s in range(30)]) for m in ("hutchinson", "hutch++")}
    assert err["hutch++"] < 0.5 * err["hutchinson"]


def test_exact_and_matvec_count() -> None:
    op = DenseOperator(A)
    assert trace(op, method="exact").estimate == pytest.approx(EIGS.sum(), rel=1e-12)
    r = trace(op, n_probes=31, method="hutch++")
    assert r.n_matvec == 31 and op.n_matvec == 120 + 31


def test_hutchpp_exact_when_sketch_spans_space() -> None:
    small = _rotated(np.array([3.0, 1.0, 0.5]))
    r = trace(DenseOperator(small), n_probes=9, method="hutch++")
    assert r.estimate == pytest.approx(4.5, rel=1e-12) and r.stderr == 0


def test_validation() -> None:
    with pytest.raises(LandscapeError, match="n_probes=2"):
        trace(DenseOperator(A), n_probes=2, method="hutch++")
    with pytest.raises(LandscapeError, match="trace method"):
        trace(DenseOperator(A), method="nope")  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["hutchinson", "hutch++", "exact"])
def test_nonfinite_matvec_is_one_line_error(method: str) -> None:
    a = A.clone()
    a[5, 5] = float("nan")
    with pytest.raises(LandscapeError, match="Hessian-vector product returned NaN/inf"):
        trace(DenseOperator(a), n_probes=12, method=method)


def test_rademacher_chunks_are_the_rows_of_one_draw() -> None:
    from landscape.analyses.hessian.hutch import rademacher

    size = (1 << 23) + 1  # 2 rows per 16 MiB chunk: three chunks for 5 rows
    rows = torch.stack(list(rademacher(size, 5, generator=torch.Generator().manual_seed(3), device=torch.device("cpu"))))
    whole = torch.randint(0, 2, (5, size), generator=torch.Generator().manual_seed(3), dtype=torch.int8)
    assert torch.equal(rows, whole.to(torch.float64) * 2 - 1)
