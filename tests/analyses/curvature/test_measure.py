"""The measurement against dense oracles: λmax and trace of a tiny MLP's Hessian, Adam's preconditioned sharpness
against torch's own Adam step, and the warm start (same answer, never the second eigenvalue)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from landscape.analyses.curvature.measure import (
    WARM_NOISE,
    ScaledOperator,
    _start,
    adam_preconditioner,
    fixed_set,
    measure,
    thresholds,
)
from landscape.analyses.hessian.krylov import lanczos
from landscape.analyses.hessian.operator import DenseOperator
from landscape.errors import LandscapeError


def tiny_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3)).double()  # 27 parameters


def tiny_data(n: int = 12, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(3, (n,), generator=g)


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn=F.cross_entropy) -> torch.Tensor:
    """The Hessian of the mean loss over all of (x, y), by torch.autograd.functional.hessian (an oracle)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])

    def loss(w: torch.Tensor) -> torch.Tensor:
        parts, i = {}, 0
        for n, s in zip(names, shapes):
            parts[n] = w[i:i + s.numel()].view(s)
            i += s.numel()
        return loss_fn(functional_call(model, parts, (x,)), y)

    return torch.autograd.functional.hessian(loss, flat)


def uneven(x, y):
    return [(x[:3], y[:3]), (x[3:7], y[3:7]), (x[7:], y[7:])]  # batches of 3, 4 and 5


def test_lambda_max_and_trace_match_the_dense_hessian():
    model, (x, y) = tiny_mlp(), tiny_data()
    h = dense_hessian(model, x, y)
    eig = torch.linalg.eigvalsh(h)
    size = h.shape[0]
    m = measure(model, uneven(x, y), loss_fn=F.cross_entropy, tol=1e-10, trace_probes=3 * size)
    assert m.lambda_max == pytest.approx(float(eig[-1]), rel=1e-8)
    assert m.lambda_converged and m.lambda_residual <= 1e-9 * abs(m.lambda_max)
    # A Hutch++ sketch as large as the operator spans everything: the trace is exact.
    assert m.trace == pytest.approx(float(torch.trace(h)), rel=1e-8) and m.trace_stderr == 0.0
    assert m.loss == pytest.approx(float(F.cross_entropy(model(x), y).detach()), rel=1e-12)
    assert m.lambda_matvecs >= 1 and m.trace_matvecs == 2 * size + (3 * size - 2 * size)
    # The eigenvector is the dense one (up to sign).
    v = m.vector.double()
    assert float(torch.linalg.vector_norm(h @ v - m.lambda_max * v)) < 1e-7 * m.lambda_max


def test_mse_loss_hessian_matches_the_dense_one():
    from landscape.training.losses import mean_mse

    model, (x, y) = tiny_mlp(2), tiny_data(seed=3)
    h = dense_hessian(model, x, y, loss_fn=mean_mse)
    m = measure(model, [(x, y)], loss_fn=mean_mse, tol=1e-10)
    assert m.lambda_max == pytest.approx(float(torch.linalg.eigvalsh(h)[-1]), rel=1e-8)


def test_measuring_leaves_model_grads_and_rng_as_found():
    model, (x, y) = tiny_mlp(), tiny_data()
    model.train()
    F.cross_entropy(model(x), y).backward()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    measure(model, [(x, y)], loss_fn=F.cross_entropy, trace_probes=6)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))
    assert torch.equal(rng, torch.get_rng_state()) and model.training
    assert all(p.requires_grad for p in model.parameters())


def _adam_after_steps(betas, steps=3, weight_decay=0.0):
    model, (x, y) = tiny_mlp(), tiny_data()
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=betas, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()  # the gradient of the step about to be taken
    return model, opt, x, y


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_preconditioner_is_the_denominator_of_torchs_next_step(weight_decay):
    """With β₁ = 0 the Adam step is −lr·g/(sqrt(v̂) + ε), so torch's own update reveals P = lr·g/(−Δ)."""
    model, opt, _, _ = _adam_after_steps((0.0, 0.99), weight_decay=weight_decay)
    params = list(model.parameters())
    d = adam_preconditioner(opt, params)
    g = torch.cat([(p.grad + weight_decay * p.detach()).reshape(-1) for p in params])
    w0 = torch.cat([p.detach().reshape(-1).clone() for p in params])
    opt.step()
    delta = torch.cat([p.detach().reshape(-1) for p in params]) - w0
    p_from_torch = 0.01 * g / (-delta)
    ok = g.abs() > 1e-6
    np.testing.assert_allclose((d[ok] ** -2).numpy(), p_from_torch[ok].numpy(), rtol=1e-6)


def test_preconditioned_sharpness_matches_dense_p_inverse_h():
    model, opt, x, y = _adam_after_steps((0.9, 0.999))
    d = adam_preconditioner(opt, list(model.parameters()))
    h = dense_hessian(model, x, y)
    dense = torch.linalg.eigvalsh(d[:, None] * h * d[None, :])[-1]
    # Also the eigenvalues of P⁻¹H (non-symmetric) are those of P^{-1/2} H P^{-1/2}.
    nonsym = torch.linalg.eigvals(torch.diag(d ** 2) @ h).real.max()
    m = measure(model, [(x, y)], loss_fn=F.cross_entropy, tol=1e-10, preconditioner=d)
    assert m.precond_lambda_max == pytest.approx(float(dense), rel=1e-8)
    assert float(nonsym) == pytest.approx(float(dense), rel=1e-8)
    assert m.precond_matvecs >= 1 and m.precond_vector is not None


def test_scaled_operator_is_d_a_d():
    a = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = a + a.T
    d = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)
    v = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = ScaledOperator(DenseOperator(a), d).matvec(v)
    assert torch.allclose(out, torch.diag(d) @ a @ torch.diag(d) @ v, atol=1e-12)


def test_warm_start_gives_the_cold_answer_with_fewer_products():
    model, (x, y) = tiny_mlp(), tiny_data()
    prev = measure(model, [(x, y)], loss_fn=F.cross_entropy, tol=1e-6)
    with torch.no_grad():  # a small training-like move of the weights
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(5), dtype=p.dtype))
    cold = measure(model, [(x, y)], loss_fn=F.cross_entropy, tol=1e-6)
    warm = measure(model, [(x, y)], loss_fn=F.cross_entropy, tol=1e-6, v0=prev.vector)
    exact = float(torch.linalg.eigvalsh(dense_hessian(model, x, y))[-1])
    for m in (cold, warm):
        assert m.lambda_max == pytest.approx(exact, rel=1e-6)
    assert warm.lambda_matvecs <= cold.lambda_matvecs


def test_a_warm_start_on_the_second_eigenvector_still_finds_the_top_one():
    """Eigenvalues cross during training: the old top eigenvector may now belong to the second eigenvalue. Started
    from it exactly, Lanczos stops at once on the wrong eigenvalue (its residual is zero); the warm start's random
    part makes it go on until the top one is found (here the gap is 11; for gaps near tol·λ see docs/curvature.md)."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64))
    values = torch.cat([torch.arange(1, 30, dtype=torch.float64), torch.tensor([40.0], dtype=torch.float64)])
    op = DenseOperator(q @ torch.diag(values) @ q.T)
    second = q[:, -2]
    naive = lanczos(op, k=1, tol=1e-3, v0=second)
    assert naive.eigenvalues[0] == pytest.approx(29.0) and naive.n_matvec == 1  # the trap
    guarded = lanczos(op, k=1, tol=1e-3, v0=_start(second, 30, seed=0, device=torch.device("cpu")))
    assert guarded.eigenvalues[0] == pytest.approx(40.0, rel=1e-4)
    assert 0 < WARM_NOISE < 1


def test_fixed_set_is_seeded_and_capped():
    x, y = torch.arange(20.0)[:, None], torch.arange(20)
    a, b = fixed_set(x, y, n_samples=5, seed=3), fixed_set(x, y, n_samples=5, seed=3)
    assert torch.equal(a[1], b[1]) and len(a[1]) == 5 and len(set(a[1].tolist())) == 5
    assert not torch.equal(a[1], fixed_set(x, y, n_samples=5, seed=4)[1])
    assert torch.equal(fixed_set(x, y, n_samples=99, seed=0)[1], y)  # all, in order
    with pytest.raises(LandscapeError, match="n_samples=0 must be"):
        fixed_set(x, y, n_samples=0, seed=0)


def test_thresholds():
    assert thresholds("gd", 0.1) == (pytest.approx(20.0), pytest.approx(float("nan"), nan_ok=True))
    assert thresholds("sgd", 0.1, momentum=0.9)[0] == pytest.approx(38.0)
    t, p = thresholds("adam", 0.001, beta1=0.9)
    assert np.isnan(t) and p == pytest.approx(38000.0)


def test_bad_arguments_are_one_line():
    model, (x, y) = tiny_mlp(), tiny_data()
    with pytest.raises(LandscapeError, match="tol=0.0 must be"):
        measure(model, [(x, y)], loss_fn=F.cross_entropy, tol=0.0)
    with pytest.raises(LandscapeError, match="trace_probes=2 is too few"):
        measure(model, [(x, y)], loss_fn=F.cross_entropy, trace_probes=2)
    with pytest.raises(LandscapeError, match="v0 has 3 values for 27"):
        measure(model, [(x, y)], loss_fn=F.cross_entropy, v0=torch.ones(3))
    with pytest.raises(LandscapeError, match="needs an Adam optimizer"):
        adam_preconditioner(torch.optim.SGD(model.parameters(), lr=0.1), list(model.parameters()))
