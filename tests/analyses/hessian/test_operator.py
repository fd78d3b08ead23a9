"""HessianOperator against closed forms, dense autograd Hessians and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape.analyses.hessian import HessianOperator, eigenvalues, per_layer, trace
from landscape.errors import LandscapeError


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()


def _data(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: list[str] | None = None) -> torch.Tensor:
    named = dict(model.named_parameters())
    names = names or list(named)
    shapes = [named[n].shape for n in names]
    flat0 = torch.cat([named[n].detach().reshape(-1) for n in names])

    def loss(flat: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(flat, [s.numel() for s in shapes])
        params = {n: c.view(s) for n, c, s in zip(names, chunks, shapes)}
        out = torch.func.functional_call(model, params, (x,))
        return nn.functional.cross_entropy(out, y)

    return torch.autograd.functional.hessian(loss, flat0)


def _matrix(op: HessianOperator) -> torch.Tensor:
    return torch.stack([op.matvec(e) for e in torch.eye(op.size, dtype=torch.float64)], dim=1)


def test_linear_least_squares_closed_form() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 5, generator=g, dtype=torch.float64)
    y = torch.randn(20, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(5, 1, bias=False).double()
    exact = 2 * x.T @ x / 20  # H of mean squared error
    mse = nn.functional.mse_loss
    with HessianOperator(model, (x, y), loss_fn=mse) as op:
        torch.testing.assert_close(_matrix(op), exact, rtol=1e-12, atol=1e-12)
    ev = torch.linalg.eigvalsh(exact).numpy()
    top = eigenvalues(model, (x, y), k=2, loss_fn=mse, tol=1e-10)
    np.testing.assert_allclose(top.eigenvalues, ev[::-1][:2], rtol=1e-9)
    low = eigenvalues(model, (x, y), k=2, which="SA", loss_fn=mse, tol=1e-10)
    np.testing.assert_allclose(low.eigenvalues, ev[:2], rtol=1e-9)
    tr = trace(model, (x, y), method="exact", loss_fn=mse)
    assert tr.estimate == pytest.approx(float(exact.trace()), rel=1e-12)


def test_mlp_matches_dense_hessian_all_eigenvalues_and_trace() -> None:
    model, (x, y) = _mlp(), _data()
    dense = dense_hessian(model, x, y)
    with HessianOperator(model, (x, y)) as op:
        torch.testing.assert_close(_matrix(op), dense, rtol=1e-10, atol=1e-12)
    n = dense.shape[0]
    ev = torch.linalg.eigvalsh(dense).numpy()
    res = eigenvalues(model, (x, y), k=n, tol=1e-8)
    np.testing.assert_allclose(np.sort(res.eigenvalues), ev, atol=1e-9)
    assert trace(model, (x, y), method="exact").estimate == pytest.approx(float(dense.trace()), rel=1e-10)


def test_small_cnn_eigenvalues_match_dense() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)).double()
    model.eval()
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (6,), generator=g)
    ev = torch.linalg.eigvalsh(dense_hessian(model, x, y)).numpy()
    res = eigenvalues(model, (x, y), k=3, tol=1e-9)
    np.testing.assert_allclose(res.eigenvalues, ev[::-1][:3], rtol=1e-7)
    res = eigenvalues(model, (x, y), k=2, which="SA", tol=1e-9)
    np.testing.assert_allclose(res.eigenvalues, ev[:2], rtol=1e-6, atol=1e-9)


def test_hvp_matches_finite_differences() -> None:
    model, (x, y) = _mlp(), _data()
    v = torch.randn(sum(p.numel() for p in model.parameters()), generator=torch.Generator().manual_seed(2),
                    dtype=torch.float64)
    flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach()

    def grad_at(theta: torch.Tensor) -> torch.Tensor:
        torch.nn.utils.vector_to_parameters(theta, model.parameters())
        loss = nn.functional.cross_entropy(model(x), y)
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])

    h = 1e-5  # central difference: error O(h² ‖∇³L‖) ~ 1e-10, rounding O(eps/h) ~ 1e-11
    fd = (grad_at(flat + h * v) - grad_at(flat - h * v)) / (2 * h)
    torch.nn.utils.vector_to_parameters(flat, model.parameters())
    with HessianOperator(model, (x, y)) as op:
        torch.testing.assert_close(op.matvec(v), fd, rtol=1e-7, atol=1e-8)


def test_unequal_batches_equal_one_batch() -> None:
    model, (x, y) = _mlp(), _data(12)
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64,
                    generator=torch.Generator().manual_seed(4))
    batches = [(x[:3], y[:3]), (x[3:7], y[3:7]), (x[7:], y[7:])]  # 3, 4, 5
    with HessianOperator(model, (x, y)) as one:
        ref = one.matvec(v)
    for keep in (False, True):
        with HessianOperator(model, batches, keep_graph=keep) as many:
            torch.testing.assert_close(many.matvec(v), ref, rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(many.matvec(v), ref, rtol=1e-12, atol=1e-14)
            assert many.n_samples == 12
    with HessianOperator(model, iter(batches)) as gen:  # a one-shot iterator is materialised
        torch.testing.assert_close(gen.matvec(v), ref)
        torch.testing.assert_close(gen.matvec(v), ref)


def test_params_restriction_and_per_layer_blocks_match_dense() -> None:
    model, (x, y) = _mlp(), _data()
    dense = dense_hessian(model, x, y)
    names = [n for n, _ in model.named_parameters()]
    sizes = [p.numel() for p in model.parameters()]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    block = slice(offsets[2], offsets[4])  # second Linear: "2.weight", "2.bias"
    with HessianOperator(model, (x, y), params="2") as op:
        assert op.names == names[2:]
        torch.testing.assert_close(_matrix(op), dense[block, block], rtol=1e-10, atol=1e-12)
    res = per_layer(model, (x, y), k=1, n_probes=50, tol=1e-9)
    assert [lc.name for lc in res.layers] == ["0", "2"]
    for lc, sl in zip(res.layers, [slice(offsets[0], offsets[2]), block]):
        sub = dense[sl, sl]
        assert lc.trace == pytest.approx(float(sub.trace()), rel=1e-10)
        assert lc.eigenvalues[0] == pytest.approx(float(torch.linalg.eigvalsh(sub)[-1]), rel=1e-8)
    only = per_layer(model, (x, y), k=1, n_probes=50, tol=1e-9, params="2.weight")
    assert [(lc.name, lc.size) for lc in only.layers] == [("2", model[2].weight.numel())]
    w = slice(offsets[2], offsets[3])
    assert only.layers[0].trace == pytest.approx(float(dense[w, w].trace()), rel=1e-10)
    with pytest.raises(LandscapeError, match="matches no parameter"):
        HessianOperator(model, (x, y), params="nothing*")


def test_model_left_as_found_and_no_graph_left() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.3), nn.Linear(4, 3)).double()
    model.train()
    model[0].weight.requires_grad_(False)
    model[3].weight.grad = torch.ones_like(model[3].weight)
    x, y = _data(8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for train_mode in (False, True):
        eigenvalues(model, (x, y), k=1, train_mode=train_mode)
        trace(model, (x, y), n_probes=6, train_mode=train_mode)
    assert model.training and all(m.training for m in model.modules())
    assert not model[0].weight.requires_grad and model[1].weight.requires_grad
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(model[3].weight.grad, torch.ones_like(model[3].weight))
    assert all(p.grad is None or p.grad.grad_fn is None for p in model.parameters())


def test_model_restored_when_loss_raises() -> None:
    model, (x, y) = _mlp(), _data()
    model.train()

    def bad_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        eigenvalues(model, (x, y), loss_fn=bad_loss)
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_train_mode_operator_is_a_fixed_symmetric_matrix() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Dropout(0.5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = _data(10)
    with HessianOperator(model, [(x[:4], y[:4]), (x[4:], y[4:])], train_mode=True) as op:
        m1, m2 = _matrix(op), _matrix(op)
    torch.testing.assert_close(m1, m2, rtol=0, atol=0)
    torch.testing.assert_close(m1, m1.T, rtol=1e-10, atol=1e-12)


def test_same_seed_same_result() -> None:
    model, (x, y) = _mlp(), _data()
    a = eigenvalues(model, (x, y), k=2, seed=3, tol=1e-2)
    b = eigenvalues(model, (x, y), k=2, seed=3, tol=1e-2)
    np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)
    assert a.n_hvp == b.n_hvp


def test_eigenvectors_keyed_by_parameter_name_and_unit_norm() -> None:
    model, (x, y) = _mlp(), _data()
    res = eigenvalues(model, (x, y), k=2, tol=1e-8, return_eigenvectors=True)
    assert res.eigenvectors is not None and len(res.eigenvectors) == 2
    vec = res.eigenvectors[0]
    assert list(vec) == [n for n, _ in model.named_parameters()]
    flat = np.concatenate([v.ravel() for v in vec.values()])
    assert np.linalg.norm(flat) == pytest.approx(1.0, abs=1e-12)
    dense = dense_hessian(model, x, y).numpy()
    assert np.linalg.norm(dense @ flat - res.eigenvalues[0] * flat) <= 1e-6 * abs(res.eigenvalues[0])


def test_unused_parameter_has_zero_hessian_rows() -> None:
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(3, 3)
            self.unused = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    torch.manual_seed(0)
    model = TwoHeads().double()
    x, y = _data()
    with HessianOperator(model, (x, y)) as op:
        h = _matrix(op)
    assert torch.all(h[12:] == 0) and torch.all(h[:, 12:] == 0)
    torch.testing.assert_close(h[:12, :12], dense_hessian(model, x, y, ["used.weight", "used.bias"]))


def test_no_samples_names_the_argument() -> None:
    model = _mlp()
    with HessianOperator(model, []) as op, pytest.raises(LandscapeError, match=r"no samples; check n_samples="):
        op.matvec(torch.ones(op.size, dtype=torch.float64))


def _bn_dropout_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(),
                         nn.Linear(12, 3)).double()


@pytest.mark.parametrize("train_mode", [False, True])
def test_forward_over_reverse_equals_double_backprop(train_mode: bool) -> None:
    """hvp="forward" (jvp of grad through functional_call) is the same operator, BN buffers and dropout included,
    over unequal batches; the model's buffers are left as found."""
    model = _bn_dropout_cnn()
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(12, 1, 4, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (12,), generator=g)
    batches = [(x[:3], y[:3]), (x[3:7], y[3:7]), (x[7:], y[7:])]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    v = torch.randn(sum(p.numel() for p in model.parameters()), generator=g, dtype=torch.float64)
    with HessianOperator(model, batches, train_mode=train_mode) as rev:
        ref = rev.matvec(v)
        loss = rev.loss
    with HessianOperator(model, batches, train_mode=train_mode, hvp="forward") as fwd:
        torch.testing.assert_close(fwd.matvec(v), ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(fwd.matvec(v), ref, rtol=1e-10, atol=1e-12)
        assert fwd.loss == pytest.approx(loss, rel=1e-12) and fwd.n_samples == 12
    for k, t in model.state_dict().items():
        assert torch.equal(t, before[k]), k
    a = eigenvalues(model, batches, k=2, tol=1e-8, train_mode=train_mode)
    with HessianOperator(model, batches, train_mode=train_mode, hvp="forward") as fwd:
        from landscape.analyses.hessian.krylov import lanczos

        b = lanczos(fwd, k=2, tol=1e-8)
    np.testing.assert_allclose(b.eigenvalues, a.eigenvalues, rtol=1e-9)
    with pytest.raises(LandscapeError, match="hvp='sideways'"):
        HessianOperator(model, batches, hvp="sideways")  # type: ignore[arg-type]


def test_float32_model_works_in_float32() -> None:
    """A float32 model's products are float32 vectors (half the memory of float64) that agree with the float64
    model's to float32 accuracy; the eigenvalues and trace follow."""
    model64, (x, y) = _mlp(), _data()
    model32 = _mlp().float()
    v = torch.randn(sum(p.numel() for p in model64.parameters()), generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    with HessianOperator(model64, (x, y)) as op64, HessianOperator(model32, (x.float(), y)) as op32:
        assert op32.dtype == torch.float32 and op64.dtype == torch.float64
        out = op32.matvec(v)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out.double(), op64.matvec(v), rtol=1e-5, atol=1e-6)
    e64 = eigenvalues(model64, (x, y), k=3, tol=1e-6).eigenvalues
    e32 = eigenvalues(model32, (x.float(), y), k=3, tol=1e-4).eigenvalues
    np.testing.assert_allclose(e32, e64, rtol=1e-5)
    t64 = trace(model64, (x, y), n_probes=30, seed=2)
    t32 = trace(model32, (x.float(), y), n_probes=30, seed=2)
    assert t32.estimate == pytest.approx(t64.estimate, rel=1e-5)
