"""SLQ spectral density: normalisation, moments, cluster masses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.analyses.hessian import DenseOperator
from landscape.analyses.hessian.slq import density


def _rotated(eigs: np.ndarray, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.as_tensor(eigs, dtype=torch.float64)) @ q.T


def test_integrates_to_one_and_first_moment_matches_trace() -> None:
    eigs = np.linspace(-1, 4, 150)
    a = _rotated(eigs)
    res = density(DenseOperator(a), n_steps=30, n_vectors=8, seed=0)
    assert np.trapezoid(res.density, res.grid) == pytest.approx(1.0, abs=1e-9)
    assert res.weights.sum() == pytest.approx(1.0, abs=1e-12)
    # Exact identity: for each start vector v, Σ wᵢ θᵢ = vᵀAv; its mean estimates tr(A)/n.
    g = torch.Generator().manual_seed(0)
    quads = []
    for _ in range(8):
        v = torch.randn(150, generator=g, dtype=torch.float64)
        v /= v.norm()
        quads.append(float(v @ a @ v))
    per_vector = (res.nodes * res.weights).sum(axis=1) * 8
    np.testing.assert_allclose(per_vector, quads, rtol=1e-10)
    se = np.std(quads, ddof=1) / np.sqrt(8)
    assert abs((res.nodes * res.weights).sum() - eigs.mean()) < 4 * se


def test_two_clusters_get_their_mass() -> None:
    eigs = np.concatenate([np.full(40, 1.0), np.full(160, 10.0)])
    res = density(DenseOperator(_rotated(eigs, 2)), n_steps=20, n_vectors=20, seed=1)
    mass_low = res.weights[res.nodes < 5].sum()
    assert mass_low == pytest.approx(0.2, abs=0.06)
    grid_mass = np.trapezoid(np.where(res.grid < 5, res.density, 0), res.grid)
    assert grid_mass == pytest.approx(mass_low, abs=1e-6)


def test_seeded() -> None:
    a = DenseOperator(_rotated(np.linspace(0, 1, 50)))
    r1, r2 = density(a, n_steps=10, seed=4), density(a, n_steps=10, seed=4)
    np.testing.assert_array_equal(r1.nodes, r2.nodes)


def test_nonfinite_matvec_is_one_line_error() -> None:
    from landscape.errors import LandscapeError

    a = torch.eye(8, dtype=torch.float64)
    a[0, 0] = float("inf")
    with pytest.raises(LandscapeError, match="Hessian-vector product returned NaN/inf"):
        density(DenseOperator(a), n_steps=4)
