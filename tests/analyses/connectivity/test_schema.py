"""The file layout round-trips every field; damaged files are one line; the figures draw the stored numbers."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

import landscape
from landscape.analyses.connectivity.plot import draw, draw_plane
from landscape.analyses.connectivity.result import Connectivity, compute
from landscape.errors import LandscapeError
from landscape.models import build_model


@pytest.fixture(scope="module")
def result() -> Connectivity:
    from landscape import load_dataset

    x, y = load_dataset("digits", n=64, seed=0)
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        nets.append(build_model("resnet8", num_classes=10, in_channels=1, width=0.25).eval())
    return compute(nets[0], nets[1], {"train": (x, y), "test": (x[:20], y[:20])}, train_data=(x, y), points=5,
                   align=True, curve="bezier", curve_epochs=1, curve_batch_size=32, plane=3, recal_samples=32,
                   batch_size=32)


def test_round_trip(tmp_path, result):
    path = tmp_path / "r.h5"
    back = result.save(path)
    assert back.path == str(path) and isinstance(landscape.load(path), Connectivity)
    assert np.array_equal(back.t, result.t)
    for name, arrays in result.paths.items():
        assert arrays.keys() == back.paths[name].keys()
        for key, value in arrays.items():
            assert np.array_equal(back.paths[name][key], value, equal_nan=True), (name, key)
    assert back.barriers == result.barriers
    assert back.endpoint_b["weights_sha256"] == result.endpoint_b["weights_sha256"]
    assert back.attrs["weights_sha256"] == result.attrs["weights_sha256"] != back.endpoint_b["weights_sha256"]
    for key, perm in result.alignment["perms"].items():
        assert np.array_equal(back.alignment["perms"][key], perm)
    assert back.alignment["sweeps"] == result.alignment["sweeps"]
    assert list(back.curve["bend"]) == list(result.curve["bend"])  # the model's parameter order
    for key, value in result.curve["bend"].items():
        assert np.array_equal(back.curve["bend"][key], value)
    for key, value in result.plane.items():
        assert np.array_equal(back.plane[key], value)
    with pytest.raises(LandscapeError, match="exists; pass overwrite=True"):
        result.save(path)
    result.save(path, overwrite=True)


def test_damaged_file_is_one_line(tmp_path, result):
    path = tmp_path / "r.h5"
    result.save(path)
    with h5py.File(path, "a") as f:
        del f["paths/linear/train_loss"]
        f["paths/linear/train_loss"] = np.zeros(3)
    with pytest.raises(LandscapeError, match="is damaged: its paths do not match its t grid") as info:
        landscape.load(path)
    assert "\n" not in str(info.value)
    with h5py.File(path, "a") as f:
        del f["t"]
    with pytest.raises(LandscapeError, match="is damaged"):
        Connectivity.from_file(path)


def test_figures_draw_the_stored_numbers(result):
    ax = result.plot()
    lines = {line.get_label(): line for line in ax.get_lines()}
    linear = next(line for label, line in lines.items() if label.startswith("linear, train (barrier"))
    assert np.array_equal(linear.get_xdata(), result.t)
    assert np.array_equal(linear.get_ydata(), result.paths["linear"]["train_loss"])
    height = result.barriers["linear"]["train"]["height"]
    assert f"barrier {height:.3g}" in linear.get_label()
    assert any(label.startswith("curve (bezier), test") for label in lines)
    assert ax.get_xlabel().startswith("t")
    acc = draw(result, metric="acc")
    assert acc.get_ylabel() == "accuracy"
    assert any(np.array_equal(line.get_ydata(), result.paths["curve"]["test_acc"]) for line in acc.get_lines())
    ax = draw_plane(result)
    curve = next(line for line in ax.get_lines() if line.get_label() == "curve (bezier)")
    assert np.array_equal(curve.get_xdata(), result.plane["curve"][:, 0])
    assert np.array_equal(curve.get_ydata(), result.plane["curve"][:, 1])
    # The filled contours cover the plane's extent, x along the first axis of the stored array.
    x0, x1 = ax.get_xlim()
    assert x0 <= result.plane["x"][0] and x1 >= result.plane["x"][-1]
    import matplotlib.pyplot as plt

    plt.close("all")
