import sys
import types

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from landscape.analyses.surface.directions import build_directions, normalize, project, random_directions
from landscape.core import params
from landscape.errors import LandscapeError


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3))


def _slice_norms(t):
    return t.reshape(t.shape[0], -1).norm(dim=1)


@pytest.mark.parametrize("dir_type", ["weights", "states"])
def test_filter_normalisation_invariants(dir_type):
    net = _net()
    w = params.get_tensors(net, dir_type=dir_type)
    (d,) = random_directions(w, count=1, seed=3)
    n = normalize(d, w, norm="filter", ignore="biasbn")
    assert list(n) == list(w)
    for k, t in n.items():
        if t.dim() <= 1:
            assert torch.count_nonzero(t) == 0, k
        else:
            torch.testing.assert_close(_slice_norms(t), _slice_norms(w[k]), rtol=1e-6, atol=0)
            # only the length of each slice changes, not its direction
            cos = (t * d[k]).reshape(t.shape[0], -1).sum(1) / (_slice_norms(t) * _slice_norms(d[k]))
            torch.testing.assert_close(cos, torch.ones_like(cos))
    kept = normalize(d, w, norm="filter", ignore="none")
    for k, t in kept.items():
        if t.dim() <= 1:
            assert torch.equal(t, w[k]), k  # the reference tool's choice: the direction equals the weight


def test_layer_weight_none_norms():
    w = params.get_tensors(_net())
    (d,) = random_directions(w, count=1, seed=1)
    lay = normalize(d, w, norm="layer")
    wt = normalize(d, w, norm="weight")
    none = normalize(d, w, norm="none")
    for k in w:
        if w[k].dim() > 1:
            torch.testing.assert_close(lay[k].norm(), w[k].norm())
            torch.testing.assert_close(wt[k], d[k] * w[k])
            assert torch.equal(none[k], d[k])
    with pytest.raises(LandscapeError, match="norm 'bogus'"):
        normalize(d, w, norm="bogus")


def test_random_is_seeded_and_private():
    w = params.get_tensors(_net())
    state = torch.random.get_rng_state()
    a = build_directions("random", w, ndim=2, seed=7)
    b = build_directions("random", w, ndim=2, seed=7)
    c = build_directions("random", w, ndim=2, seed=8)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a.x[k], b.x[k]) and torch.equal(a.y[k], b.y[k]) for k in w)
    assert not torch.equal(a.x["0.weight"], c.x["0.weight"])
    assert not torch.equal(a.x["0.weight"], a.y["0.weight"])


def test_target_lands_on_target():
    w = params.get_tensors(_net(), dir_type="states")
    other = {k: v + torch.randn(v.shape, generator=torch.Generator().manual_seed(0)) for k, v in w.items()}
    ds = build_directions("target", w, ndim=2, seed=0, target=other)
    for k in w:
        torch.testing.assert_close(w[k] + 1.0 * ds.x[k], other[k])
    assert ds.y is not None
    with pytest.raises(LandscapeError, match="direction='target' needs target="):
        build_directions("target", w, ndim=1)


def _plane_trajectory(w, u, v, coeffs):
    return [{k: w[k] + a * u[k] + b * v[k] for k in w} for a, b in coeffs]


def test_pca_recovers_plane_and_projects_path():
    net = nn.Sequential(nn.Linear(5, 4, bias=False), nn.Linear(4, 2, bias=False)).double()
    w = params.get_tensors(net)
    u, v = random_directions(w, count=2, seed=0)
    coeffs = [(-2.0, 1.0), (-1.5, 0.2), (-0.7, -0.4), (-0.2, 0.3), (0.0, 0.0)]
    traj = _plane_trajectory(w, u, v, coeffs)
    ds = build_directions("pca", w, ndim=2, norm="none", trajectory=traj)
    # with norm none the directions span the plane: the stored path reconstructs every checkpoint exactly
    for t, (a, b) in zip(traj, ds.path):
        for k in w:
            torch.testing.assert_close(w[k] + a * ds.x[k] + b * ds.y[k], t[k], rtol=0, atol=1e-12)
    assert ds.info["pca_path_relative_residual_max"] < 1e-8
    assert abs(sum(ds.info["pca_explained_variance_ratio"]) - 1) < 1e-12
    # the final checkpoint is the base: coordinates (0, 0); the start gets a negative x coordinate
    np.testing.assert_allclose(ds.path[-1], [0, 0], atol=1e-12)
    assert ds.path[0, 0] < 0
    filt = build_directions("pca", w, ndim=2, norm="filter", trajectory=traj)
    for k in w:
        torch.testing.assert_close(_slice_norms(filt.x[k]), _slice_norms(w[k]))
    with pytest.raises(LandscapeError, match="at least 3"):
        build_directions("pca", w, ndim=2, trajectory=traj[:2])


def test_project_non_orthogonal_basis():
    w = {"a": torch.zeros(3, dtype=torch.float64)}
    b1, b2 = {"a": torch.tensor([1.0, 0, 0]).double()}, {"a": torch.tensor([1.0, 1.0, 0]).double()}
    coords, resid = project([{"a": torch.tensor([3.0, 2.0, 0]).double()}], [b1, b2])
    np.testing.assert_allclose(coords[0], [1.0, 2.0])
    assert resid[0] < 1e-12 and w


@pytest.fixture
def eigen_file(tmp_path, monkeypatch):
    """A tiny eigenvector file in the Hessian store's layout (eigenvectors/<i>/<param name>)."""
    net = _net()
    w = params.get_tensors(net)
    rng = np.random.default_rng(0)
    vecs = [{k: rng.standard_normal(tuple(t.shape)).astype(np.float32) for k, t in w.items()} for _ in range(3)]
    path = tmp_path / "h.h5"
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = "landscape.hessian/1"
        for i, vec in enumerate(vecs):
            for k, a in vec.items():
                f[f"eigenvectors/{i}/{k}"] = a
    try:
        import landscape.analyses.hessian.schema  # noqa: F401
    except ModuleNotFoundError:
        def read_eigenvectors(p):
            with h5py.File(p, "r") as f:
                g = f["eigenvectors"]
                return [{k: g[str(i)][k][()] for k in g[str(i)]} for i in range(len(g))]

        fake = types.ModuleType("landscape.analyses.hessian.schema")
        fake.read_eigenvectors = read_eigenvectors
        monkeypatch.setitem(sys.modules, "landscape.analyses.hessian.schema", fake)
    return path, w, vecs


def test_eigen_directions(eigen_file):
    path, w, vecs = eigen_file
    for ignore in ("biasbn", "none"):  # unnormalised eigenvectors are used whole, biases included
        raw = build_directions("eigen", w, ndim=2, norm="none", ignore=ignore, eigen_path=str(path))
        for k in w:
            np.testing.assert_array_equal(raw.x[k].numpy(), vecs[0][k])
            np.testing.assert_array_equal(raw.y[k].numpy(), vecs[1][k])
    filt = build_directions("eigen", w, ndim=1, norm="filter", eigen_path=str(path))
    torch.testing.assert_close(_slice_norms(filt.x["0.weight"]), _slice_norms(w["0.weight"]))
    with pytest.raises(LandscapeError, match="holds 3"):
        from landscape.analyses.surface.directions import eigen_directions

        eigen_directions(path, w, indices=[5])


def _reference_pca(weights, trajectory, *, ignore):
    """loss-landscape's ``setup_PCA_directions`` recipe, rebuilt with numpy and scikit-learn: per checkpoint,
    ``w_i − w_final`` tensor by tensor (dim ≤ 1 zeroed for ignore=biasbn), flattened and concatenated; PCA(2)."""
    from sklearn.decomposition import PCA

    rows = []
    for t in trajectory:
        parts = []
        for k, w in weights.items():
            d = t[k].numpy() - w.numpy()
            if ignore == "biasbn" and d.ndim <= 1:
                d = np.zeros_like(d)
            parts.append(d.reshape(-1))
        rows.append(np.concatenate(parts))
    pca = PCA(n_components=2).fit(np.array(rows))
    return pca.components_, pca.explained_variance_ratio_


@pytest.mark.parametrize("ignore", ["biasbn", "none"])
@pytest.mark.parametrize("dir_type", ["weights", "states"])
def test_pca_matches_reference_recipe(ignore, dir_type):
    net = _net().double()
    w = params.get_tensors(net, dir_type=dir_type)
    gen = torch.Generator().manual_seed(5)
    # Biases and BN entries move far more than the weights, so leaving them in (or out) changes the answer.
    traj = [{k: v + torch.randn(v.shape, generator=gen, dtype=v.dtype) * (10.0 if v.dim() <= 1 else 0.1)
             for k, v in w.items()} for _ in range(5)] + [w]
    comps, ratio = _reference_pca(w, traj, ignore=ignore)
    ds = build_directions("pca", w, ndim=2, norm="none", ignore=ignore, trajectory=traj)
    np.testing.assert_allclose(ds.info["pca_explained_variance_ratio"], ratio, rtol=1e-9, atol=0)
    for ours, ref in zip((ds.x, ds.y), comps):
        flat = torch.cat([ours[k].reshape(-1) for k in w]).numpy()
        if ignore == "none":  # norm="none" with ignore="none" puts the weights in dim ≤ 1 tensors: compare the rest
            mask = np.concatenate([np.full(t.numel(), t.dim() > 1) for t in w.values()])
            flat, ref = flat[mask], ref[mask]
        sign = np.sign(flat @ ref)
        np.testing.assert_allclose(sign * flat, ref, rtol=0, atol=1e-9)
    if ignore == "biasbn":
        _, with_bias = _reference_pca(w, traj, ignore="none")
        assert abs(ratio[0] - with_bias[0]) > 1e-3  # the test can tell the two recipes apart


def _previous_pca(weights, trajectory, *, count, ignore):
    """The code the blocked Gram PCA replaced (every offset centred whole in float64), kept as the oracle."""
    offsets = [params.sub(t, weights) for t in trajectory]
    if ignore == "biasbn":
        offsets = [{k: torch.zeros_like(v) if v.dim() <= 1 else v for k, v in o.items()} for o in offsets]
    n = len(offsets)
    mean = {k: sum(o[k].double() for o in offsets) / n for k in weights}
    centred = [{k: o[k].double() - mean[k] for k in weights} for o in offsets]
    gram = np.array([[params.dot(a, b) for b in centred] for a in centred])
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0.0, None), evecs[:, order]
    dirs = []
    for c in range(count):
        d = {k: sum((float(evecs[i, c]) * centred[i][k] for i in range(n)), torch.zeros_like(centred[0][k]))
             for k in weights}
        scale = 1.0 / params.norm(d)
        if params.dot(d, offsets[0]) > 0:
            scale = -scale
        dirs.append({k: (v * scale).to(weights[k].device, weights[k].dtype) for k, v in d.items()})
    return dirs, evals[:count] / evals.sum()


@pytest.mark.parametrize("ignore", ["biasbn", "none"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_blocked_gram_pca_equals_the_previous_code(monkeypatch, ignore, dtype):
    """Blocks smaller than a tensor (so a tensor spans several blocks) and float32 checkpoints: the same directions
    and explained variance as centring every offset whole."""
    from landscape.analyses.surface import directions

    net = _net().to(dtype)
    w = params.get_tensors(net, dir_type="states")
    gen = torch.Generator().manual_seed(7)
    traj = [{k: v + torch.randn(v.shape, generator=gen, dtype=torch.float64).to(dtype) * (0.5 + i)
             for k, v in w.items()} for i in range(6)] + [w]
    for shift in (22, 5):  # 2^22 // 7 entries per block (whole tensors), then 2^5 // 7 = 4 entries per block
        monkeypatch.setattr(directions, "_BLOCK_SHIFT", shift)
        dirs, ratio = directions.pca_directions(w, traj, count=3, ignore=ignore)
        ref_dirs, ref_ratio = _previous_pca(w, traj, count=3, ignore=ignore)
        np.testing.assert_allclose(ratio, ref_ratio, rtol=1e-12, atol=0)
        for d, r in zip(dirs, ref_dirs):
            for k in w:
                assert d[k].dtype == dtype and d[k].shape == w[k].shape
                tol = 1e-12 if dtype == torch.float64 else 1e-7
                torch.testing.assert_close(d[k], r[k], rtol=0, atol=tol)
