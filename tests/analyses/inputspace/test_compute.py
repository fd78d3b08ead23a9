"""Input-space paths, smoothness statistics, Jacobian norms and noise robustness against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import log_softmax
from torch import nn

from landscape.analyses.inputspace.compute import (
    curve_stats,
    draw_pairs,
    jacobian_norms,
    noise_robustness,
    paths_around,
    paths_between,
)
from landscape.errors import LandscapeError

K, SHAPE = 4, (1, 3, 3)


def _linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(SHAPE)), K)).double()


def _data(n: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *SHAPE), generator=g, dtype=torch.float64), torch.arange(n) % K


def _np_params(model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    lin = model[1]
    return lin.weight.detach().numpy(), lin.bias.detach().numpy()


def _tiny_cnn() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(1, 2, 2), nn.Tanh(), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, K)).double()


def test_between_matches_closed_form_on_linear_softmax():
    # Logits are affine in x, so along (1-α)x_i + αx_j they are (1-α)z_i + αz_j exactly.
    model = _linear()
    x, y = _data()
    w, b = _np_params(model)
    alpha = np.linspace(0, 1, 7)
    res = paths_between(model, x, y, alphas=alpha, pairs=6, seed=2, batch_size=5)
    xn, yn = x.numpy().reshape(len(y), -1), y.numpy()
    for p, (i, j) in enumerate(res.pair_index):
        z = (1 - alpha)[:, None] * (xn[i] @ w.T + b) + alpha[:, None] * (xn[j] @ w.T + b)
        logp = log_softmax(z, axis=1)
        np.testing.assert_allclose(res.loss_i[p], -logp[:, yn[i]], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(res.loss_j[p], -logp[:, yn[j]], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(res.prob_i[p], np.exp(logp[:, yn[i]]), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(res.loss[p], (1 - alpha) * -logp[:, yn[i]] + alpha * -logp[:, yn[j]], rtol=1e-10)
        np.testing.assert_array_equal(res.pred[p], z.argmax(axis=1))
        assert res.distance[p] == pytest.approx(np.linalg.norm(xn[j] - xn[i]), rel=1e-12)
    np.testing.assert_allclose(res.jacobian_norm, np.linalg.norm(w), rtol=1e-12)
    assert res.same_class.sum() == 3 and np.array_equal(res.same_class, yn[res.pair_index[:, 0]] == yn[res.pair_index[:, 1]])
    # Lipschitz estimate = largest |Δloss| / ‖Δx‖ with ‖Δx‖ = Δα · distance.
    dl = np.abs(np.diff(res.loss, axis=1)).max(axis=1)
    np.testing.assert_allclose(res.stats.lipschitz, dl / (alpha[1] * res.distance), rtol=1e-10)


def test_around_gradient_direction_matches_closed_form():
    model = _linear(4)
    x, y = _data(9)
    w, b = _np_params(model)
    radius = np.linspace(0, 3, 5)
    res = paths_around(model, x, y, radii=radius, directions="gradient", batch_size=4)
    xn, yn = x.numpy().reshape(len(y), -1), y.numpy()
    for s in range(len(y)):
        p = np.exp(log_softmax(xn[s] @ w.T + b))
        g = w.T @ (p - np.eye(K)[yn[s]])  # ∇ₓ CE for a linear-softmax model
        assert res.grad_norm[s] == pytest.approx(np.linalg.norm(g), rel=1e-10)
        d = g / np.linalg.norm(g)
        logp = log_softmax((xn[s] + radius[:, None] * d) @ w.T + b, axis=1)
        np.testing.assert_allclose(res.loss[s, 0], -logp[:, yn[s]], rtol=1e-10)
        np.testing.assert_allclose(res.prob[s, 0], np.exp(logp[:, yn[s]]), rtol=1e-10)
    assert np.all(np.diff(res.loss, axis=-1)[..., 0] > 0)  # the first step up the gradient raises the loss
    np.testing.assert_allclose(res.jacobian_norm, np.linalg.norm(w), rtol=1e-12)


def test_random_directions_are_seeded_unit_and_start_at_the_sample():
    model = _linear()
    x, y = _data(6)
    a = paths_around(model, x, y, radii=[0, 0.5, 1], n_directions=3, seed=7, batch_size=4)
    b = paths_around(model, x, y, radii=[0, 0.5, 1], n_directions=3, seed=7, batch_size=64)
    c = paths_around(model, x, y, radii=[0, 0.5, 1], n_directions=3, seed=8)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-13)
    assert not np.allclose(a.loss, c.loss)
    clean = nn.functional.cross_entropy(model(x), y, reduction="none").detach().numpy()
    np.testing.assert_allclose(a.loss[:, :, 0], np.repeat(clean[:, None], 3, axis=1), rtol=1e-12)
    assert a.loss.shape == (6, 3, 3) and a.stats.flips.shape == (6, 3)


class _SquaredNorm(nn.Module):
    """Logits (0, ‖x‖²): from x = 0 along x = r·d the loss of class 0 is log(1 + exp(r²‖d‖²))."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.flatten(1).pow(2).sum(1)
        return torch.stack([torch.zeros_like(q), q], dim=1)


@pytest.mark.parametrize("directions", ["random", "gradient"])
def test_directions_have_unit_length(directions):
    radius = np.linspace(0, 2, 5)
    x = torch.zeros((3, *SHAPE), dtype=torch.float64)
    x[:, 0, 0, 0] = 1e-3  # off the origin so the gradient is defined
    res = paths_around(_SquaredNorm(), x, torch.zeros(3, dtype=torch.long), radii=radius, directions=directions,
                       n_directions=2 if directions == "random" else 1)
    # ‖x + r d‖² lies between (r − 1e-3)² and (r + 1e-3)² exactly when ‖d‖ = 1.
    lo, hi = np.logaddexp(0, (radius - 1e-3).clip(0) ** 2), np.logaddexp(0, (radius + 1e-3) ** 2)
    assert np.all(res.loss >= lo - 1e-12) and np.all(res.loss <= hi + 1e-12)
    if directions == "gradient":  # the gradient points straight out: ‖x + r d‖ = r + 1e-3
        np.testing.assert_allclose(res.loss[:, 0], np.broadcast_to(hi, (3, 5)), rtol=1e-12)


def test_curve_stats_by_hand():
    st = curve_stats(np.array([[0.0, 1.0, 0.0, 2.0]]), np.array([[0, 0, 1, 1]]), 0.5)
    assert st.total_variation[0] == 4.0
    assert st.max_second_diff[0] == 3.0  # second differences -2 and 3
    assert st.lipschitz[0] == 4.0  # |2 - 0| / 0.5
    assert st.flips[0] == 1


def test_jacobian_norm_matches_finite_differences():
    model = _tiny_cnn().train()  # BN in train mode on entry: the analysis must use eval mode and restore train
    x, _ = _data(3)
    jn = jacobian_norms(model, x, batch_size=2)
    assert model.training and model[2].training
    model.eval()
    h = 1e-5  # central differences: truncation O(h²) ≈ 1e-10, round-off O(eps/h) ≈ 1e-11
    for s in range(3):
        xs = x[s:s + 1].reshape(-1)
        cols = []
        for i in range(xs.numel()):
            e = torch.zeros_like(xs)
            e[i] = h
            with torch.no_grad():
                cols.append((model((xs + e).view(1, *SHAPE)) - model((xs - e).view(1, *SHAPE)))[0] / (2 * h))
        fd = torch.stack(cols, dim=1).norm().item()
        assert jn[s] == pytest.approx(fd, rel=1e-7)


def test_noise_zero_sigma_is_clean_and_independent_of_batching():
    model = _tiny_cnn().eval()
    x, y = _data(13)
    a = noise_robustness(model, x, y, sigmas=[0.0, 0.3, 1.0], draws=3, seed=5, batch_size=3)
    b = noise_robustness(model, x, y, sigmas=[0.0, 0.3, 1.0], draws=3, seed=5, batch_size=5)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-12)
    np.testing.assert_array_equal(a.acc, b.acc)
    with torch.no_grad():
        logits = model(x)
    clean = nn.functional.cross_entropy(logits, y).item()
    np.testing.assert_allclose(a.loss[:, 0], clean, rtol=1e-12)
    np.testing.assert_allclose(a.acc[:, 0], (logits.argmax(1) == y).double().mean().item())
    assert not np.allclose(a.loss[0, 1:], a.loss[1, 1:])  # different draws, different noise
    # Draw d uses x + σ ε with ε from the generator seeded seed + d, per sample in order.
    g = torch.Generator().manual_seed(5 + 1)
    eps = torch.stack([torch.randn(SHAPE, generator=g) for _ in range(len(y))]).double()
    with torch.no_grad():
        direct = nn.functional.cross_entropy(model(x + 0.3 * eps), y).item()
    assert a.loss[1, 1] == pytest.approx(direct, rel=1e-12)


def test_model_left_as_found():
    model = _tiny_cnn().train()
    model[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _data(8)
    paths_around(model, x, y, radii=[0, 1], directions="gradient")
    paths_between(model, x, y, pairs=3, alphas=[0, 0.5, 1])
    noise_robustness(model, x, y, sigmas=[0, 1], draws=1)
    assert all(m.training for m in model.modules())
    assert not model[0].weight.requires_grad and model[0].bias.requires_grad
    assert all(p.grad is None for p in model.parameters())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_draw_pairs_and_errors():
    y = np.array([0, 0, 1, 1, 2, 2, 3])
    idx, same = draw_pairs(y, pairs=10, same_class_fraction=0.3, seed=0)
    assert idx.shape == (10, 2) and same.sum() == 3
    assert np.all(idx[:, 0] != idx[:, 1]) and np.array_equal(same, y[idx[:, 0]] == y[idx[:, 1]])
    with pytest.raises(LandscapeError, match="no class has two samples"):
        draw_pairs(np.arange(5), pairs=2)
    model = _linear()
    x, yt = _data(4)
    with pytest.raises(LandscapeError, match="radii needs at least 2"):
        paths_around(model, x, yt, radii=[1.0])
    with pytest.raises(LandscapeError, match="n_directions=2"):
        paths_around(model, x, yt, radii=[0, 1], directions="gradient", n_directions=2)
    with pytest.raises(LandscapeError, match="sigmas must be finite"):
        noise_robustness(model, x, yt, sigmas=[-1.0])
