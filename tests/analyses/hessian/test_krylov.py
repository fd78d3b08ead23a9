"""Lanczos on dense operators with known spectra."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.analyses.hessian import DenseOperator, lanczos
from landscape.errors import LandscapeError


def _rotated(eigs: np.ndarray, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.as_tensor(eigs, dtype=torch.float64)) @ q.T


EIGS = np.concatenate([np.linspace(-3, -1, 5), np.linspace(0, 0.1, 185), np.linspace(2, 20, 10)])


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
@pytest.mark.parametrize("ncv", [None, 12])  # 12 forces several thick restarts
def test_extreme_eigenpairs_of_known_spectrum(which: str, ncv: int | None) -> None:
    a = _rotated(EIGS)
    res = lanczos(DenseOperator(a), k=5, which=which, tol=1e-10, ncv=ncv, return_eigenvectors=True)
    order = {"LA": np.argsort(-EIGS), "SA": np.argsort(EIGS), "LM": np.argsort(-np.abs(EIGS))}[which]
    np.testing.assert_allclose(res.eigenvalues, EIGS[order][:5], rtol=1e-9, atol=1e-12)
    assert res.converged.all()
    vecs = res.eigenvectors
    true_res = (a @ vecs.T - vecs.T * torch.as_tensor(res.eigenvalues)).norm(dim=0).numpy()
    np.testing.assert_allclose(res.residuals, true_res, atol=1e-12)  # Lanczos residuals are the true ones
    torch.testing.assert_close(vecs @ vecs.T, torch.eye(5, dtype=torch.float64), atol=1e-10, rtol=0)


def test_no_ghost_eigenvalues_with_clusters() -> None:
    eigs = np.concatenate([np.full(3, 5.0), np.linspace(0, 1, 97)])  # a triple eigenvalue
    res = lanczos(DenseOperator(_rotated(eigs, 1)), k=4, tol=1e-10)
    np.testing.assert_allclose(res.eigenvalues, [5, 5, 5, 1], rtol=1e-9)


def test_small_operator_and_invariant_subspace() -> None:
    res = lanczos(DenseOperator(torch.eye(6, dtype=torch.float64) * 2), k=3)
    np.testing.assert_allclose(res.eigenvalues, [2, 2, 2])
    res = lanczos(DenseOperator(torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))), k=3)
    np.testing.assert_allclose(res.eigenvalues, [3, 2, 1])


def test_cap_reports_unconverged() -> None:
    res = lanczos(DenseOperator(_rotated(np.linspace(1, 2, 200))), k=3, tol=1e-12, max_matvec=8, ncv=6)
    assert res.n_matvec <= 8 + 6 and not res.converged.all()


def test_validation_messages() -> None:
    op = DenseOperator(torch.eye(4, dtype=torch.float64))
    with pytest.raises(LandscapeError, match="k=5"):
        lanczos(op, k=5)
    with pytest.raises(LandscapeError, match="which="):
        lanczos(op, which="XX")  # type: ignore[arg-type]


def test_seeded_and_float32_operator() -> None:
    a = _rotated(EIGS).float()
    r1 = lanczos(DenseOperator(a), k=2, seed=5)
    r2 = lanczos(DenseOperator(a), k=2, seed=5)
    np.testing.assert_array_equal(r1.eigenvalues, r2.eigenvalues)
    np.testing.assert_allclose(r1.eigenvalues, [20, 18], rtol=1e-5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_matvec_is_one_line_error(bad: float) -> None:
    a = torch.eye(6, dtype=torch.float64)
    a[2, 3] = a[3, 2] = bad  # instead of LAPACK failing on a NaN projected matrix several steps later
    with pytest.raises(LandscapeError, match="Hessian-vector product returned NaN/inf"):
        lanczos(DenseOperator(a), k=1)
