"""The Curvature result, its file, the edge-of-stability fraction, figures, info, and ``landscape curvature``."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from landscape.analyses.curvature import schema as store
from landscape.analyses.curvature.result import Curvature
from landscape.cli import main
from landscape.errors import LandscapeError


def fake_rows(lam, lr=0.1, adam=False, trace=False):
    lam = np.asarray(lam, dtype=np.float64)
    n = len(lam)
    nan = np.full(n, math.nan)
    return {"step": np.arange(n) * 10, "epoch": np.arange(n) * 10 + 1, "lr": np.full(n, lr),
            "two_over_lr": np.full(n, 2 / lr), "threshold": nan if adam else np.full(n, 2 / lr),
            "precond_threshold": np.full(n, 38 / lr) if adam else nan, "lambda_max": lam / (100 if adam else 1),
            "lambda_residual": np.full(n, 1e-3), "lambda_converged": np.ones(n), "lambda_matvecs": np.full(n, 5),
            "loss": np.linspace(1, 0.1, n), "trace": np.arange(n) + 100.0 if trace else nan,
            "trace_stderr": np.full(n, 2.0) if trace else nan, "trace_matvecs": np.full(n, 30 if trace else 0),
            "precond_lambda_max": lam if adam else nan, "precond_residual": nan, "precond_matvecs": np.full(n, 4 * adam),
            "seconds": np.full(n, 0.1)}


def test_round_trip_keeps_every_row_and_setting(tmp_path):
    r = Curvature(rows=fake_rows([1.0, 2.0, 3.0], trace=True), attrs={"every": 10, "optimizer": "gd"})
    back = r.save(tmp_path / "c.h5")
    assert back.path == str(tmp_path / "c.h5") and back.attrs["every"] == 10
    assert back.attrs["schema"] == store.SCHEMA
    for name in store.ROW_FIELDS:
        assert np.array_equal(back.rows[name], r.rows[name], equal_nan=True), name
        assert back.rows[name].dtype == store.ROW_FIELDS[name]
    assert back.n_hvp == 3 * 5 + 3 * 30 and back.has_trace and not back.is_adam
    with pytest.raises(LandscapeError, match="exists; pass overwrite=True"):
        r.save(tmp_path / "c.h5")
    with pytest.raises(ValueError):
        back.lambda_max[0] = 0.0  # read-only


def test_edge_of_stability_fraction_by_hand():
    # 2/η = 20. Reaches 0.9·20 = 18 at step 20 (index 2); the steps run to 90, so "late" is step ≥ 55: indices 6..9.
    lam = [10, 15, 18, 21, 19, 25, 21, 23, 19.5, 17]
    eos = Curvature(rows=fake_rows(lam)).edge_of_stability()
    assert eos.reached_step == 20 and eos.late == 4
    assert eos.within == 2 and eos.fraction == 0.5  # 21 and 19.5 are within ±2; 23 and 17 are not
    assert eos.median_ratio == pytest.approx(np.median([21, 23, 19.5, 17]) / 20)
    never = Curvature(rows=fake_rows([1, 2, 3])).edge_of_stability()
    assert never.reached_step is None and math.isnan(never.fraction)
    # Adam: the preconditioned sharpness against (2 + 2β₁)/((1 − β₁)η) = 380.
    adam = Curvature(rows=fake_rows([100, 350, 380, 390], adam=True)).edge_of_stability()
    assert adam.quantity == "precond_lambda_max" and adam.reached_step == 10 and adam.fraction == 1.0


def test_committed_rows_only(tmp_path):
    path = tmp_path / "c.h5"
    store.create(path, attrs={"every": 1})
    assert store.append(path, {k: v[:1] for k, v in fake_rows([5.0]).items()}) == 1
    with h5py.File(path, "a") as f:  # a torn second row: some datasets grew, the commit never happened
        f["step"].resize(2, axis=0)
        f["step"][1] = 99
    assert store.read(path).rows["step"].tolist() == [0]
    assert store.append(path, {k: v[1:2] for k, v in fake_rows([5.0, 6.0]).items()}) == 2
    assert store.read(path).rows["lambda_max"].tolist() == [5.0, 6.0]
    assert store.truncate(path, before_step=10) == 1


def test_plots_and_compare_write_figures(tmp_path):
    from landscape.analyses.curvature import plot as plots
    from landscape.core.figure import PlotOptions

    a = Curvature(rows=fake_rows([10, 19, 21, 20], trace=True)).save(tmp_path / "a.h5")
    b = Curvature(rows=fake_rows([10, 30, 39, 40], lr=0.05)).save(tmp_path / "b.h5")
    c = Curvature(rows=fake_rows([100, 350, 380], adam=True)).save(tmp_path / "c.h5")
    plots.plot(tmp_path / "a.h5", out=tmp_path / "a.png", options=PlotOptions())
    plots.compare([tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"], labels=None, out=tmp_path / "abc.pdf",
                  options=PlotOptions(log=True))
    for f in ("a.png", "abc.pdf"):
        assert (tmp_path / f).stat().st_size > 1000
    ax = a.plot()
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert np.array_equal(lines["λmax"].get_ydata(), a.lambda_max)
    assert np.array_equal(lines["2/η"].get_ydata(), a.two_over_lr)
    ax = c.plot()
    assert np.array_equal({ln.get_label(): ln for ln in ax.get_lines()}["λmax(P⁻¹H)"].get_ydata(),
                          c.precond_lambda_max)
    with pytest.raises(LandscapeError, match="holds no trace"):
        b.plot(metric="trace")
    store.create(tmp_path / "empty.h5")
    with pytest.raises(LandscapeError, match="no measurements yet"):
        plots.plot(tmp_path / "empty.h5", out=tmp_path / "e.png", options=PlotOptions())
    with pytest.raises(LandscapeError, match="2 labels for 1 files"):
        plots.compare([tmp_path / "a.h5"], labels=["x", "y"], out=tmp_path / "x.png", options=PlotOptions())


def test_generic_commands_read_the_file(tmp_path):
    import landscape

    Curvature(rows=fake_rows([10, 15, 18, 21, 19, 25, 21, 23, 19.5, 17])).save(tmp_path / "c.h5")
    res = CliRunner().invoke(main, ["info", str(tmp_path / "c.h5")])
    assert res.exit_code == 0, res.output
    assert "reached 0.9 × threshold at step 20; 2/4 late measurements within ±10% (50%)" in res.output
    res = CliRunner().invoke(main, ["plot", str(tmp_path / "c.h5"), "--out", str(tmp_path / "c.png")])
    assert res.exit_code == 0 and (tmp_path / "c.png").exists(), res.output
    assert isinstance(landscape.load(tmp_path / "c.h5"), Curvature)


def _tiny_run(tmp_path, optimizer="gd"):
    out = tmp_path / "run"
    args = ["train", "mlp", "--optimizer", optimizer, "--loss", "mse", "--n-train", "64", "--epochs", "4",
            "--lr", "0.1", "--schedule", "constant", "--model-option", "hidden=8", "--device", "cpu", "--quiet",
            "--out", str(out), "--track-curvature", "1", "--track-samples", "64"]
    res = CliRunner().invoke(main, args + (["--batch-size", "32"] if optimizer != "gd" else []))
    assert res.exit_code == 0, res.output
    return out


def test_curvature_command_measures_every_checkpoint_like_the_tracker(tmp_path):
    run = _tiny_run(tmp_path)
    res = CliRunner().invoke(main, ["curvature", str(run), "--n-samples", "64", "--tol", "1e-6", "--quiet"])
    assert res.exit_code == 0, res.output
    got = Curvature.from_file(run / "curvature-checkpoints.h5")
    tracked = Curvature.from_file(run / "curvature.h5")
    # Checkpoint k holds the weights of step k (gd: one step per epoch), which the tracker measured before step k's
    # update, on the same 64 samples with the same loss.
    assert got.step.tolist() == [0, 1, 2, 3, 4] and tracked.step.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(got.lambda_max[:4], tracked.lambda_max, rtol=1e-4)
    np.testing.assert_allclose(got.rows["two_over_lr"], 20.0)
    np.testing.assert_allclose(got.rows["loss"][:4], tracked.rows["loss"], rtol=1e-6)
    assert got.attrs["source"] == "checkpoints" and len(json.loads(got.attrs["checkpoints"])) == 5  # JSON text
    cold = CliRunner().invoke(main, ["curvature", str(run), "--n-samples", "64", "--tol", "1e-6", "--cold-start",
                                     "--quiet", "--out", str(tmp_path / "cold.h5")])
    assert cold.exit_code == 0, cold.output
    np.testing.assert_allclose(Curvature.from_file(tmp_path / "cold.h5").lambda_max, got.lambda_max, rtol=1e-5)
    again = CliRunner().invoke(main, ["curvature", str(run), "--quiet"])
    assert again.exit_code == 1 and "exists; pass --overwrite" in again.output
    bad = CliRunner().invoke(main, ["curvature", str(run / "epoch_0001.pt"), "--trace-probes", "2"])
    assert bad.exit_code == 1 and "error: --trace-probes 2 is too few" in bad.output


def test_adam_run_tracks_the_preconditioned_sharpness(tmp_path):
    run = _tiny_run(tmp_path, optimizer="adam")
    r = Curvature.from_file(run / "curvature.h5")
    assert r.is_adam and np.all(r.precond_lambda_max > 0) and r.attrs["optimizer"] == "adam"
    np.testing.assert_allclose(r.rows["precond_threshold"], (2 + 2 * 0.9) / ((1 - 0.9) * 0.1))
    # The file records the provenance of the weights training started from.
    from landscape import load_checkpoint
    from landscape.core.provenance import weights_sha256

    record = r.provenance
    assert record.weights_sha256 == weights_sha256(load_checkpoint(run / "epoch_0000.pt")[0])
    assert record.model == "mlp" and record.model_options == {"hidden": 8} and record.dataset == "digits"
    assert record.n_samples == 64 and record.subset is True and record.split == "train" and record.seed == 0
