"""Gradient predictiveness / β-smoothness: closed forms, finite differences, invariants, store and plots."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from landscape.analyses.predictiveness import schema as store
from landscape.analyses.predictiveness.compute import (
    DEFAULT_ETAS,
    PredictivenessProbe,
    parse_etas,
    probe_batch,
    probe_checkpoint,
    sample_batches,
    save_result,
)
from landscape.errors import LandscapeError

# ---------------------------------------------------------------- helpers


class Quadratic(nn.Module):
    """``forward`` returns the weights; with ``quad_loss`` the loss is ½ wᵀAw."""

    def __init__(self, w0: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w0.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w


def quad_loss(a: torch.Tensor):
    return lambda out, targets: 0.5 * out @ a @ out


def spd(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.linspace(0.1, 5.0, n, dtype=torch.float64)) @ q.T


def tiny_cnn(dropout: float = 0.0, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(dropout),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 4),
    )
    return net.to(dtype)


def tiny_data(n: int = 12, dtype=torch.float64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 6, 6, generator=g).to(dtype), torch.randint(4, (n,), generator=g)


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "grad": [(p.grad, None if p.grad is None else p.grad.clone()) for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "rng": torch.get_rng_state(),
    }


def assert_same(model: nn.Module, snap: dict) -> None:
    for k, v in model.state_dict().items():
        assert torch.equal(v, snap["state"][k]), k
    for p, (obj, value) in zip(model.parameters(), snap["grad"]):
        assert p.grad is obj  # the very same tensor object, not a copy
        if value is not None:
            assert torch.equal(p.grad, value)
    assert [m.training for m in model.modules()] == snap["modes"]
    assert [p.requires_grad for p in model.parameters()] == snap["requires_grad"]
    assert torch.equal(torch.get_rng_state(), snap["rng"])


# ---------------------------------------------------------------- closed form: quadratic loss


@pytest.mark.parametrize("given_grad", [False, True])
def test_quadratic_closed_form(given_grad):
    n = 7
    a = spd(n, 0)
    w = torch.randn(n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    model = Quadratic(w)
    etas = [0.01, 0.1, 0.3, 0.7]
    g = a @ w
    grad = [g.clone()] if given_grad else None
    loss0 = float(0.5 * w @ a @ w)
    row = probe_batch(model, torch.zeros(1), torch.zeros(1), etas=etas, loss_fn=quad_loss(a), grad=grad,
                      loss=loss0 if given_grad else None)
    ag = float(torch.linalg.vector_norm(a @ g))
    gn = float(torch.linalg.vector_norm(g))
    # ∇L(w − ηg) − g = −ηAg exactly, so the change is η‖Ag‖ and β = ‖Ag‖/‖g‖ for every η.
    np.testing.assert_allclose(row.grad_diff, np.array(etas) * ag, rtol=1e-12)
    assert row.beta == pytest.approx(ag / gn, rel=1e-12)
    expected = [float(0.5 * (w - e * g) @ a @ (w - e * g)) for e in etas]
    np.testing.assert_allclose(row.loss, expected, rtol=1e-12)
    assert row.train_loss == pytest.approx(loss0, rel=1e-14)
    assert row.grad_norm == pytest.approx(gn, rel=1e-14)
    assert row.n_backward == len(etas) + (0 if given_grad else 1)
    assert torch.equal(model.w.detach(), w)


def test_zero_gradient_gives_nan_beta():
    a = spd(3, 1)
    row = probe_batch(Quadratic(torch.zeros(3, dtype=torch.float64)), torch.zeros(1), torch.zeros(1),
                      etas=[0.1], loss_fn=quad_loss(a))
    assert row.grad_norm == 0 and row.grad_diff[0] == 0 and math.isnan(row.beta)


# ---------------------------------------------------------------- finite differences on a BN network


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_small_step_matches_hessian_vector_product(bn_mode):
    """For small η: ‖∇L(W−ηg) − g‖/η → ‖Hg‖ and (L(W) − L(W−ηg))/η → ‖g‖² (errors O(η))."""
    model, (x, y) = tiny_cnn(), tiny_data()
    ref = tiny_cnn()
    ref.train(bn_mode == "train")
    loss = nn.functional.cross_entropy(ref(x), y)
    params = list(ref.parameters())
    g = torch.autograd.grad(loss, params, create_graph=True)
    hg = torch.autograd.grad(g, params, grad_outputs=[t.detach() for t in g])
    hg_norm = math.sqrt(sum(float(t.square().sum()) for t in hg))
    g_sq = sum(float(t.detach().square().sum()) for t in g)
    eta = 1e-6
    row = probe_batch(model, x, y, etas=[eta], bn_mode=bn_mode)
    assert row.grad_norm ** 2 == pytest.approx(g_sq, rel=1e-12)
    assert row.train_loss == pytest.approx(float(loss.detach()), rel=1e-12)
    assert row.grad_diff[0] / eta == pytest.approx(hg_norm, rel=1e-4)
    assert (row.train_loss - row.loss[0]) / eta == pytest.approx(g_sq, rel=1e-4)


# ---------------------------------------------------------------- leaves the model as found


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
@pytest.mark.parametrize("start_mode", ["train", "eval"])
def test_probe_leaves_model_as_found(bn_mode, start_mode):
    model, (x, y) = tiny_cnn(dropout=0.3, dtype=torch.float32), tiny_data(dtype=torch.float32)
    model[6].bias.requires_grad_(False)  # a frozen parameter stays frozen and is not probed
    model.train()
    nn.functional.cross_entropy(model(x), y).backward()
    model[1].weight.grad = None  # a trainable parameter without a gradient counts as g = 0
    model.train(start_mode == "train")
    model[1].train()  # mixed per-module modes must come back exactly
    snap = snapshot(model)
    grad = [p.grad for p in model.parameters() if p.requires_grad]
    probe_batch(model, x, y, etas=[0.1, 1.0], bn_mode=bn_mode)
    assert_same(model, snap)
    probe_batch(model, x, y, etas=[0.1, 1.0], bn_mode=bn_mode, grad=grad, loss=1.0)
    assert_same(model, snap)


def test_probe_restores_on_error():
    model, (x, y) = tiny_cnn(dropout=0.3), tiny_data()
    model.eval()
    snap = snapshot(model)
    calls = []

    def failing(out, targets):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return nn.functional.cross_entropy(out, targets)

    with pytest.raises(RuntimeError, match="boom"):
        probe_batch(model, x, y, etas=[0.1, 0.2, 0.3], bn_mode="train", loss_fn=failing)
    assert_same(model, snap)


def test_dropout_masks_shared_across_etas():
    """With one dropout mask per probe, η → 0 gives zero gradient change even with dropout active."""
    model, (x, y) = tiny_cnn(dropout=0.5), tiny_data()
    row = probe_batch(model, x, y, etas=[1e-7], bn_mode="train", seed=5)
    # Different masks for g and ∇L(W − ηg) would make the change of order ‖g‖, not of order η.
    assert row.grad_diff[0] < 1e-4 * row.grad_norm
    again = probe_batch(model, x, y, etas=[1e-7], bn_mode="train", seed=5)
    assert np.array_equal(row.grad_diff, again.grad_diff)


# ---------------------------------------------------------------- options


def test_parse_etas():
    assert parse_etas("0.05:0.4:8") == pytest.approx(DEFAULT_ETAS)
    assert parse_etas("0.1,0.3") == (0.1, 0.3)
    assert parse_etas("0.2:0.2:1") == (0.2,)
    for bad, fragment in [("0:0.4:8", "η=0 is not positive"), ("0.1:0.4", "MIN:MAX:NUM"),
                          ("a:b:c", "must be numbers"), ("0.1:0.1:3", "equal ends"), ("-0.1,0.2", "positive"),
                          ("", "empty"), ("0.1,x", "comma-separated")]:
        with pytest.raises(LandscapeError, match=fragment):
            parse_etas(bad)


def test_bad_options():
    model, (x, y) = tiny_cnn(), tiny_data()
    with pytest.raises(LandscapeError, match="bn_mode='batch'"):
        probe_batch(model, x, y, bn_mode="batch")
    with pytest.raises(LandscapeError, match="every=0"):
        PredictivenessProbe("p.h5", every=0)
    with pytest.raises(LandscapeError, match="need 40 samples"):
        sample_batches(x, y, n_batches=4, batch_size=10)


# ---------------------------------------------------------------- checkpoint probing and store


def test_probe_checkpoint_shapes_weights_and_file(tmp_path):
    model, (x, y) = tiny_cnn(), tiny_data(12)
    model.eval()
    snap = snapshot(model)
    batches = [(x[:3], y[:3]), (x[3:7], y[3:7]), (x[7:], y[7:])]  # unequal batches: 3, 4, 5
    res = probe_checkpoint(model, batches, etas=[0.05, 0.1, 0.2], bn_mode="train", progress=False)
    assert_same(model, snap)
    assert res.loss.shape == res.grad_diff.shape == (3, 3)
    assert res.beta.shape == res.train_loss.shape == res.grad_norm.shape == (3,)
    assert res.n_forward == res.n_backward == 3 * 4
    assert res.mean("beta") == pytest.approx(float(np.dot(res.beta, [3, 4, 5]) / 12))
    assert res.mean("loss").shape == (3,)
    # Each row equals a direct probe of that batch.
    single = probe_batch(model, *batches[1], etas=[0.05, 0.1, 0.2], bn_mode="train", seed=1)
    assert np.array_equal(res.grad_diff[1], single.grad_diff)

    path = save_result(res, tmp_path / "ckpt.h5", attrs={"model": "tiny"})
    with h5py.File(path) as f:
        assert f.attrs["schema"] == "landscape.predictiveness/1"
        assert f.attrs["bn_mode"] == "train" and f.attrs["x_axis"] == "batch"
        shapes = {k: f[k].shape for k in ("step", "eta", "loss", "grad_diff", "beta", "train_loss", "grad_norm")}
    assert shapes == {"step": (3,), "eta": (3,), "loss": (3, 3), "grad_diff": (3, 3), "beta": (3,),
                      "train_loss": (3,), "grad_norm": (3,)}
    data = store.read(path)
    assert np.array_equal(data.beta, res.beta) and list(data.step) == [0, 1, 2]


def test_store_append_truncate_roundtrip(tmp_path):
    path = tmp_path / "p.h5"
    store.create(path, eta=[0.1, 0.2], attrs={"bn_mode": "train"})
    assert len(store.read(path).step) == 0
    for s in (0, 5, 10, 15):
        store.append(path, step=[s], loss=[[s, s + 1.0]], grad_diff=[[1.0, 2.0]], beta=[s / 10],
                     train_loss=[s], grad_norm=[1.0])
    assert store.truncate(path, before_step=10) == 2
    data = store.read(path)
    assert list(data.step) == [0, 5] and data.loss.shape == (2, 2) and data.beta.tolist() == [0.0, 0.5]
    assert data.attrs["bn_mode"] == "train"
    with pytest.raises(ValueError, match="disagree"):
        store.append(path, step=[1, 2], loss=[[1, 1]], grad_diff=[[1, 1]], beta=[1], train_loss=[1], grad_norm=[1])


def test_store_rejects_other_schema(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = "landscape.surface/1"
    with pytest.raises(LandscapeError, match=r"expected 'landscape\.predictiveness/1'"):
        store.read(path)


# ---------------------------------------------------------------- plots


def _fake_file(path, scale=1.0, eta=(0.05, 0.1, 0.2), bn_mode="train"):
    t = np.arange(0, 50, 5)
    eta = np.array(eta)
    loss = scale * (2.0 - 0.02 * t[:, None] + eta[None])
    store.write(path, eta=eta, step=t, loss=loss, grad_diff=scale * eta[None] * (1 + 0 * t[:, None]),
                beta=scale * np.ones(len(t)), train_loss=loss[:, 0], grad_norm=np.ones(len(t)),
                attrs={"model": f"m{scale}", "x_axis": "step", "bn_mode": bn_mode})
    return path


def test_compare_labels_each_curve_with_its_own_probe_settings(tmp_path, monkeypatch):
    from landscape.analyses.predictiveness import plot as plots
    from landscape.core.figure import PlotOptions

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, out, **kw: figures.append(fig))
    a, b = _fake_file(tmp_path / "a.h5"), _fake_file(tmp_path / "b.h5", 2.0)
    c = _fake_file(tmp_path / "c.h5", 2.0, eta=(0.01, 0.1), bn_mode="eval")
    plots.compare([a, b], labels=None, out=tmp_path / "ab.png", options=PlotOptions())
    plots.compare([a, c], labels=None, out=tmp_path / "ac.png", options=PlotOptions())
    same, differ = figures
    assert same.get_suptitle() == "η ∈ [0.05, 0.2] (3 steps), BN train mode while probing"
    assert "differ" in differ.get_suptitle()
    legend = [t.get_text() for t in differ.axes[0].get_legend().get_texts()]
    assert legend == ["m1.0 (η ∈ [0.05, 0.2] (3 steps), BN train mode while probing)",
                      "m2.0 (η ∈ [0.01, 0.1] (2 steps), BN eval mode while probing)"]


def test_plot_and_compare_write_files(tmp_path):
    from landscape.analyses.predictiveness import plot as plots
    from landscape.core.figure import PlotOptions

    a, b = _fake_file(tmp_path / "a.h5"), _fake_file(tmp_path / "b.h5", 2.0)
    plots.plot(a, out=tmp_path / "a.png", options=PlotOptions())
    plots.compare([a, b], labels=None, out=tmp_path / "ab.pdf", options=PlotOptions(log=True, title="x"))
    assert (tmp_path / "a.png").stat().st_size > 1000 and (tmp_path / "ab.pdf").stat().st_size > 1000
    store.create(tmp_path / "empty.h5", eta=[0.1])
    with pytest.raises(LandscapeError, match="no rows"):
        plots.plot(tmp_path / "empty.h5", out=tmp_path / "e.png", options=PlotOptions())


# ---------------------------------------------------------------- along training


def _train(out_dir, callbacks=(), epochs=2, resume=False):
    from landscape.training import train

    model = tiny_cnn(dtype=torch.float32)
    x, y = tiny_data(40, dtype=torch.float32, seed=2)
    train(model, (x, y), None, epochs=epochs, batch_size=8, lr=0.1, seed=3, out_dir=out_dir,
          callbacks=callbacks, resume=resume, progress=False)
    return model


def test_probing_leaves_training_bit_identical(tmp_path):
    plain = _train(tmp_path / "plain")
    probe = PredictivenessProbe(tmp_path / "probed" / "predictiveness.h5", every=3, etas=[0.05, 0.4],
                                attrs={"model": "tiny"})
    probed = _train(tmp_path / "probed", callbacks=[probe])
    for k, v in plain.state_dict().items():
        assert torch.equal(v, probed.state_dict()[k]), k
    data = store.read(tmp_path / "probed" / "predictiveness.h5")
    assert list(data.step) == [0, 3, 6, 9]  # 2 epochs × 5 steps
    assert data.loss.shape == data.grad_diff.shape == (4, 2)
    assert data.attrs["every"] == 3 and data.attrs["bn_mode"] == "train" and data.attrs["model"] == "tiny"
    assert np.all(np.isfinite(data.beta)) and np.all(data.grad_diff > 0)
    # β is the largest ratio over the grid, by definition.
    ratio = data.grad_diff / (data.eta[None] * data.grad_norm[:, None])
    np.testing.assert_allclose(data.beta, ratio.max(axis=1), rtol=1e-15)


class _Crash:
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step(self, ctx) -> None:
        if ctx.step == self.at:
            raise RuntimeError("simulated crash")


def test_resumed_run_continues_the_file(tmp_path):
    full = PredictivenessProbe(tmp_path / "full" / "p.h5", every=2, etas=[0.1, 0.3])
    _train(tmp_path / "full", callbacks=[full])
    path = tmp_path / "cut" / "p.h5"
    with pytest.raises(RuntimeError, match="simulated"):
        # Crash in epoch 2 after the probe of step 8: rows 6 and 8 are written, last.pt is from epoch 1.
        _train(tmp_path / "cut", callbacks=[PredictivenessProbe(path, every=2, etas=[0.1, 0.3]), _Crash(9)])
    assert list(store.read(path).step) == [0, 2, 4, 6, 8]
    with pytest.raises(LandscapeError, match="other settings"):
        _train(tmp_path / "cut", callbacks=[PredictivenessProbe(path, every=2, etas=[0.1, 0.2])], resume=True)
    _train(tmp_path / "cut", callbacks=[PredictivenessProbe(path, every=2, etas=[0.1, 0.3])], resume=True)
    a, b = store.read(tmp_path / "full" / "p.h5"), store.read(path)
    assert list(b.step) == [0, 2, 4, 6, 8]
    for name in ("loss", "grad_diff", "beta", "train_loss", "grad_norm"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_eval_mode_probe_recomputes_gradient(tmp_path):
    probe = PredictivenessProbe(tmp_path / "p.h5", every=4, etas=[1e-6], bn_mode="eval")
    _train(tmp_path / "run", callbacks=[probe], epochs=1)
    data = store.read(tmp_path / "p.h5")
    assert data.attrs["grad_source"] == "recomputed"
    # Consistent g: a tiny step changes the gradient by O(η), not by the train/eval difference.
    assert np.all(data.grad_diff[:, 0] < 1e-3 * data.grad_norm)


def test_probe_rows_count_only_when_committed(tmp_path):
    """A failed append (full disk) can leave datasets longer than the committed rows: readers, the next append
    and truncation see only committed rows."""
    import h5py

    from landscape.analyses.predictiveness import schema as store

    path = tmp_path / "p.h5"
    store.create(path, eta=[0.1, 0.2])
    row = {"loss": [[1.0, 2.0]], "grad_diff": [[0.1, 0.2]], "beta": [3.0], "train_loss": [1.5], "grad_norm": [2.0]}
    assert store.append(path, step=[0], **row) == 1
    with h5py.File(path, "a") as f:  # a torn second row: some datasets grew, the commit never happened
        for name in ("step", "loss"):
            f[name].resize(2, axis=0)
            f[name][1] = 99
    assert len(store.read(path).step) == 1
    assert store.append(path, step=[5], **{**row, "beta": [4.0]}) == 2
    data = store.read(path)
    assert data.step.tolist() == [0, 5] and data.beta.tolist() == [3.0, 4.0] and data.loss[1].tolist() == [1.0, 2.0]
    assert store.truncate(path, before_step=5) == 1
    assert store.read(path).step.tolist() == [0]
