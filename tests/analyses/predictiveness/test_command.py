"""``landscape predictiveness`` and the plot/compare commands on its files."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import landscape.cli  # noqa: F401  mounts every command
from landscape import load_checkpoint, save_checkpoint
from landscape.analyses.predictiveness.compute import probe_batch
from landscape.cli import main
from landscape.training import seeded_model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "net.pt"
    model = seeded_model("resnet8", num_classes=10, in_channels=1, seed=0, width=0.5)
    save_checkpoint(path, model, {"dataset": "digits", "step": 7, "epoch": 1})
    return path


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def test_cli_writes_file_with_contract(ckpt, tmp_path):
    out = tmp_path / "p.h5"
    res = run("predictiveness", ckpt, "--batches", 3, "--batch-size", 16, "--eta", "0.1:0.3:3", "--device", "cpu",
              "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    assert "β" in res.output and str(out) in res.output
    with h5py.File(out) as f:
        assert f.attrs["schema"] == "landscape.predictiveness/1"
        assert f.attrs["bn_mode"] == "train" and f.attrs["checkpoint_step"] == 7 and f.attrs["dataset"] == "digits"
        assert f.attrs["n_samples"] == 1437 and not f.attrs["subset"]  # the whole digits train split
        assert f["loss"].shape == f["grad_diff"].shape == (3, 3)
        assert f["step"].shape == f["beta"].shape == f["train_loss"].shape == f["grad_norm"].shape == (3,)
        np.testing.assert_allclose(f["eta"][:], [0.1, 0.2, 0.3])
        stored = {k: f[k][:] for k in ("grad_diff", "beta", "grad_norm")}
    # The first row is the probe of the first seeded batch: recompute it through the library.
    from landscape import load_dataset
    from landscape.analyses.predictiveness.compute import sample_batches

    model, _ = load_checkpoint(ckpt)
    x, y = load_dataset("digits", split="train", seed=0)
    xb, yb = sample_batches(x, y, n_batches=3, batch_size=16, seed=0)[0]
    row = probe_batch(model, xb, yb, etas=[0.1, 0.2, 0.3], bn_mode="train", seed=0)
    assert np.array_equal(stored["grad_diff"][0], row.grad_diff) and stored["beta"][0] == row.beta
    ratio = stored["grad_diff"] / (np.array([0.1, 0.2, 0.3])[None] * stored["grad_norm"][:, None])
    np.testing.assert_allclose(stored["beta"], ratio.max(axis=1), rtol=1e-15)


def test_cli_bn_eval_plot_and_compare(ckpt, tmp_path, check_bad_figure_outputs):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    for out, bn in ((a, "train"), (b, "eval")):
        res = run("predictiveness", ckpt, "--batches", 2, "--batch-size", 8, "--eta", "0.05,0.2", "--bn", bn,
                  "--device", "cpu", "--out", out, "--quiet")
        assert res.exit_code == 0, res.output
    with h5py.File(b) as f:
        assert f.attrs["bn_mode"] == "eval"
    res = run("plot", a)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a.png").stat().st_size > 1000
    res = run("compare", a, b, "--labels", "bn-train,bn-eval", "--out", tmp_path / "ab.svg")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ab.svg").stat().st_size > 1000
    check_bad_figure_outputs([a, b])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--eta", "0.1:0.4"], "--eta '0.1:0.4' is not MIN:MAX:NUM"),
        (["--eta", "0:0.4:5"], "η=0 is not positive"),
        # The library names its arguments (n_batches=, batch_size=); the CLI shows them as its flags.
        (["--batches", 200, "--batch-size", 64], r"lower (--batches|n_batches=) or (--batch-size|batch_size=)"),
    ],
)
def test_cli_user_errors_are_one_line(ckpt, tmp_path, args, fragment):
    res = run("predictiveness", ckpt, "--device", "cpu", "--out", tmp_path / "x.h5", *args)
    assert res.exit_code == 1
    assert re.search(fragment if fragment.startswith("lower") else re.escape(fragment), res.output)
    assert "Traceback" not in res.output
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("flag", ["--overwrite", "--force"])  # --force: the old name, kept as an alias
def test_cli_refuses_to_overwrite_without_overwrite(ckpt, tmp_path, flag):
    out = tmp_path / "p.h5"
    out.write_bytes(b"keep")
    res = run("predictiveness", ckpt, "--out", out, "--batches", 1, "--batch-size", 4)
    assert res.exit_code == 1 and "--overwrite" in res.output
    assert out.read_bytes() == b"keep"
    res = run("predictiveness", ckpt, "--out", out, "--batches", 1, "--batch-size", 4, flag, "--quiet",
              "--device", "cpu")
    assert res.exit_code == 0, res.output
    with h5py.File(out) as f:
        assert f["beta"].shape == (1,)
