"""The one-call API: ``landscape.surface(model, data, …)`` in memory, into a resumable file, and ``landscape.load``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import landscape
from landscape.analyses.surface.result import Surface


@pytest.fixture(scope="module")
def net_and_data():
    net = landscape.build_model("resnet8", num_classes=10, in_channels=1, width=0.5)
    x, y = landscape.load_dataset("digits", n=48, seed=1)
    return net, x, y


def test_in_memory_equals_the_file_engine_and_round_trips(tmp_path, net_and_data):
    net, x, y = net_and_data
    before = {k: v.clone() for k, v in net.state_dict().items()}
    mem = landscape.surface(net, (x, y), x="-1:1:3", y="-0.5:0.5:3", batch_size=20)
    assert isinstance(mem, Surface) and mem.path == "" and mem.loss.shape == (3, 3) and mem.done.all()
    on_disk = landscape.surface(net, (x, y), x="-1:1:3", y="-0.5:0.5:3", batch_size=20, out=tmp_path / "s.h5")
    for name in ("loss", "acc", "stderr", "n_evaluated"):  # one engine: identical to the last bit
        assert np.array_equal(getattr(mem, name), getattr(on_disk, name)), name
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the model is left as found
    saved = mem.save(tmp_path / "mem.h5")
    loaded = landscape.load(tmp_path / "mem.h5")
    assert isinstance(loaded, Surface) and np.array_equal(loaded.loss, mem.loss)
    assert set(loaded.directions) == {"x", "y"}
    assert np.array_equal(saved.directions["x"]["conv1.weight"], mem.directions["x"]["conv1.weight"])
    # The centre point is the model itself: its loss is the plain mean cross-entropy.
    with torch.no_grad():
        direct = F.cross_entropy(net.eval()(x), y).item()
    assert abs(mem.loss[1, 1] - direct) < 1e-5


def test_provenance_is_recorded(tmp_path, net_and_data):
    net, x, y = net_and_data
    s = landscape.surface(net, (x, y), x="-1:1:3", out=tmp_path / "p.h5")
    from landscape.core.provenance import weights_sha256

    assert s.attrs["weights_sha256"] == weights_sha256(net) == s.attrs["checkpoint_sha256"]
    assert s.attrs["threads"] == torch.get_num_threads() and s.attrs["torch_version"] == str(torch.__version__)
    assert s.attrs["model"] == "resnet8" and "width" in s.attrs["model_options"]


def test_a_file_of_other_weights_is_refused_not_returned_stale(tmp_path, net_and_data):
    net, x, y = net_and_data
    out = tmp_path / "s.h5"
    landscape.surface(net, (x, y), x="-1:1:3", out=out)
    other = landscape.build_model("resnet8", num_classes=10, in_channels=1, width=0.5)
    with torch.no_grad():
        other.load_state_dict(net.state_dict())
        other.fc.weight.add_(0.01)  # "retrained"
    with pytest.raises(landscape.LandscapeError, match="checkpoint_sha256"):
        landscape.surface(other, (x, y), x="-1:1:3", out=out)
    again = landscape.surface(other, (x, y), x="-1:1:3", out=out, overwrite=True)
    assert again.attrs["weights_sha256"] != landscape.load(tmp_path / "s.h5").attrs.get("nothing", "")


def test_data_forms_agree_and_a_batch_mean_loss_is_refused(net_and_data):
    net, x, y = net_and_data
    a = landscape.surface(net, (x, y), x="-1:1:3", batch_size=16)
    loader = DataLoader(TensorDataset(x, y), batch_size=7)
    b = landscape.surface(net, loader, x="-1:1:3", batch_size=16)
    assert np.array_equal(a.loss, b.loss)
    c = landscape.surface(net, "digits", x="0:0:1", n_samples=48, seed=1, batch_size=16)
    assert c.loss.shape == (1,) and np.isfinite(c.loss).all()
    with pytest.raises(landscape.LandscapeError, match="one loss per sample"):
        landscape.surface(net, (x, y), x="-1:1:3", loss_fn=F.cross_entropy)
    with pytest.raises(landscape.LandscapeError, match="direction='target' needs target="):
        landscape.surface(net, (x, y), x="-1:1:3", direction="target")
    with pytest.raises(landscape.LandscapeError, match="move it first"):
        landscape.surface(net, (x, y), x="-1:1:3", device="meta")


@pytest.mark.parametrize("out", [None, "s.h5"])
def test_messages_name_the_arguments_in_memory_and_into_a_file(tmp_path, net_and_data, out):
    net, x, y = net_and_data
    out = None if out is None else tmp_path / out
    for options, message in (
            (dict(precision_target=-1.0), "precision_target=-1.0 must be positive"),
            (dict(bn="recalibrate", dir_type="states", recal_data=(x, y)),
             "bn='recalibrate' recomputes the BN statistics that dir_type='states' perturbs")):
        with pytest.raises(landscape.LandscapeError, match=message.replace("(", r"\(")) as err:
            landscape.surface(net, (x, y), x="-1:1:3", out=out, **options)
        assert "--" not in str(err.value)
    if out is not None:
        landscape.surface(net, (x, y), x="-1:1:3", out=out)
        with pytest.raises(landscape.LandscapeError, match=r"with seed=0, this run asks for seed=1; pass "
                                                           r"overwrite=True to start afresh or choose another out="):
            landscape.surface(net, (x, y), x="-1:1:3", out=out, seed=1)


def test_plot_draws_on_the_given_axes(net_and_data):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    net, x, y = net_and_data
    s = landscape.surface(net, (x, y), x="-1:1:3", y="-1:1:3")
    fig, ax = plt.subplots()
    assert s.plot(ax=ax, kind="contourf") is ax
    assert ax.collections, "nothing was drawn"
    plt.close(fig)
    line = landscape.surface(net, (x, y), x="-1:1:5").plot()
    assert np.allclose(line.lines[0].get_ydata(), landscape.surface(net, (x, y), x="-1:1:5").loss)
    plt.close("all")


def test_old_entry_points_still_work():
    from landscape.surface import SurfaceSettings, compute_surface

    assert callable(landscape.surface) and landscape.surface.compute_surface is compute_surface
    assert SurfaceSettings.__module__ == "landscape.analyses.surface.compute"
