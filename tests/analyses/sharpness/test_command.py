"""``landscape sharpness`` end to end on a digits checkpoint: the file, info, plot, compare, one-line errors."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import landscape
from landscape.analyses.sharpness.result import Sharpness
from landscape.cli import main

FAST = ["--n-samples", "32", "--steps", "3", "--draws", "3", "--pac-draws", "2", "--pac-steps", "4"]


@pytest.fixture
def ckpt(tmp_path, digits_ckpt):
    return shutil.copy(digits_ckpt, tmp_path / "final.pt")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_writes_a_file_that_info_plot_and_compare_read(tmp_path, ckpt):
    res = invoke("sharpness", ckpt, *FAST, "--measures", "all", "--rho", "0.02,0.05", "--m", "16")
    assert res.exit_code == 0, res.output
    out = tmp_path / "final.sharpness.h5"
    assert res.output.strip().endswith(str(out))
    r = landscape.load(out)
    assert isinstance(r, Sharpness) and set(r.measures) == {"worst", "worst_adaptive", "average",
                                                           "average_adaptive", "pac_bayes", "pac_bayes_adaptive"}
    assert r.rho.tolist() == [0.02, 0.05] and r.subsets is not None and r.subsets.shape == (2, 16)
    assert r.measures["worst"]["history"].shape == (2, 2, 4)
    assert r.attrs["m"] == 16 and r.attrs["steps"] == 3 and r.attrs["dataset"] == "digits"
    assert np.all(r.measures["worst"]["value"] > 0)
    assert np.all(np.diff(r.measures["worst"]["value"]) > 0)  # a larger ball holds a larger rise
    with h5py.File(out, "r") as f:
        assert f.attrs["schema"] == "landscape.sharpness/1"
    info = invoke("info", out)
    assert info.exit_code == 0 and "worst ρ=0.05" in info.output and "last improvement at step" in info.output
    assert "pac_bayes_adaptive" in info.output
    plot = invoke("plot", out, "--out", tmp_path / "s.png")
    assert plot.exit_code == 0, plot.output
    assert (tmp_path / "s.png").stat().st_size > 0
    other = tmp_path / "other.h5"
    assert invoke("sharpness", ckpt, *FAST, "--seed", "1", "--out", other).exit_code == 0
    cmp = invoke("compare", out, other, "--out", tmp_path / "c.png")
    assert cmp.exit_code == 0, cmp.output
    assert (tmp_path / "c.png").stat().st_size > 0


def test_invariance_on_a_batchnorm_network(tmp_path, ckpt):
    res = invoke("sharpness", ckpt, *FAST, "--invariance", "--measures", "worst,worst_adaptive,lambda_max")
    assert res.exit_code == 0, res.output
    r = landscape.load(tmp_path / "final.sharpness-invariance.h5")
    inv = r.invariance
    assert inv is not None and inv.transforms[0].startswith("bn:") and inv.output_diff[0] < 1e-3
    assert inv.invariant(0.01)["worst_adaptive"]
    assert "invariance worst_adaptive: relative change" in res.output
    info = invoke("info", tmp_path / "final.sharpness-invariance.h5")
    assert info.exit_code == 0 and "scale invariance" in info.output


@pytest.mark.parametrize("args, fragment", [
    (["--rho", "-1"], "--rho -1 must be a positive finite number"),
    (["--measures", "sharpest"], "--measures 'sharpest' is unknown"),
    (["--alpha", "3"], "--alpha applies to --invariance only"),
    (["--m", "100"], "--m 100 is more than the 32 samples given"),
    (["--params", "nothing*"], "--params 'nothing*' matches no parameter"),
])
def test_bad_arguments_are_one_line_errors(ckpt, args, fragment):
    res = invoke("sharpness", ckpt, *FAST, *args)
    assert res.exit_code == 1, res.output
    assert res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
    assert fragment in res.output, res.output


def test_refuses_to_replace_a_file_without_overwrite(tmp_path, ckpt):
    out = tmp_path / "s.h5"
    out.write_text("keep")
    res = invoke("sharpness", ckpt, *FAST, "--measures", "average", "--out", out)
    assert res.exit_code == 1 and "exists; pass --overwrite" in res.output
    assert out.read_text() == "keep"
    assert invoke("sharpness", ckpt, *FAST, "--measures", "average", "--out", out, "--overwrite").exit_code == 0
