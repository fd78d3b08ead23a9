"""`landscape hessian` end to end on a small trained checkpoint, the HDF5 layout, plots, PyHessian agreement."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import landscape.cli  # noqa: F401  mounts every command
from landscape.analyses.hessian.schema import SCHEMA, read_eigenvectors, read_hessian
from landscape.cli import main


def _run(*args: str) -> object:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def hess_file(digits_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hess") / "h.h5"
    r = _run("hessian", str(digits_ckpt), "--top-k", "2", "--trace", "--probes", "9", "--density",
             "--lanczos-steps", "12", "--n-samples", "64", "--batch-size", "40", "--save-eigenvectors",
             "--quiet", "--out", str(out), "--device", "cpu")
    assert r.exit_code == 0, r.output
    return out


def test_layout_and_attributes(hess_file: Path, digits_ckpt: Path) -> None:
    with h5py.File(hess_file) as f:
        assert f.attrs["schema"] == SCHEMA
        for key in ("eigenvalues", "residuals", "trace", "trace_stderr", "density/grid", "density/values",
                    "density/nodes", "density/weights", "eigenvectors/0", "eigenvectors/1"):
            assert key in f, key
        for key in ("checkpoint", "checkpoint_sha256", "model", "dataset", "split", "n_samples", "seed", "mode",
                    "n_hvp", "seconds", "library_version", "which", "k", "tol", "probes"):
            assert key in f.attrs, key
        assert f.attrs["n_samples"] == 64 and f["eigenvalues"].shape == (2,)
    r = read_hessian(hess_file)
    assert r["eigenvalues"][0] >= r["eigenvalues"][1]
    assert np.trapezoid(r["density"]["values"], r["density"]["grid"]) == pytest.approx(1, abs=1e-9)


def test_eigenvectors_readable_for_surfaces(hess_file: Path, digits_ckpt: Path) -> None:
    from landscape import load_checkpoint

    vecs = read_eigenvectors(hess_file)
    model, _ = load_checkpoint(digits_ckpt)
    names = [n for n, _ in model.named_parameters()]
    assert len(vecs) == 2 and list(vecs[0]) == names
    flat = [np.concatenate([v.ravel() for v in vec.values()]) for vec in vecs]
    assert np.linalg.norm(flat[0]) == pytest.approx(1, abs=1e-6)
    assert abs(flat[0] @ flat[1]) < 1e-6
    assert vecs[0][names[0]].shape == tuple(dict(model.named_parameters())[names[0]].shape)


def test_eigen_surface_uses_the_stored_eigenvectors_whole(hess_file: Path, digits_ckpt: Path,
                                                          digits_fmm_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "eig.h5"
    r = _run("surface", str(digits_ckpt), "--dir", "eigen", "--eigen", str(hess_file), "--x", "-0.1:0.1:3",
             "--y", "-0.1:0.1:3", "--n-samples", "16", "--quiet", "--out", str(out))
    assert r.exit_code == 0, r.output
    vecs = read_eigenvectors(hess_file)
    with h5py.File(out) as f:
        assert f.attrs["norm"] == "none"  # the default for eigen directions
        for axis, vec in zip("xy", vecs):
            assert set(f[f"directions/{axis}"]) == set(vec)
            for key, value in vec.items():  # biases and BN entries included: nothing zeroed
                stored = f[f"directions/{axis}/{key}"][()]  # in the model's dtype (float32)
                np.testing.assert_array_equal(stored, value.astype(stored.dtype))
    r = CliRunner().invoke(main, ["surface", str(digits_fmm_ckpt), "--dir", "eigen", "--eigen", str(hess_file),
                                  "--quiet", "--out", str(tmp_path / "other.h5")])
    assert r.exit_code == 1 and "not of" in r.output and "SHA-256" in r.output and r.output.count("\n") == 1
    assert not (tmp_path / "other.h5").exists()


def test_top_eigenvalue_agrees_with_library_on_same_batches(hess_file: Path, digits_ckpt: Path) -> None:
    from landscape import load_checkpoint, load_dataset
    from landscape.analyses.hessian import eigenvalues

    model, _ = load_checkpoint(digits_ckpt)
    x, y = load_dataset("digits", n=64, seed=0)
    res = eigenvalues(model, (x, y), k=1, tol=1e-6)
    assert read_hessian(hess_file)["eigenvalues"][0] == pytest.approx(res.eigenvalues[0], rel=1e-4)


def test_plot_and_compare(hess_file: Path, tmp_path: Path, check_bad_figure_outputs) -> None:
    check_bad_figure_outputs([hess_file])
    r = _run("plot", str(hess_file), "--out", str(tmp_path / "a.png"))
    assert r.exit_code == 0 and (tmp_path / "a.png").stat().st_size > 0
    r = _run("compare", str(hess_file), str(hess_file), "--labels", "a,b", "--out", str(tmp_path / "c.png"))
    assert r.exit_code == 0 and (tmp_path / "c.png").stat().st_size > 0


def test_per_layer_and_params(digits_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "pl.h5"
    r = _run("hessian", str(digits_ckpt), "--top-k", "0", "--per-layer", "--layer-depth", "1", "--probes", "6",
             "--n-samples", "32", "--quiet", "--out", str(out), "--device", "cpu")
    assert r.exit_code == 0, r.output
    layers = read_hessian(out)["per_layer"]
    assert layers and all("eigenvalues" in v and "trace" in v for v in layers.values())
    r = _run("hessian", str(digits_ckpt), "--params", "fc*", "--n-samples", "32", "--quiet", "--out",
             str(tmp_path / "fc.h5"), "--device", "cpu", "--per-layer")
    assert r.exit_code == 0, r.output
    fc = read_hessian(tmp_path / "fc.h5")["per_layer"]
    assert list(fc) == ["fc"] and len(layers) > 1


def test_user_errors_are_one_line(digits_ckpt: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "x.h5"
    out.write_bytes(b"")
    r = runner.invoke(main, ["hessian", str(digits_ckpt), "--out", str(out)])
    assert r.exit_code == 1 and "--overwrite" in r.output
    r = runner.invoke(main, ["hessian", str(digits_ckpt), "--params", "nope*", "--n-samples", "8", "--quiet",
                             "--out", str(tmp_path / "y.h5")])
    assert r.exit_code == 1 and "--params 'nope*' matches no parameter" in r.output
    for args, fragment in ((["--tol", "nan"], "--tol nan must be a finite"), (["--tol", "0"], "not in the range x>0"),
                           (["--trace", "--probes", "3"], "3 is not in the range x>=4"),
                           (["--layer-depth", "2"], "--layer-depth applies to --per-layer only"),
                           (["--top-k", "0", "--trace", "--save-eigenvectors"], "needs --top-k K"),
                           (["--backend", "pyhessian", "--save-eigenvectors"], "without --save-eigenvectors")):
        r = runner.invoke(main, ["hessian", str(digits_ckpt), "--n-samples", "8", "--quiet",
                                 "--out", str(tmp_path / "w.h5"), *args])
        assert r.exit_code in (1, 2) and fragment in r.output and r.output.count("\n") == 1, r.output
        assert not (tmp_path / "w.h5").exists()
    r = runner.invoke(main, ["hessian", str(digits_ckpt), "--backend", "pyhessian", "--density",
                             "--out", str(tmp_path / "z.h5")])
    assert r.exit_code == 1 and "pyhessian" in r.output


def test_default_output_name_and_overwrite_with_its_old_alias(digits_ckpt: Path, tmp_path: Path) -> None:
    import shutil

    ckpt = tmp_path / "net.pt"
    shutil.copy(digits_ckpt, ckpt)
    args = ["hessian", str(ckpt), "--top-k", "1", "--n-samples", "8", "--quiet", "--device", "cpu"]
    r = _run(*args)
    out = tmp_path / "net.hessian.h5"  # STEM.KIND.h5, as every command names its default output
    assert r.exit_code == 0 and r.output.strip().endswith(str(out)) and out.is_file(), r.output
    assert not (tmp_path / "net_hessian.h5").exists()
    first = read_hessian(out)["attrs"]["seconds"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "--overwrite" in r.output and r.output.count("\n") == 1
    for flag in ("--overwrite", "--force"):  # --force: the old name, kept
        r = _run(*args, flag)
        assert r.exit_code == 0, r.output
        assert read_hessian(out)["attrs"]["seconds"] != first
        first = read_hessian(out)["attrs"]["seconds"]


def test_pyhessian_missing_gives_install_hint(monkeypatch: pytest.MonkeyPatch, digits_ckpt: Path,
                                              tmp_path: Path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pyhessian", None)  # makes `import pyhessian` raise ImportError
    r = CliRunner().invoke(main, ["hessian", str(digits_ckpt), "--backend", "pyhessian", "--n-samples", "8",
                                  "--quiet", "--out", str(tmp_path / "p.h5")])
    assert r.exit_code == 1 and "pip install landscape-toolkit[pyhessian]" in r.output


@pytest.mark.pyhessian
def test_agrees_with_pyhessian_top_eigenvalue(digits_ckpt: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyhessian")
    from landscape import load_checkpoint, load_dataset
    from landscape.analyses.hessian import eigenvalues
    from landscape.analyses.hessian.pyhessian import pyhessian_measure

    model, _ = load_checkpoint(digits_ckpt)
    x, y = load_dataset("digits", n=64, seed=0)
    ours = eigenvalues(model, (x, y), k=1, tol=1e-6)
    theirs = pyhessian_measure(model, (x, y), k=1, tol=1e-4, max_iter=200)
    # PyHessian stops on a relative change < tol of the power-iteration estimate.
    assert theirs["eigenvalues"][0] == pytest.approx(ours.eigenvalues[0], rel=1e-2)
    assert all(p.grad is None for p in model.parameters())
    assert theirs["n_hvp"] >= 2  # power iteration: at least two HVPs before its relative-change test can stop
    r = _run("hessian", str(digits_ckpt), "--backend", "pyhessian", "--n-samples", "64", "--batch-size", "32",
             "--trace", "--probes", "5", "--quiet", "--out", str(tmp_path / "ph.h5"), "--device", "cpu")
    assert r.exit_code == 0, r.output
    stored = read_hessian(tmp_path / "ph.h5")
    assert stored["eigenvalues"][0] == pytest.approx(ours.eigenvalues[0], rel=1e-2)
    assert stored["attrs"]["trace_method"] == "hutchinson"  # what PyHessian runs, whatever --trace-method says
    assert stored["attrs"]["n_hvp"] >= 2 + 5  # two batches: whole-data HVPs are counted once each
    assert torch.is_grad_enabled()
