"""Tracking curvature during training: never changes the trajectory, rows at the right steps with the right
thresholds, resumes to the rows of an uninterrupted run, refuses other settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape.analyses.curvature import schema as store
from landscape.analyses.curvature.track import CurvatureTracker
from landscape.errors import LandscapeError
from landscape.training import train


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Tanh(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(12, 4))


def tiny_data(n: int = 40, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 6, 6, generator=g), torch.randint(4, (n,), generator=g)


OPTIMIZERS = {"sgd": dict(optimizer="sgd", batch_size=8, lr=0.1), "gd": dict(optimizer="gd", lr=0.2),
              "adam": dict(optimizer="adam", batch_size=8, lr=0.01)}


def _train(out_dir, callbacks=(), epochs=2, resume=False, kind="sgd"):
    model = tiny_cnn()
    train(model, tiny_data(), None, epochs=epochs, seed=3, out_dir=out_dir, callbacks=callbacks, resume=resume,
          progress=False, **OPTIMIZERS[kind])
    return model


def _tracker(path, every=3, **kw):
    return CurvatureTracker(path, data=tiny_data(), every=every, n_samples=16, seed=1, **kw)


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_tracking_leaves_training_bit_identical(tmp_path, kind):
    torch.manual_seed(123)
    plain = _train(tmp_path / "plain", kind=kind)
    rng_plain = torch.get_rng_state()
    torch.manual_seed(123)
    tracked = _train(tmp_path / "tracked", [_tracker(tmp_path / "tracked" / "curvature.h5", trace_probes=6,
                                                     attrs={"optimizer": kind})], kind=kind)
    assert torch.equal(rng_plain, torch.get_rng_state())  # the global random stream did not move
    for k, v in plain.state_dict().items():
        assert torch.equal(v, tracked.state_dict()[k]), k
    data = store.read(tmp_path / "tracked" / "curvature.h5")
    rows = data.rows
    steps = [0, 3, 6, 9] if kind != "gd" else [0]  # sgd/adam: 2 epochs × 5 steps; gd: 2 steps
    assert rows["step"].tolist() == steps
    assert np.all(rows["lambda_max"] > 0) and np.all(rows["lambda_converged"] == 1)
    assert np.all(np.isfinite(rows["trace"])) and np.all(rows["trace_matvecs"] == 6)
    assert data.attrs["optimizer"] == kind and data.attrs["n_samples"] == 16 and data.attrs["every"] == 3
    if kind == "adam":
        assert np.all(rows["precond_lambda_max"] > 0) and np.all(rows["precond_matvecs"] > 0)
        np.testing.assert_allclose(rows["precond_threshold"], (2 + 2 * 0.9) / (0.1 * rows["lr"]))
        assert np.all(np.isnan(rows["threshold"]))
    else:
        assert np.all(np.isnan(rows["precond_lambda_max"])) and np.all(rows["precond_matvecs"] == 0)
        momentum = 0.9 if kind == "sgd" else 0.0
        np.testing.assert_allclose(rows["threshold"], (2 + 2 * momentum) / rows["lr"])
    np.testing.assert_allclose(rows["two_over_lr"], 2 / rows["lr"])


def test_rows_record_the_step_size_of_the_schedule(tmp_path):
    from landscape.training import lr_at

    tracker = _tracker(tmp_path / "c.h5", every=2)
    _train(tmp_path / "run", [tracker])
    rows = store.read(tmp_path / "c.h5").rows
    expected = [lr_at(int(s), total_steps=10, lr=0.1, schedule="cosine") for s in rows["step"]]
    np.testing.assert_allclose(rows["lr"], expected, rtol=1e-15)
    assert rows["epoch"].tolist() == [1, 1, 1, 2, 2]


class _Crash:
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step(self, ctx) -> None:
        if ctx.step == self.at:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_resumed_run_writes_the_rows_of_an_uninterrupted_one(tmp_path, kind):
    _train(tmp_path / "full", [_tracker(tmp_path / "full" / "c.h5", every=2)], epochs=3, kind=kind)
    path = tmp_path / "cut" / "c.h5"
    with pytest.raises(RuntimeError, match="simulated"):
        # Crash in epoch 2 after the measurement at step 8: rows 6 and 8 are written, last.pt is from epoch 1.
        _train(tmp_path / "cut", [_tracker(path, every=2), _Crash(9)], epochs=3, kind=kind)
    assert store.read(path).rows["step"].tolist() == [0, 2, 4, 6, 8]
    with pytest.raises(LandscapeError, match="other settings .*every: file 2 vs now 3"):
        _train(tmp_path / "cut", [_tracker(path, every=3)], epochs=3, resume=True, kind=kind)
    _train(tmp_path / "cut", [_tracker(path, every=2)], epochs=3, resume=True, kind=kind)
    a, b = store.read(tmp_path / "full" / "c.h5").rows, store.read(path).rows
    assert b["step"].tolist() == list(range(0, 15, 2))
    # Bit for bit: the warm-start vector came back from last.pt, so even the HVP counts agree.
    for name in store.ROW_FIELDS:
        if name != "seconds":
            assert np.array_equal(a[name], b[name], equal_nan=True), name


def test_warm_start_state_travels_in_last_pt(tmp_path):
    from landscape.core.checkpoint import read_checkpoint_file

    tracker = _tracker(tmp_path / "c.h5")
    _train(tmp_path / "run", [tracker])
    saved = read_checkpoint_file(tmp_path / "run" / "last.pt")["callbacks"]["curvature"]
    assert torch.equal(saved["vector"], tracker.state_dict()["vector"]) and saved["precond_vector"] is None
    assert saved["vector"].shape == (sum(p.numel() for p in tiny_cnn().parameters()),)


def test_cold_tracking_agrees_with_warm_within_tolerance(tmp_path):
    _train(tmp_path / "warm", [_tracker(tmp_path / "w.h5", every=1, tol=1e-6)])
    _train(tmp_path / "cold", [_tracker(tmp_path / "c.h5", every=1, tol=1e-6, warm_start=False)])
    w, c = store.read(tmp_path / "w.h5").rows, store.read(tmp_path / "c.h5").rows
    np.testing.assert_allclose(w["lambda_max"], c["lambda_max"], rtol=1e-5)
    assert w["lambda_matvecs"][1:].sum() < c["lambda_matvecs"][1:].sum()


@pytest.mark.parametrize("kwargs,fragment", [
    ({"every": 0}, "every=0 must be"), ({"tol": 0.0}, "tol=0.0 must lie"), ({"trace_probes": 2}, "at least 4"),
    ({"n_samples": 0}, "n_samples=0 must be"),
])
def test_bad_settings_are_one_line(tmp_path, kwargs, fragment):
    with pytest.raises(LandscapeError, match=fragment):
        CurvatureTracker(tmp_path / "c.h5", data=tiny_data(), **{"every": 1, **kwargs})


def test_an_append_waits_for_a_reader_holding_the_file(tmp_path):
    """``landscape info RUN/curvature.h5`` during training holds a read lock on the file (another process): the
    next row waits for it, and training does not fail."""
    import subprocess
    import sys
    import time

    path = tmp_path / "c.h5"
    store.create(path)
    reader = subprocess.Popen([sys.executable, "-c", "import h5py, sys, time\n"
                               f"f = h5py.File({str(path)!r}, 'r'); print('open', flush=True); time.sleep(1.5)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "open"
        t0 = time.monotonic()
        assert store.append(path, {k: [1] for k in store.ROW_FIELDS}) == 1
        assert time.monotonic() - t0 > 0.3  # it did wait for the reader
    finally:
        reader.wait(timeout=30)
    assert store.read(path).rows["step"].tolist() == [1]
