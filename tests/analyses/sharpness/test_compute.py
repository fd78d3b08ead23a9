"""Sharpness measures against closed forms on quadratics ``½ (w − c)ᵀ A (w − c)`` at their minimum, m-sharpness
against its definition, and the model left as found."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from landscape.analyses.sharpness.result import Sharpness, compute, run
from landscape.errors import LandscapeError


class Quadratic(nn.Module):
    """Every sample's loss is ``½ (w − c)ᵀ A (w − c)`` (the output is that loss, one per sample)."""

    def __init__(self, a: torch.Tensor, c: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("a", a)
        self.register_buffer("c", c.clone())
        self.w = nn.Parameter(c.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.w - self.c
        return (0.5 * d @ self.a @ d).expand(x.shape[0])


def per_sample(out: torch.Tensor, _targets: torch.Tensor) -> torch.Tensor:
    return out


DATA = (torch.zeros(6, 1, dtype=torch.float64), torch.zeros(6, dtype=torch.float64))


def rotated(eigenvalues: list[float], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T


A = rotated([0.2, 0.5, 1.0, 1.5, 4.0])
C = torch.tensor([0.5, -1.0, 2.0, 0.25, -0.75], dtype=torch.float64)


def quad(a: torch.Tensor = A, c: torch.Tensor = C) -> Quadratic:
    return Quadratic(a, c)


def measure(model: nn.Module, **options) -> Sharpness:
    return compute(model, *DATA, loss_fn=per_sample, **options)


@pytest.mark.parametrize("rho", [0.05, 0.3])
def test_worst_case_l2_is_half_rho_squared_lambda_max(rho):
    r = measure(quad(), measures="worst", rho=rho, steps=100)
    exact = 0.5 * rho**2 * 4.0
    value = float(r.measures["worst"]["value"][0])
    assert exact * (1 - 1e-3) <= value <= exact * (1 + 1e-12)  # a point of the ball: never above the maximum
    assert r.measures["worst"]["last_improvement"][0, 0] < 100  # settled before the last step


def test_worst_case_adaptive_is_lambda_max_of_the_scaled_matrix():
    rho = 0.2
    t = torch.diag(C.abs())
    exact = 0.5 * rho**2 * float(torch.linalg.eigvalsh(t @ A @ t).max())
    value = float(measure(quad(), measures="worst_adaptive", rho=rho, steps=100).values()["worst_adaptive"][0])
    assert exact * (1 - 1e-3) <= value <= exact * (1 + 1e-12)


def test_worst_case_linf_on_a_diagonal_saddle():
    # max over |δ_i| ≤ ρ of ½ Σ a_i δ_i² puts δ_i = ±ρ where a_i > 0 and 0 elsewhere: ½ ρ² Σ max(a_i, 0).
    diag = torch.tensor([3.0, 1.0, -2.0, 0.5, -0.1], dtype=torch.float64)
    rho = 0.1
    exact = 0.5 * rho**2 * float(diag.clamp(min=0).sum())
    r = measure(quad(torch.diag(diag)), measures="worst", norm="linf", rho=rho, steps=60)
    assert abs(float(r.values()["worst"][0]) - exact) < 1e-6 * exact


def test_average_case_is_half_sigma_squared_trace():
    sigma, draws = 0.1, 400
    for name, t in (("average", torch.eye(5, dtype=torch.float64)), ("average_adaptive", torch.diag(C.abs()))):
        r = measure(quad(), measures=name, sigma=sigma, draws=draws, seed=3)
        exact = 0.5 * sigma**2 * float(torch.trace(t @ A @ t))
        m = r.measures[name]
        assert m["samples"].shape == (1, draws)
        assert abs(float(m["value"][0]) - exact) < 3 * float(m["stderr"][0]), name
        # The stderr is the spread of the draws: Var(½σ² zᵀMz) = ½σ⁴ tr(M²) for z ~ N(0, I).
        expected_se = math.sqrt(0.5 * sigma**4 * float(torch.trace((t @ A @ t) @ (t @ A @ t))) / draws)
        assert float(m["stderr"][0]) == pytest.approx(expected_se, rel=0.25)


def test_pac_bayes_sigma_matches_the_closed_form():
    target, draws = 0.1, 300
    r = measure(quad(), measures="pac_bayes,average", sigma=0.1, draws=draws, pac_draws=draws, pac_target=target,
                seed=5)
    sigma = float(r.measures["pac_bayes"]["sigma"])
    # Exact for the draws used: the average case with the same seed and count draws the same z, so its samples
    # give q = mean zᵀAz, and the bisection must find sqrt(2·target / q).
    q = float(r.measures["average"]["samples"].mean()) / (0.5 * 0.1**2)
    assert sigma == pytest.approx(math.sqrt(2 * target / q), rel=2e-4)
    # And statistically the closed form σ* = sqrt(2·target / tr(A)) (delta method: rel. se = se(q) / (2 q)).
    se_q = float(r.measures["average"]["samples"].std(ddof=1)) / (0.5 * 0.1**2) / math.sqrt(draws)
    exact = math.sqrt(2 * target / float(torch.trace(A)))
    assert abs(sigma - exact) < 3 * exact * se_q / (2 * q)
    assert float(r.measures["pac_bayes"]["rise"]) <= target
    assert float(r.measures["pac_bayes"]["upper"]) / sigma - 1 < 1e-3


def test_pac_bayes_adaptive_scales_with_the_weights():
    target, draws = 0.05, 200
    r = measure(quad(), measures="pac_bayes_adaptive,average_adaptive", sigma=0.1, draws=draws, pac_draws=draws,
                pac_target=target)
    q = float(r.measures["average_adaptive"]["samples"].mean()) / (0.5 * 0.1**2)
    assert float(r.measures["pac_bayes_adaptive"]["sigma"]) == pytest.approx(math.sqrt(2 * target / q), rel=2e-4)


def regression() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, generator=g, dtype=torch.float64)
    y = torch.randn(12, generator=g, dtype=torch.float64)
    model = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.3, -0.2, 0.5]], dtype=torch.float64))
    return model, x, y


def squared(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out.squeeze(-1) - y) ** 2


def test_m_sharpness_with_m_equal_n_is_the_plain_one():
    model, x, y = regression()
    plain = compute(model, x, y, measures="worst", rho=0.1, loss_fn=squared, batch_size=5)
    full = compute(model, x, y, measures="worst", rho=0.1, m=len(y), loss_fn=squared, batch_size=5)
    np.testing.assert_array_equal(full.measures["worst"]["history"], plain.measures["worst"]["history"])
    assert full.values()["worst"][0] == plain.values()["worst"][0] and full.subsets is None


def test_m_sharpness_is_the_mean_of_the_subsets_sharpness():
    model, x, y = regression()
    r = compute(model, x, y, measures="worst", rho=0.1, m=5, steps=60, loss_fn=squared, seed=2)
    assert r.subsets is not None and r.subsets.shape == (2, 5)  # 12 samples: two whole subsets of 5
    assert len(set(r.subsets.reshape(-1).tolist())) == 10
    each = [float(compute(model, x[torch.as_tensor(s)], y[torch.as_tensor(s)], measures="worst", rho=0.1, steps=60,
                          loss_fn=squared).values()["worst"][0]) for s in r.subsets]
    np.testing.assert_allclose(r.measures["worst"]["per_subset"][0], each, rtol=1e-6)
    assert float(r.values()["worst"][0]) == pytest.approx(np.mean(each), rel=1e-6)
    # A subset's maximum is larger than the maximum of the mean over all samples.
    assert float(r.values()["worst"][0]) > float(compute(model, x, y, measures="worst", rho=0.1, steps=60,
                                                         loss_fn=squared).values()["worst"][0])


def test_several_radii_and_ascent_diagnostics():
    r = measure(quad(), measures="worst,average", rho=[0.05, 0.1, 0.2], sigma="0.01,0.02", steps=30)
    w = r.measures["worst"]
    assert w["value"].shape == (3,) and w["history"].shape == (3, 1, 31) and w["last_improvement"].shape == (3, 1)
    np.testing.assert_allclose(w["value"], 0.5 * np.array([0.05, 0.1, 0.2]) ** 2 * 4.0, rtol=1e-2)
    assert r.measures["average"]["value"].shape == (2,)
    assert r.attrs["steps"] == 30 and r.attrs["norm"] == "l2" and r.attrs["seed"] == 0


def test_same_seed_same_result_and_settings_recorded():
    model, x, y = regression()
    a = compute(model, x, y, measures="all", loss_fn=squared, steps=5, draws=4, pac_draws=3, seed=7)
    b = compute(model, x, y, measures="all", loss_fn=squared, steps=5, draws=4, pac_draws=3, seed=7)
    for name in a.measures:
        for key in a.measures[name]:
            np.testing.assert_array_equal(a.measures[name][key], b.measures[name][key])
    for key in ("rho", "sigma"):
        assert getattr(a, key).tolist() == getattr(b, key).tolist()
    for key in ("norm", "m", "steps", "random_start", "xi", "draws", "pac_target", "pac_draws", "pac_steps", "seed",
                "ignore", "params", "mode", "weights_sha256", "n_passes"):
        assert key in a.attrs, key


def snapshot(model: nn.Module) -> tuple:
    return ({k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()],
            [(p.requires_grad, None if p.grad is None else p.grad.clone()) for p in model.parameters()])


def assert_same(model: nn.Module, before: tuple) -> None:
    state, modes, grads = before
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert [m.training for m in model.modules()] == modes
    for p, (flag, grad) in zip(model.parameters(), grads):
        assert p.requires_grad == flag and (grad is None) == (p.grad is None)


def test_model_is_left_as_found_also_when_the_loss_raises():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.2), nn.Linear(6, 3))
    model.train()
    model[4].weight.requires_grad_(False)
    model[0].weight.grad = torch.ones_like(model[0].weight)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    before = snapshot(model)
    for mode in ("eval", "train"):
        compute(model, x, y, measures="all", steps=3, draws=2, pac_draws=2, pac_steps=2, mode=mode, batch_size=8)
        assert_same(model, before)
    calls = {"n": 0}

    def flaky(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("boom")
        return torch.nn.functional.cross_entropy(out, t, reduction="none")

    with pytest.raises(RuntimeError, match="boom"):
        compute(model, x, y, measures="worst", loss_fn=flaky)
    assert_same(model, before)


def test_params_and_ignore_choose_the_perturbed_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    assert compute(model, x, y, measures="average", draws=2).attrs["n_perturbed"] == 4 * 6 + 6 + 6 * 3 + 3
    assert compute(model, x, y, measures="average", draws=2, ignore="biasbn").attrs["n_perturbed"] == 4 * 6 + 18
    r = compute(model, x, y, measures="average", draws=2, params="2")
    assert r.attrs["n_perturbed"] == 6 * 3 + 3 and r.attrs["params"] == "2"
    with pytest.raises(LandscapeError, match="matches no parameter"):
        compute(model, x, y, params="nothing*")


@pytest.mark.parametrize("options, fragment", [
    ({"rho": -1}, "rho=-1 must be a positive finite number"),
    ({"sigma": "0.1,x"}, "sigma='0.1,x' is not a comma-separated list"),
    ({"measures": "sharpest"}, "measures='sharpest' is unknown; choose from worst"),
    ({"norm": "l1"}, "norm='l1'; use 'l2' or 'linf'"),
    ({"m": 100}, "m=100 is more than the 6 samples given"),
    ({"steps": -1}, "steps=-1 must be a whole number"),
    ({"draws": 1}, "draws=1 must be a whole number, at least 2"),
    ({"pac_target": 0}, "pac_target=0 must be a finite number > 0"),
    ({"ignore": "bn"}, "ignore='bn'; use 'none'"),
])
def test_bad_arguments_are_one_line_errors(options, fragment):
    with pytest.raises(LandscapeError) as info:
        measure(quad(), **options)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_run_takes_any_data_form_and_writes_out(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    r = run(model, "digits", n_samples=40, measures="average", draws=3, out=tmp_path / "s.h5")
    assert r.path == str(tmp_path / "s.h5") and r.attrs["dataset"] == "digits" and r.attrs["n_samples"] == 40
    with pytest.raises(LandscapeError, match="exists; pass overwrite=True"):
        run(model, "digits", n_samples=40, measures="average", draws=3, out=tmp_path / "s.h5")
    x, y = torch.randn(20, 64), torch.randint(0, 10, (20,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=7)
    a = run(model, loader, measures="average", draws=3)
    b = run(model, (x, y), measures="average", draws=3)
    assert a.values()["average"][0] == b.values()["average"][0]
