"""``InputSpace``: compute in memory, the one-call API, save/load, old files, plots on a given Axes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import landscape
from landscape import load_checkpoint, load_dataset, save_checkpoint
from landscape.analyses.inputspace.result import InputSpace, compute
from landscape.analyses.inputspace.schema import REQUIRED
from landscape.cli import main  # mounts every command
from landscape.errors import LandscapeError
from landscape.training import seeded_model

ARRAYS = sorted({k for keys in REQUIRED.values() for k in keys})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "resnet8.pt"
    save_checkpoint(path, seeded_model("resnet8", num_classes=10, in_channels=1, seed=0, width=0.5),
                    {"dataset": "digits"})
    return path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _tiny() -> nn.Module:
    """A float64 MLP with BatchNorm, in train mode except one module, with non-trivial running statistics."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(9, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)).double()
    with torch.no_grad():
        model[2].running_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0, 0.5], dtype=torch.float64))
        model[2].running_var.copy_(torch.tensor([1.5, 0.5, 2.0, 1.0, 0.7], dtype=torch.float64))
    model.train()
    model[3].eval()  # a mixed set of per-module modes, to be restored as it was
    model[1].bias.requires_grad_(False)
    return model


def _data(n: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn((n, 1, 3, 3), generator=g, dtype=torch.float64), torch.arange(n) % 3


def _same(a: InputSpace, b: InputSpace) -> None:
    assert a.mode == b.mode
    for key in ARRAYS:
        x, y = getattr(a, key), getattr(b, key)
        assert (x is None) == (y is None), key
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=key)
            assert x.dtype == y.dtype, key


def _as_stored(value):
    """What an attribute reads back as: None as "null", containers as JSON text."""
    if value is None:
        return "null"
    return json.dumps(value) if isinstance(value, (dict, list)) else value


# ------------------------------------------------------------------------------------------- the one-call API


def test_one_call_matches_hand_computed_loss_and_leaves_the_model_as_found():
    model = _tiny()
    x, y = _data()
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    radius = [0.0, 0.5, 1.5]
    r = landscape.inputspace(model, (x, y), mode="around", directions="gradient", radius=radius, batch_size=3)
    assert isinstance(r, InputSpace) and r.mode == "around" and r.path == ""
    assert r.loss.shape == (5, 1, 3) and not r.loss.flags.writeable
    # Model as found: values (parameters and BN buffers), per-module modes, requires_grad, no gradients left.
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [(m, m.training) for m in model.modules()] == modes
    assert [(p, p.requires_grad) for p in model.parameters()] == grads
    assert all(p.grad is None for p in model.parameters())
    # By hand, in eval mode: d = ∇ₓ CE / ‖∇ₓ CE‖ of each sample on its own, then the loss at x + r·d.
    ref = _tiny().eval()
    for s in range(5):
        xs = x[s:s + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(ref(xs), y[s:s + 1]), xs)
        d = g / g.norm()
        assert r.grad_norm[s] == pytest.approx(g.norm().item(), rel=1e-12)
        for k, rad in enumerate(radius):
            with torch.no_grad():
                want = nn.functional.cross_entropy(ref(x[s:s + 1] + rad * d), y[s:s + 1]).item()
            assert r.loss[s, 0, k] == pytest.approx(want, rel=1e-12, abs=1e-14)
    np.testing.assert_array_equal(r.radius, radius)
    np.testing.assert_array_equal(r.target, y.numpy())
    assert r.stats is not None and r.stats.lipschitz.shape == (5, 1)
    assert r.attrs["mode"] == "around" and r.attrs["directions"] == "gradient" and r.attrs["n_samples"] == 5
    assert r.attrs["weights_sha256"] == landscape.core.provenance.weights_sha256(model)
    assert r.attrs["dataset"] is None and r.attrs["split"] is None  # tensors given: no dataset or split to claim


def test_grids_as_specs_or_sequences_and_options_of_another_mode():
    model = _tiny()
    x, y = _data(8)
    a = landscape.inputspace(model, (x, y), mode="noise", sigma="0:1:3", draws=2)
    b = landscape.inputspace(model, (x, y), mode="noise", sigma=[0.0, 0.5, 1.0], draws=2)
    _same(a, b)
    assert a.loss.shape == a.acc.shape == (2, 3) and a.stats is None
    with torch.no_grad():
        clean = nn.functional.cross_entropy(_tiny().eval()(x), y).item()
    np.testing.assert_allclose(a.loss[:, 0], clean, rtol=1e-12)  # σ = 0 is the clean loss
    with pytest.raises(LandscapeError, match=r"radius= applies to mode='around' only, not mode='between'"):
        landscape.inputspace(model, (x, y), mode="between", radius="0:1:3")
    with pytest.raises(LandscapeError, match="radius='0:1' is not MIN:MAX:NUM"):
        landscape.inputspace(model, (x, y), radius="0:1")
    with pytest.raises(LandscapeError, match=r"radius=\[1.0\] needs at least 2 finite values"):
        landscape.inputspace(model, (x, y), radius=[1.0])
    with pytest.raises(LandscapeError, match=r"sigma=\[-1.0, 0.0\] must be ≥ 0"):
        landscape.inputspace(model, (x, y), mode="noise", sigma=[-1.0, 0.0])
    with pytest.raises(LandscapeError, match="steps=1 must be at least 2"):
        landscape.inputspace(model, (x, y), mode="between", steps=1)


# ------------------------------------------------------------------------------------------- files


def test_save_load_round_trip_and_overwrite_refusal(tmp_path):
    model = _tiny()
    x, y = _data(12)
    r = landscape.inputspace(model, (x, y), mode="between", pairs=4, steps=5, seed=3)
    path = tmp_path / "b.h5"
    saved = r.save(path)
    assert saved.path == str(path) and saved.attrs["schema"] == "landscape.inputspace/1"
    loaded = landscape.load(path)
    assert isinstance(loaded, InputSpace) and loaded.path == str(path)
    _same(r, saved)
    _same(saved, loaded)
    assert loaded.attrs == saved.attrs
    assert {k: saved.attrs[k] for k in r.attrs} == {k: _as_stored(v) for k, v in r.attrs.items()}
    assert not loaded.loss.flags.writeable and loaded.same_class.dtype == bool
    # An existing file is refused unless overwrite=True, and is left as it was.
    size = path.stat().st_size
    path.write_bytes(b"keep")
    with pytest.raises(LandscapeError, match="exists; pass overwrite=True"):
        r.save(path)
    with pytest.raises(LandscapeError, match="exists; pass overwrite=True"):
        landscape.inputspace(model, (x, y), mode="between", pairs=4, steps=5, out=path)
    assert path.read_bytes() == b"keep"
    assert r.save(path, overwrite=True).path == str(path) and path.stat().st_size == size
    again = landscape.inputspace(model, (x, y), mode="between", pairs=4, steps=5, seed=3, out=path, overwrite=True)
    _same(r, again)


def test_old_file_loads(tmp_path):
    """A /1 file as the writer wrote it before results existed: only the settings, no provenance record."""
    from landscape.analyses.inputspace.compute import noise_robustness, result_attrs, to_arrays
    from landscape.analyses.inputspace.schema import write_inputspace

    x, y = _data(6)
    res = noise_robustness(_tiny(), x, y, sigmas=[0.0, 0.5], draws=2, seed=1)
    path = tmp_path / "old.h5"
    write_inputspace(path, mode="noise", arrays=to_arrays(res),
                     attrs={**result_attrs(res), "checkpoint": "/x/final.pt", "checkpoint_sha256": "ab" * 32,
                            "model": "resnet8", "model_options": None, "dataset": "digits", "data_dir": None,
                            "split": "test", "batch_size": 256, "label": "resnet8", "subset": True})
    r = landscape.load(path)
    assert isinstance(r, InputSpace) and r.mode == "noise"
    np.testing.assert_array_equal(r.sigma, [0.0, 0.5])
    np.testing.assert_array_equal(r.loss, res.loss)
    np.testing.assert_array_equal(r.acc, res.acc)
    assert r.radius is None and r.attrs["draws"] == 2 and r.attrs["model_options"] == "null"
    _same(r, r.save(tmp_path / "copy.h5"))


CLI = {
    "around": (["--n-samples", 6, "--radius", "0:1:3", "--n-directions", 2], 6,
               {"radius": np.linspace(0, 1, 3), "n_directions": 2}),
    "between": (["--n-samples", 30, "--pairs", 4, "--steps", 3], 30, {"pairs": 4, "steps": 3}),
    "noise": (["--sigma", "0:1:3", "--draws", 2], None, {"sigma": np.linspace(0, 1, 3), "draws": 2}),
}


@pytest.mark.parametrize("mode", sorted(CLI))
def test_compute_writes_what_the_command_writes(ckpt, tmp_path, mode):
    argv, n, options = CLI[mode]
    cli_file = tmp_path / "cli.h5"
    res = run("inputspace", ckpt, "--mode", mode, *argv, "--seed", 1, "--device", "cpu", "--out", cli_file, "--quiet")
    assert res.exit_code == 0, res.output
    model, meta = load_checkpoint(ckpt)
    x, y = load_dataset("digits", split="test", n=n, seed=1)
    r = compute(model, x, y, mode=mode, **options, seed=1, dataset="digits", split="test", subset=n is not None,
                checkpoint_meta=meta)
    from_cli = InputSpace.from_file(cli_file)
    _same(r, from_cli)
    lib_attrs = dict(r.save(tmp_path / "lib.h5").attrs)
    cli_attrs = dict(from_cli.attrs)
    assert lib_attrs.pop("seconds") > 0 and cli_attrs.pop("seconds") > 0
    assert lib_attrs == cli_attrs


def test_samples_alias_and_default_name(ckpt, tmp_path):
    import shutil

    local = tmp_path / "m.pt"
    shutil.copy(ckpt, local)
    res = run("inputspace", local, "--samples", 3, "--radius", "0:1:2", "--device", "cpu", "--quiet")
    assert res.exit_code == 0, res.output
    default = tmp_path / "m.inputspace-around.h5"
    assert res.output.strip().endswith(str(default))
    new = tmp_path / "new.h5"
    assert run("inputspace", local, "--n-samples", 3, "--radius", "0:1:2", "--device", "cpu", "--quiet",
               "--out", new).exit_code == 0
    _same(landscape.load(default), landscape.load(new))
    assert landscape.load(new).loss.shape == (3, 1, 2)


# ------------------------------------------------------------------------------------------- plots


def test_plot_draws_the_stored_curves_on_the_given_axes(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = _tiny()
    x, y = _data(12)
    r = landscape.inputspace(model, (x, y), radius="0:2:5", n_directions=2, out=tmp_path / "a.h5")
    _, ax = plt.subplots()
    assert r.plot(ax) is ax
    (line,) = ax.lines
    np.testing.assert_array_equal(line.get_xdata(), r.radius)
    np.testing.assert_allclose(line.get_ydata(), np.median(r.loss.reshape(-1, 5), axis=0), rtol=1e-12)
    assert ax.get_xlabel().startswith("radius") and ax.get_ylabel() == "loss"
    ax2 = r.plot(metric="prob", log=False)
    assert ax2 is not ax and ax2.get_ylabel() == "true-class probability"
    np.testing.assert_allclose(ax2.lines[0].get_ydata(), np.median(r.prob.reshape(-1, 5), axis=0), rtol=1e-12)
    with pytest.raises(LandscapeError, match="metric='bogus'"):
        r.plot(metric="bogus")
    # landscape plot draws the same curves (same code): capture its figure instead of writing it.
    from landscape.analyses.inputspace import plot as P

    drawn = []
    monkeypatch.setattr(P, "save_figure", lambda fig, out, dpi: drawn.append(fig))
    P.plot(tmp_path / "a.h5", out=str(tmp_path / "a.png"))
    for panel, other in zip(drawn[0].axes, (ax, ax2)):
        np.testing.assert_array_equal(panel.lines[0].get_xydata(), other.lines[0].get_xydata())
    # Between: same-class pairs solid, different-class dashed, each the median of its own pairs.
    b = landscape.inputspace(model, (x, y), mode="between", pairs=6, steps=4)
    ax3 = b.plot()
    same, diff = ax3.lines
    assert same.get_linestyle() == "-" and diff.get_linestyle() == "--"
    np.testing.assert_allclose(same.get_ydata(), np.median(b.loss[b.same_class], axis=0), rtol=1e-12)
    np.testing.assert_allclose(diff.get_ydata(), np.median(b.loss[~b.same_class], axis=0), rtol=1e-12)
    plt.close("all")
