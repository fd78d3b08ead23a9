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


@pytest.mark.parametrize("reorthogonalize", [True, False])
def test_both_reorthogonalisation_choices_pass_the_checks(reorthogonalize: bool) -> None:
    """The moment identity and the cluster masses above, for each choice (the docs quote this test)."""
    eigs = np.linspace(-1, 4, 150)
    a = _rotated(eigs)
    res = density(DenseOperator(a), n_steps=30, n_vectors=8, seed=0, reorthogonalize=reorthogonalize)
    g = torch.Generator().manual_seed(0)
    quads = []
    for _ in range(8):
        v = torch.randn(150, generator=g, dtype=torch.float64)
        v /= v.norm()
        quads.append(float(v @ a @ v))
    np.testing.assert_allclose((res.nodes * res.weights).sum(axis=1) * 8, quads, rtol=1e-10)
    two = np.concatenate([np.full(40, 1.0), np.full(160, 10.0)])
    res = density(DenseOperator(_rotated(two, 2)), n_steps=20, n_vectors=20, seed=1, reorthogonalize=reorthogonalize)
    assert res.weights[res.nodes < 5].sum() == pytest.approx(0.2, abs=0.06)


def test_without_reorthogonalisation_the_quadrature_keeps_its_moments() -> None:
    """Outliers converge early, so without re-orthogonalisation ghost copies appear; they share the outlier's
    weight, and the quadrature's low moments (hence the smoothed density) match the re-orthogonalised run."""
    eigs = np.concatenate([np.linspace(0, 1, 400), [20.0, 35.0, 50.0]])
    op = DenseOperator(_rotated(eigs, 3))
    full = density(op, n_steps=80, n_vectors=2, seed=0)
    bare = density(op, n_steps=80, n_vectors=2, seed=0, reorthogonalize=False)
    for p in range(1, 6):
        m_full, m_bare = (full.nodes**p * full.weights).sum(), (bare.nodes**p * bare.weights).sum()
        assert m_bare == pytest.approx(m_full, rel=1e-8), p
    near = [(r.weights[np.abs(r.nodes - 50) < 1e-6].sum(), int((np.abs(r.nodes - 50) < 1e-6).sum()))
            for r in (full, bare)]
    assert near[0][0] == pytest.approx(near[1][0], rel=1e-8)
    assert near[0][1] == 2  # one node per start vector with re-orthogonalisation
