"""``Predictiveness``: the result type, ``compute``/``landscape.predictiveness`` against a closed form and the CLI
file, save/load round trips, old files, training probe files and ``.plot(ax)``."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import landscape
from landscape.analyses.predictiveness.compute import (
    PredictivenessProbe,
    probe_checkpoint,
    sample_batches,
    save_result,
)
from landscape.analyses.predictiveness.result import Predictiveness, compute
from landscape.cli import main
from landscape.core.provenance import Provenance, weights_sha256
from landscape.core.store import _attr_value
from landscape.errors import LandscapeError
from landscape.training import seeded_model

ARRAYS = ("eta", "step", "loss", "grad_diff", "beta", "train_loss", "grad_norm")


def assert_same_arrays(a, b) -> None:
    for name in ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name


def as_stored(attrs: dict) -> dict:
    """What the file gives back for ``attrs`` (None as "null", containers as JSON text)."""
    return {k: _attr_value(v) for k, v in attrs.items()}


def assert_same_attrs(a: dict, b: dict) -> None:
    assert set(a) == set(b), set(a) ^ set(b)
    for k in a:
        if isinstance(a[k], np.ndarray) or isinstance(b[k], np.ndarray):
            assert np.array_equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


def tiny_bn_net(dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.3),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 4)).to(dtype)


def tiny_data(n: int = 24, dtype=torch.float64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 6, 6, generator=g).to(dtype), torch.randint(4, (n,), generator=g)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "net.pt"
    model = seeded_model("resnet8", num_classes=10, in_channels=1, seed=0, width=0.5)
    landscape.save_checkpoint(path, model, {"dataset": "digits", "step": 7, "epoch": 1})
    return path


# ---------------------------------------------------------------- closed form: softmax regression


def _softmax_ce(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean cross-entropy of a linear classifier and its gradient, by hand (no autograd)."""
    z = x @ w.T + b
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = len(y)
    loss = float(-np.log(p[np.arange(n), y]).mean())
    d = p.copy()
    d[np.arange(n), y] -= 1.0
    d /= n
    return loss, d.T @ x, d.sum(axis=0)


def test_one_call_matches_the_closed_form_and_leaves_the_model_as_found():
    torch.manual_seed(3)
    net = nn.Linear(5, 3).double()
    x = torch.randn(8, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    y = torch.tensor([0, 1, 2, 0, 1, 2, 1, 1])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    eta = 0.7
    r = landscape.predictiveness(net, (x, y), n_batches=1, batch_size=8, eta=[eta])
    assert isinstance(r, Predictiveness) and r.path == ""
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())

    w, b = net.weight.detach().numpy(), net.bias.detach().numpy()
    xs, ys = x.numpy(), y.numpy()
    loss0, gw, gb = _softmax_ce(w, b, xs, ys)
    loss1, gw1, gb1 = _softmax_ce(w - eta * gw, b - eta * gb, xs, ys)
    g_norm = np.sqrt((gw ** 2).sum() + (gb ** 2).sum())
    diff = np.sqrt(((gw1 - gw) ** 2).sum() + ((gb1 - gb) ** 2).sum())
    assert r.eta.tolist() == [eta] and r.step.tolist() == [0]
    np.testing.assert_allclose(r.train_loss, [loss0], rtol=1e-12)
    np.testing.assert_allclose(r.loss, [[loss1]], rtol=1e-12)
    np.testing.assert_allclose(r.loss_variation, [[loss1 - loss0]], rtol=1e-10)
    np.testing.assert_allclose(r.grad_norm, [g_norm], rtol=1e-12)
    np.testing.assert_allclose(r.grad_diff, [[diff]], rtol=1e-10)
    np.testing.assert_allclose(r.beta, [diff / (eta * g_norm)], rtol=1e-10)
    assert r.mean("beta") == r.beta[0]
    # A per-sample loss function gives the same numbers (the probe takes their mean).
    per_sample = landscape.predictiveness(net, (x, y), n_batches=1, batch_size=8, eta=[eta],
                                          loss_fn=lambda out, t: F.cross_entropy(out, t, reduction="none"))
    np.testing.assert_allclose(per_sample.grad_diff, r.grad_diff, rtol=1e-12)
    np.testing.assert_allclose(per_sample.loss, r.loss, rtol=1e-12)


def test_model_left_as_found_parameters_buffers_and_per_module_modes():
    net, (x, y) = tiny_bn_net(), tiny_data()
    net[6].bias.requires_grad_(False)
    net.eval()
    net[1].train()  # mixed per-module modes come back exactly
    state = {k: v.clone() for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]
    grads = [p.requires_grad for p in net.parameters()]
    rng = torch.get_rng_state()
    for bn in ("train", "eval"):
        r = landscape.predictiveness(net, (x, y), n_batches=3, batch_size=5, eta="0.1:0.3:3", bn=bn)
        assert r.loss.shape == (3, 3) and r.attrs["bn_mode"] == bn and r.batch_sizes.tolist() == [5, 5, 5]
        assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
        assert [m.training for m in net.modules()] == modes
        assert [p.requires_grad for p in net.parameters()] == grads
        assert torch.equal(torch.get_rng_state(), rng)


def test_scalar_loss_is_refused_and_the_model_is_left_as_found():
    net, (x, y) = tiny_bn_net(), tiny_data()
    net.eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(LandscapeError, match=r"loss_fn returned shape \(\) for a batch of 6; .* shape \(B,\)"):
        landscape.predictiveness(net, (x, y), n_batches=2, batch_size=6, eta=[0.1], loss_fn=F.cross_entropy)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert not any(m.training for m in net.modules())


def test_options_are_checked_and_name_the_arguments():
    net, (x, y) = tiny_bn_net(), tiny_data()
    for options, fragment in [({"eta": "0.1:0.4"}, "eta='0.1:0.4' is not MIN:MAX:NUM"),
                              ({"eta": "0.1,x"}, "eta='0.1,x' is not MIN:MAX:NUM"),
                              ({"eta": [0.1, -1.0]}, "eta: step size η=-1 is not positive"),
                              ({"eta": "abc"}, "MIN:MAX:NUM"),
                              ({"bn": "batch"}, "bn='batch'"),
                              ({"n_batches": 0}, "n_batches=0"),
                              ({"n_batches": 5, "batch_size": 6}, "lower n_batches= or batch_size="),
                              ({"device": "meta"}, "device='meta' but the model is on cpu"),
                              ({"threads": 0}, "threads=0")]:
        with pytest.raises(LandscapeError, match=fragment):
            landscape.predictiveness(net, (x, y), **{"n_batches": 1, "batch_size": 4, **options})
    # A spec and the same values as a sequence give the same result.
    a = landscape.predictiveness(net, (x, y), n_batches=2, batch_size=4, eta="0.1:0.3:3")
    b = landscape.predictiveness(net, (x, y), n_batches=2, batch_size=4, eta=np.array([0.1, 0.2, 0.3]))
    assert_same_arrays(a, b)


# ---------------------------------------------------------------- the CLI writes what compute returns


def test_compute_equals_the_cli_file(ckpt, tmp_path):
    out = tmp_path / "p.h5"
    res = CliRunner().invoke(main, ["predictiveness", str(ckpt), "--batches", "3", "--batch-size", "16", "--eta",
                                    "0.1:0.3:3", "--device", "cpu", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    from_cli = landscape.load(out)
    assert isinstance(from_cli, Predictiveness) and from_cli.path == str(out)
    model, meta = landscape.load_checkpoint(ckpt)
    x, y = landscape.load_dataset("digits", split="train", seed=0)
    r = compute(model, x, y, n_batches=3, batch_size=16, eta="0.1:0.3:3", dataset="digits", split="train",
                subset=False, checkpoint_meta=meta)
    assert_same_arrays(r, from_cli)
    assert from_cli.attrs["schema"] == "landscape.predictiveness/1" and "n_rows" not in from_cli.attrs
    mine = as_stored({k: v for k, v in r.attrs.items() if k != "seconds"})
    assert_same_attrs(mine, {k: v for k, v in from_cli.attrs.items() if k not in ("seconds", "schema")})
    assert from_cli.attrs["checkpoint"] == str(ckpt) and from_cli.attrs["checkpoint_step"] == 7
    assert from_cli.provenance.weights_sha256 == weights_sha256(model)
    # The first row is the probe of the first seeded batch, as the engine computes it.
    batches = sample_batches(x, y, n_batches=3, batch_size=16, seed=0)
    engine = probe_checkpoint(model, batches, etas=[0.1, 0.2, 0.3], seed=0)
    assert np.array_equal(engine.grad_diff, from_cli.grad_diff) and np.array_equal(engine.beta, from_cli.beta)


# ---------------------------------------------------------------- save / load


def test_save_load_round_trip_and_overwrite_refusal(tmp_path):
    net, (x, y) = tiny_bn_net(), tiny_data()
    r = landscape.predictiveness(net, (x, y), n_batches=3, batch_size=4, eta=[0.05, 0.2], seed=2)
    path = tmp_path / "r.h5"
    saved = r.save(path)
    assert saved.path == str(path) and isinstance(landscape.load(path), Predictiveness)
    assert_same_arrays(r, saved)
    assert_same_attrs({**as_stored(r.attrs), "schema": "landscape.predictiveness/1"}, saved.attrs)
    again = saved.save(tmp_path / "again.h5")
    assert_same_arrays(saved, again)
    assert_same_attrs(saved.attrs, again.attrs)
    assert again.provenance == saved.provenance == Provenance.from_attrs(r.attrs)
    assert again.provenance.weights_sha256 == weights_sha256(net) and again.provenance.seed == 2

    # Read-only arrays, frozen fields.
    with pytest.raises(ValueError, match="read-only"):
        r.beta[0] = 1.0
    with pytest.raises(AttributeError):
        r.beta = np.zeros(3)  # type: ignore[misc]

    # An existing file is refused unless overwrite=True, by save and by out= (before any work).
    before = path.read_bytes()
    with pytest.raises(LandscapeError, match="exists; pass overwrite=True"):
        r.save(path)
    with pytest.raises(LandscapeError, match="exists; pass overwrite=True"):
        landscape.predictiveness(net, (x, y), n_batches=3, batch_size=4, eta=[0.05, 0.2], out=path)
    assert path.read_bytes() == before
    other = landscape.predictiveness(net, (x, y), n_batches=2, batch_size=4, eta=[0.1], out=path, overwrite=True)
    assert other.path == str(path) and landscape.load(path).loss.shape == (2, 1)


def test_files_of_today_and_older_writers_load(tmp_path):
    net, (x, y) = tiny_bn_net(), tiny_data()
    batches = sample_batches(x, y, n_batches=2, batch_size=5, seed=0)
    res = probe_checkpoint(net, batches, etas=[0.1, 0.2], seed=0)
    path = save_result(res, tmp_path / "today.h5", attrs={"model": "tiny"})  # the writer before Predictiveness
    r = landscape.load(path)
    assert isinstance(r, Predictiveness)
    for name in ("loss", "grad_diff", "beta", "train_loss", "grad_norm"):
        assert np.array_equal(getattr(r, name), getattr(res, name)), name
    assert r.step.tolist() == [0, 1] and r.attrs["model"] == "tiny" and r.batch_sizes.tolist() == [5, 5]
    assert r.mean("beta") == res.mean("beta")

    # Schema /1 from before the row commit (no n_rows) and the provenance record: plain datasets, few attributes.
    old = tmp_path / "old.h5"
    with h5py.File(old, "w") as f:
        f.attrs.update({"schema": "landscape.predictiveness/1", "library_version": "0.1.0", "bn_mode": "train",
                        "source": "checkpoint", "x_axis": "batch"})
        f["eta"] = [0.1, 0.2]
        f["step"] = np.arange(2)
        f["loss"] = [[1.0, 2.0], [3.0, 4.0]]
        f["grad_diff"] = [[0.1, 0.2], [0.3, 0.4]]
        f["beta"] = [1.5, 2.5]
        f["train_loss"] = [0.5, 0.6]
        f["grad_norm"] = [2.0, 3.0]
    r = landscape.load(old)
    assert r.loss.tolist() == [[1.0, 2.0], [3.0, 4.0]] and r.beta.tolist() == [1.5, 2.5]
    assert r.batch_sizes is None and r.mean("beta") == 2.0  # equal weights where the sizes are unknown
    assert r.provenance.weights_sha256 == "unknown" and r.attrs["library_version"] == "0.1.0"


def test_training_probe_file_loads_with_the_provenance_of_the_start_weights(tmp_path):
    from landscape.training import train

    net, (x, y) = tiny_bn_net(torch.float32), tiny_data(40, torch.float32, seed=2)
    start = weights_sha256(net)
    probe = PredictivenessProbe(tmp_path / "run" / "predictiveness.h5", every=2, etas=[0.1, 0.3],
                                attrs={"model": "tiny", "dataset": "synthetic", "seed": 3})
    train(net, (x, y), None, epochs=1, batch_size=8, lr=0.1, seed=3, out_dir=tmp_path / "run", callbacks=[probe],
          progress=False)
    r = landscape.load(tmp_path / "run" / "predictiveness.h5")
    assert isinstance(r, Predictiveness) and r.attrs["x_axis"] == "step" and r.step.tolist() == [0, 2, 4]
    assert r.batch_sizes is None and r.loss.shape == (3, 2)
    record = r.provenance
    assert record.weights_sha256 == start != weights_sha256(net)  # the weights training started from
    assert record.model == "tiny" and record.dataset == "synthetic" and record.seed == 3 and record.split == "train"
    assert record.threads == torch.get_num_threads() and record.device == "cpu" and record.dtype == "float32"
    assert r.attrs["start_step"] == 0 and r.attrs["every"] == 2


# ---------------------------------------------------------------- plots


def _result(rows: int = 4) -> Predictiveness:
    eta = np.array([0.1, 0.2, 0.4])
    step = np.arange(rows) * 5
    loss = 2.0 - 0.1 * step[:, None] + eta[None] ** 2
    return Predictiveness(eta=eta, step=step, loss=loss, grad_diff=eta[None] * (1 + step[:, None]),
                          beta=1.0 + step / 10, train_loss=loss[:, 0] - 0.05, grad_norm=np.ones(rows),
                          attrs={"x_axis": "step", "bn_mode": "train", "model": "m"})


def test_plot_draws_the_stored_arrays_on_the_given_axes():
    import matplotlib.pyplot as plt

    r = _result()
    _fig, axes = plt.subplots(1, 3)
    assert r.plot(axes[0]) is axes[0]
    lo, hi = axes[0].lines
    assert np.array_equal(lo.get_xydata(), np.c_[r.step, r.loss.min(axis=1)])
    assert np.array_equal(hi.get_xydata(), np.c_[r.step, r.loss.max(axis=1)])
    assert len(axes[0].collections) == 1  # the band between them
    assert axes[0].get_xlabel() == "training step" and "L(W − ηg)" in axes[0].get_ylabel()
    r.plot(axes[1], metric="grad_diff", log=True)
    assert np.array_equal(axes[1].lines[1].get_xydata(), np.c_[r.step, r.grad_diff.max(axis=1)])
    assert axes[1].get_yscale() == "log"
    r.plot(axes[2], metric="beta", title="β here")
    (line,) = axes[2].lines
    assert np.array_equal(line.get_xydata(), np.c_[r.step, r.beta]) and axes[2].get_title() == "β here"
    new = r.plot()
    assert new not in axes and len(new.lines) == 2
    with pytest.raises(LandscapeError, match="metric='acc'"):
        r.plot(metric="acc")
    empty = Predictiveness(eta=[0.1], step=np.zeros(0), loss=np.zeros((0, 1)), grad_diff=np.zeros((0, 1)),
                           beta=[], train_loss=[], grad_norm=[])
    with pytest.raises(LandscapeError, match="no rows"):
        empty.plot()
    plt.close("all")


def test_plot_command_and_plot_method_draw_the_same(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from landscape.analyses.predictiveness import plot as plots
    from landscape.core.figure import PlotOptions

    saved = _result().save(tmp_path / "r.h5")
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, out, **kw: figures.append(fig))
    plots.plot(saved.path, out=tmp_path / "r.png", options=PlotOptions())
    (fig,) = figures
    for panel, metric in zip(fig.axes, ("loss", "grad_diff", "beta")):
        ax = saved.plot(metric=metric)
        assert [ln.get_xydata().tolist() for ln in ax.lines] == [ln.get_xydata().tolist() for ln in panel.lines]
        assert ax.get_ylabel() == panel.get_ylabel() and ax.get_xlabel() == panel.get_xlabel()
    plt.close("all")
