import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape.analyses.surface.compute import (
    SurfaceSettings,
    compute_points,
    compute_surface,
    evaluate,
    recalibrate_bn,
)
from landscape.analyses.surface.directions import build_directions
from landscape.core import params
from landscape.core.grid import Axis, Grid, parse_axis
from landscape.errors import LandscapeError


def squared_error(out, y):
    return (out.reshape(-1) - y) ** 2


def _ls_problem(n=23, d=4, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randn(n, generator=g, dtype=dtype)
    torch.manual_seed(0)
    model = nn.Linear(d, 1, bias=False).to(dtype)
    return model, X, y


def _settings(xspec, yspec=None, **kw):
    base = dict(checkpoint="mem", checkpoint_sha256="0" * 64, model="test", dataset="test", split="train", seed=0,
                norm="filter", ignore="biasbn", dir_type="weights", direction="random", xspec=xspec, yspec=yspec,
                batch_size=5)
    base.update(kw)
    return SurfaceSettings(**base)


def _grid(xspec, yspec=None):
    return Grid(parse_axis(xspec), None if yspec is None else parse_axis(yspec))


def _dirs(model, s):
    w = params.get_tensors(model, dir_type=s.dir_type)
    return lambda: build_directions(s.direction, w, ndim=1 if s.yspec is None else 2, seed=s.seed, norm=s.norm,
                                    ignore=s.ignore)


@pytest.mark.parametrize("batch_size", [3, 4, 5, 23])
def test_least_squares_surface_is_the_closed_form(tmp_path, batch_size):
    """L(θ + a·dx + b·dy) = mean((r0 + a·X dx + b·X dy)²) exactly; a 3×4 grid checks the cell order too."""
    model, X, y = _ls_problem()
    s = _settings("-1:2:3", "-0.5:0:4", batch_size=batch_size, loss="mse")
    out = tmp_path / "ls.h5"
    compute_surface(model, X, y, out=out, grid=_grid(s.xspec, s.yspec), settings=s, directions=_dirs(model, s),
                    loss_fn=squared_error, progress=False)
    with h5py.File(out) as f:
        loss, stderr, done = f["train_loss"][()], f["train_loss_stderr"][()], f["done"][()]
        dx, dy = f["directions/x/weight"][()], f["directions/y/weight"][()]
        xs, ys = f["xcoordinates"][()], f["ycoordinates"][()]
        assert f.attrs["complete"] and f["n_evaluated"][()].min() == len(X)
    assert loss.shape == (3, 4) and done.all()
    Xn, yn, th = X.numpy(), y.numpy(), model.weight.detach().numpy().reshape(-1)
    for i, a in enumerate(xs):
        for j, b in enumerate(ys):
            r = Xn @ (th + a * dx.reshape(-1) + b * dy.reshape(-1)) - yn
            assert loss[i, j] == pytest.approx(np.mean(r**2), rel=1e-13)
            assert stderr[i, j] == pytest.approx(np.std(r**2, ddof=1) / np.sqrt(len(r)), rel=1e-10)


def _conv_bn_net():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 3))


def _cls_data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 5, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_centre_equals_checkpoint_loss_and_model_is_left_as_found(tmp_path):
    net = _conv_bn_net()
    x, y = _cls_data()
    with torch.no_grad():  # make the BN statistics non-trivial
        net[1].running_mean.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(2))
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    s = _settings("-1:1:3", "-1:1:5", batch_size=7, dir_type="states")
    compute_surface(net, x, y, out=tmp_path / "c.h5", grid=_grid(s.xspec, s.yspec), settings=s,
                    directions=_dirs(net, s), progress=False)
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    net.eval()
    with torch.no_grad():
        out = net(x)
        ref_loss = F.cross_entropy(out, y).item()
        ref_acc = (out.argmax(1) == y).double().mean().item()
    with h5py.File(tmp_path / "c.h5") as f:
        assert f["train_loss"][1, 2] == pytest.approx(ref_loss, rel=1e-6)
        assert f["train_acc"][1, 2] == pytest.approx(ref_acc, abs=1e-12)
        assert not np.isclose(f["train_loss"][0, 0], ref_loss)


def test_mixed_modes_and_frozen_parameters_are_restored_also_when_the_loss_raises():
    net = _conv_bn_net()
    x, y = _cls_data()
    net.train()
    net[1].eval()  # a frozen BN inside a training model: per-module flags, not one model-wide flag
    net[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]
    s = _settings("-1:1:3", batch_size=7)
    w = params.get_tensors(net, dir_type="weights")
    dirs = [build_directions("random", w, ndim=1, seed=0).x]
    seen = []

    def loss_fn(out, t):
        seen.append([m.training for m in net.modules()])
        if len(seen) == 8:  # the second point, half evaluated
            raise RuntimeError("boom")
        return F.cross_entropy(out, t, reduction="none")

    points = compute_points(net, range(3), grid=_grid(s.xspec), base=w, directions=dirs, inputs=x, targets=y,
                            batch_size=7, loss_fn=loss_fn)
    with pytest.raises(RuntimeError, match="boom"):
        list(points)
    assert all(not any(flags) for flags in seen)  # every module in eval mode while evaluating
    assert [m.training for m in net.modules()] == modes
    assert not net[0].weight.requires_grad and net[5].weight.requires_grad
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_recalibration_is_a_size_weighted_mean():
    net = _conv_bn_net()
    x, _ = _cls_data(n=12)
    recalibrate_bn(net, x, batch_size=5)  # batches 5, 5, 2
    with torch.no_grad():
        feats = net[0](x)
    torch.testing.assert_close(net[1].running_mean, feats.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    per_batch = [feats[i:i + 5].transpose(0, 1).reshape(4, -1).var(dim=1) for i in (0, 5, 10)]
    weights = torch.tensor([5.0, 5.0, 2.0]) / 12
    torch.testing.assert_close(net[1].running_var, sum(w * v for w, v in zip(weights, per_batch)))
    assert not net[1].training and net[1].momentum == 0.1


def test_recalibrate_mode_runs_and_restores(tmp_path):
    net = _conv_bn_net()
    x, y = _cls_data()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    s = _settings("-0.5:0.5:3", bn="recalibrate", recalibration_samples=12)
    compute_surface(net, x, y, out=tmp_path / "r.h5", grid=_grid(s.xspec), settings=s, directions=_dirs(net, s),
                    recal_inputs=x[:12], progress=False)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with h5py.File(tmp_path / "r.h5") as f:
        assert f.attrs["bn"] == "recalibrate" and f["done"][()].all()
    with pytest.raises(LandscapeError, match="states"):
        compute_surface(net, x, y, out=tmp_path / "r2.h5", grid=_grid("0:1:2"),
                        settings=_settings("0:1:2", bn="recalibrate", dir_type="states"), directions=_dirs(net, s),
                        recal_inputs=x, progress=False)


def test_diverged_points_are_stored_and_done(tmp_path):
    model, X, y = _ls_problem(dtype=torch.float32)
    s = _settings("0:1e30:3", norm="none", loss="mse")
    compute_surface(model, X, y, out=tmp_path / "d.h5", grid=_grid(s.xspec), settings=s, directions=_dirs(model, s),
                    loss_fn=squared_error, progress=False)
    with h5py.File(tmp_path / "d.h5") as f:
        loss = f["train_loss"][()]
        assert f["done"][()].all() and np.isfinite(loss[0]) and not np.isfinite(loss[1:]).any()


def test_adaptive_precision_honest_error_bars():
    """Stopping at stderr < EPS over one seeded order: the full-data loss lies within 3 stderr at >= 99% of points."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4000, 8, generator=g)
    y = (x[:, :3].argmax(1) + (torch.rand(4000, generator=g) < 0.2).long()) % 3
    w = params.get_tensors(model)
    ds = build_directions("random", w, ndim=2, seed=1)
    grid = Grid(Axis(-1, 1, 11), Axis(-1, 1, 11))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    xs, ys = x[order], y[order]
    kw = dict(grid=grid, base=w, directions=[ds.x, ds.y], inputs=xs, targets=ys, batch_size=50)
    full = list(compute_points(model, range(grid.size), **kw))
    fast = list(compute_points(model, range(grid.size), precision_target=0.02, min_samples=500, **kw))
    z = np.array([abs(a.loss - b.loss) / a.stderr for a, b in zip(fast, full)])
    assert np.mean(z < 3) >= 0.99
    assert all(a.stderr < 0.02 or a.n == len(x) for a in fast)
    assert all(a.n >= 500 for a in fast)
    assert sum(a.n for a in fast) < 0.5 * sum(b.n for b in full)
    for b in full:  # the full pass reports s/sqrt(N), no finite-population correction
        assert b.n == len(x) and b.stderr > 0
    loss, _, se, n = evaluate(model, xs, ys, batch_size=50)
    assert (loss, se, n) == (full[grid.size // 2].loss, full[grid.size // 2].stderr, full[grid.size // 2].n)


def test_adaptive_error_bars_cover_over_sample_orders():
    """Within one run all points share one order, so their misses are one event; coverage is a probability over
    orders. Replayed over 400 seeded orders of heavy-tailed per-sample losses, the stopping rule's 3-stderr bars
    must contain the full-data loss at least 99% of the time, while stopping well before N."""
    n_total = 50_000
    u = torch.rand(n_total, generator=torch.Generator().manual_seed(0)).clamp_min(1e-12)
    losses = (0.05 * torch.log(u) ** 2).double()  # skewed like cross-entropy: mostly small, a long right tail
    full = float(losses.mean())
    z, used = [], []
    for k in range(400):
        order = torch.randperm(n_total, generator=torch.Generator().manual_seed(k))
        loss, _, se, n = evaluate(nn.Identity(), losses[order], torch.zeros(n_total), batch_size=100,
                                  loss_fn=lambda out, _t: out, precision_target=3e-3, min_samples=1000)
        z.append(abs(loss - full) / se)
        used.append(n)
    assert np.mean(used) < n_total / 5
    assert np.mean(np.array(z) < 3) >= 0.99


def _same_files(a, b):
    with h5py.File(a) as fa, h5py.File(b) as fb:
        names = []
        fa.visit(names.append)
        for name in names:
            if isinstance(fa[name], h5py.Dataset) and name != "point_seconds":
                np.testing.assert_array_equal(fa[name][()], fb[name][()], err_msg=name)
        skip = {"compute_seconds"}
        assert {k: str(v) for k, v in fa.attrs.items() if k not in skip} == {
            k: str(v) for k, v in fb.attrs.items() if k not in skip}


def _run(out, s, callback=None, overwrite=False):
    net = _conv_bn_net()
    x, y = _cls_data()
    return compute_surface(net, x, y, out=out, grid=_grid(s.xspec, s.yspec), settings=s, directions=_dirs(net, s),
                           progress=False, callback=callback, overwrite=overwrite)


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    s = _settings("-1:1:4", "0:1:3", precision_target=0.5, min_samples=10, batch_size=6)
    _run(tmp_path / "full.h5", s)

    class Stop(Exception):
        pass

    def stop_after(k):
        seen = []

        def cb(r):
            seen.append(r)
            if len(seen) == k:
                raise Stop
        return cb

    part = tmp_path / "part.h5"
    with pytest.raises(Stop):
        _run(part, s, callback=stop_after(5))
    with h5py.File(part) as f:
        assert f["done"][()].sum() == 5 and not f.attrs["complete"]
        assert np.isnan(f["train_loss"][()][~f["done"][()]]).all()
    res = _run(part, s)
    assert res.n_computed == 7
    _same_files(part, tmp_path / "full.h5")
    assert _run(part, s).n_computed == 0  # a finished file: nothing left to do


def test_mismatched_resume_is_refused(tmp_path):
    out = tmp_path / "m.h5"
    s = _settings("-1:1:3")
    _run(out, s)
    for change, key in [(dict(seed=1), "seed"), (dict(xspec="-1:1:5"), "xspec"), (dict(norm="layer"), "norm"),
                        (dict(yspec="0:1:2"), "yspec"), (dict(checkpoint_sha256="1" * 64), "checkpoint_sha256")]:
        s2 = _settings(**{**dict(xspec="-1:1:3"), **change})
        with pytest.raises(LandscapeError, match=key) as err:
            _run(out, s2)
        assert "overwrite=True" in str(err.value) and "\n" not in str(err.value)
    s3 = _settings("-1:1:3", seed=1)
    assert _run(out, s3, overwrite=True).n_computed == 3


_CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    import test_compute as t
    def cb(r):
        print("point", flush=True)
        time.sleep(0.02)
    t._run({out!r}, t._settings("-1:1:6", "-1:1:5", batch_size=6), callback=cb)
""")


def test_sigkill_never_leaves_a_complete_looking_file(tmp_path):
    ref = tmp_path / "ref.h5"
    s = _settings("-1:1:6", "-1:1:5", batch_size=6)
    _run(ref, s)
    out = tmp_path / "k.h5"
    code = _CHILD.format(tests=os.path.dirname(__file__), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    for _ in range(9):
        assert proc.stdout.readline().startswith("point")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with h5py.File(out) as f:
        done = f["done"][()]
        assert not f.attrs["complete"] and 9 <= done.sum() < done.size
        assert np.isfinite(f["train_loss"][()][done]).all()
    _run(out, s)
    _same_files(out, ref)


def test_flatness_of_an_exact_quadratic():
    from landscape.analyses.surface.compute import flatness

    x = np.linspace(-1, 1, 21)
    f1 = 0.3 + 0.5 * 4.0 * x**2
    flat = flatness(x, None, f1, fractions=(0.5, 1.0))
    assert flat["centre_loss"] == pytest.approx(0.3)
    assert flat["rise_mean"] == pytest.approx([0.5 * 4.0 * 0.25, 0.5 * 4.0])
    assert flat["curvature"] == pytest.approx([4.0])
    y = np.linspace(-0.5, 1.0, 16)
    H = np.array([[3.0, 1.0], [1.0, 2.0]])
    A, B = np.meshgrid(x, y, indexing="ij")
    f2 = 1.0 + 0.2 * A - 0.1 * B + 0.5 * (H[0, 0] * A**2 + 2 * H[0, 1] * A * B + H[1, 1] * B**2)
    flat = flatness(x, y, f2)
    assert flat["curvature"] == pytest.approx(sorted(np.linalg.eigvalsh(H)), rel=1e-9)
    r = flat["radii"][-1]
    assert r == 0.5
    # mean rise over a circle: ½ r² tr(H) / 2 (linear terms average out); bilinear interpolation error <= h²·‖H‖
    assert flat["rise_mean"][-1] == pytest.approx(0.25 * r**2 * np.trace(H), abs=0.1**2 * 4)
    assert "note" in flatness(np.linspace(0.5, 1, 3), None, np.ones(3))
    # 0 inside the range but not a grid point: no interpolated "centre loss" (it would not be the checkpoint's)
    x4 = np.linspace(-1, 1, 4)
    assert "no point at the centre" in flatness(x4, None, 0.3 + x4**2)["note"]
    # np.linspace's near-zero (here 1.1e-16) is the centre; a diverged neighbour leaves the centre loss exact
    x95 = np.linspace(-3, 3, 95)
    assert 0 < np.abs(x95).min() < 1e-15
    f = 0.3 + x95**2
    f[48] = np.inf
    flat = flatness(x95, None, f, fractions=(0.01, 1.0))
    assert flat["centre_loss"] == pytest.approx(0.3 + x95[47] ** 2)
    assert np.isfinite(flat["rise_mean"][-1]) and flat["rise_max"][-1] == pytest.approx(9.0 - x95[47] ** 2)
