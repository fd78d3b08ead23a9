"""The one-call Hessian API: ``landscape.hessian(model, data, …)`` against the engine's functions and a file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import landscape
from landscape.analyses.hessian.result import Hessian


def test_one_call_hessian_matches_the_engine_and_round_trips(tmp_path):
    net = landscape.build_model("resnet8", num_classes=10, in_channels=1, width=0.5)
    x, y = landscape.load_dataset("digits", n=40, seed=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    h = landscape.hessian(net, (x, y), top_k=2, trace=True, probes=8, density=True, lanczos_steps=10,
                          batch_size=16, eigenvectors=True)
    assert isinstance(h, Hessian) and h.path == "" and h.eigenvalues is not None and len(h.eigenvalues) == 2
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the model is left as found
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 40, 16)]
    eig = landscape.hessian.eigenvalues(net, batches, k=2, seed=0)  # the old API, same operator and seed
    assert np.array_equal(eig.eigenvalues, h.eigenvalues)
    tr = landscape.hessian.trace(net, batches, n_probes=8, seed=0)
    assert tr.estimate == h.trace and tr.stderr == h.trace_stderr
    assert h.attrs["n_hvp"] > 0 and h.attrs["weights_sha256"] and h.attrs["n_samples"] == 40
    saved = h.save(tmp_path / "h.h5")
    again = landscape.load(tmp_path / "h.h5")
    assert isinstance(again, Hessian) and np.array_equal(again.eigenvalues, h.eigenvalues)
    assert again.trace == h.trace and set(again.density) == {"grid", "values", "nodes", "weights"}
    assert again.eigenvectors is not None and saved.eigenvectors is not None
    with pytest.raises(landscape.LandscapeError, match="exists"):
        h.save(tmp_path / "h.h5")


def test_one_call_hessian_plots_and_refuses_empty_requests():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    net = landscape.build_model("resnet8", num_classes=10, in_channels=1, width=0.5)
    x, y = landscape.load_dataset("digits", n=24, seed=3)
    with pytest.raises(landscape.LandscapeError, match="nothing to measure"):
        landscape.hessian(net, (x, y), top_k=0)
    h = landscape.hessian(net, (x, y), top_k=1, density=True, lanczos_steps=8)
    _fig, ax = plt.subplots()
    assert h.plot(ax=ax) is ax and ax.lines
    plt.close("all")
