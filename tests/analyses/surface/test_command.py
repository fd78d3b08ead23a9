import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from landscape.cli import main


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _eval_loss(ckpt, n, split="train", seed=0):
    import torch.nn.functional as F

    from landscape import load_checkpoint, load_dataset

    model, _ = load_checkpoint(ckpt)
    x, y = load_dataset("digits", split=split, n=n, seed=seed)
    import torch

    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


def test_1d_default_output_and_centre(tmp_path, digits_ckpt, check_bad_figure_outputs):
    ckpt = shutil.copy(digits_ckpt, tmp_path / "net.pt")
    r = _invoke("surface", ckpt, "--x", "-1:1:3", "--n-samples", 64, "--batch-size", 20, "--quiet")
    assert r.exit_code == 0, r.output
    out = tmp_path / "net.surface-1d-random.h5"  # STEM.KIND-VARIANT.h5, the name every command's output follows
    assert sorted(p.name for p in tmp_path.glob("*.h5")) == [out.name]
    with h5py.File(out) as f:
        assert f.attrs["complete"] and f["train_loss"].shape == (3,)
        assert f["train_loss"][1] == pytest.approx(_eval_loss(ckpt, 64), rel=1e-5)
        assert f.attrs["checkpoint_sha256"] and f.attrs["norm"] == "filter" and f.attrs["bn"] == "eval"
        assert len(f["directions/x"]) > 0
    info = _invoke("info", out)
    assert info.exit_code == 0 and "3/3 points (complete)" in info.output and "curvature" in info.output
    plot = _invoke("plot", out, "--out", tmp_path / "line.png")
    assert plot.exit_code == 0 and (tmp_path / "line.png").stat().st_size > 1000
    check_bad_figure_outputs([out])


def test_default_names_for_test_split_and_2d(tmp_path, digits_ckpt):
    from landscape.analyses.surface.command import default_output, old_default_output

    ckpt = str(tmp_path / "final.pt")
    assert default_output(ckpt, two_d=True, direction="pca", split="test") == str(tmp_path / "final.surface-2d-pca-test.h5")
    assert default_output(ckpt, two_d=False, direction="random", split="train") == str(
        tmp_path / "final.surface-1d-random.h5")
    assert old_default_output(ckpt, two_d=True, direction="pca", split="test") == str(
        tmp_path / "final_surface_2d_pca_test.h5")


def test_a_half_finished_file_under_the_old_default_name_is_resumed(tmp_path, digits_ckpt):
    ckpt = shutil.copy(digits_ckpt, tmp_path / "net.pt")
    args = ["surface", ckpt, "--x", "-1:1:3", "--n-samples", 32, "--quiet"]
    old, new = tmp_path / "net_surface_1d_random.h5", tmp_path / "net.surface-1d-random.h5"
    assert _invoke(*args, "--out", old).exit_code == 0
    with h5py.File(old, "r+") as f:  # as if the run had been stopped before its last two points
        want = f["train_loss"][()]
        f["done"][1:] = False
        f["train_loss"][1:] = np.nan
        f.attrs["complete"] = False
    r = _invoke(*args)
    assert r.exit_code == 0, r.output
    notes = [line for line in r.output.splitlines() if "resuming" in line]
    assert len(notes) == 1 and str(old) in notes[0] and str(new) in notes[0]
    assert "2 point(s) computed, 3 in all" in r.output and not new.exists()
    with h5py.File(old) as f:
        assert f.attrs["complete"] and f["done"][()].all()
        np.testing.assert_allclose(f["train_loss"][()], want, rtol=1e-12)
    # Once the new name exists it wins; with --overwrite the old file is left alone and the new name is used.
    r = _invoke(*args, "--overwrite")
    assert r.exit_code == 0 and "resuming" not in r.output and new.is_file(), r.output
    r = _invoke(*args)
    assert r.exit_code == 0 and "resuming" not in r.output and "0 point(s) computed" in r.output


def test_target_direction_reaches_the_target(tmp_path, digits_run):
    out = tmp_path / "t.h5"
    r = _invoke("surface", digits_run / "final.pt", "--dir", "target", "--target", digits_run / "epoch_0002.pt",
                "--dir-type", "states", "--x", "-0.5:1.5:5", "--split", "test", "--n-samples", 50, "--out", out,
                "--quiet")
    assert r.exit_code == 0, r.output
    with h5py.File(out) as f:
        loss = f["test_loss"][()]
    assert loss[1] == pytest.approx(_eval_loss(digits_run / "final.pt", 50, "test"), rel=1e-5)
    assert loss[3] == pytest.approx(_eval_loss(digits_run / "epoch_0002.pt", 50, "test"), rel=1e-4)


def test_pca_2d_with_path_resume_and_refusal(tmp_path, digits_run):
    out = tmp_path / "p.h5"
    args = ["surface", digits_run / "final.pt", "--dir", "pca", "--trajectory", digits_run, "--x", "-1:1:3",
            "--y", "-1:1:4", "--n-samples", 40, "--out", out, "--quiet"]
    assert _invoke(*args).exit_code == 0
    with h5py.File(out) as f:
        path = f["trajectory/coordinates"][()]
        assert path.shape == (len(list(digits_run.glob("epoch_*.pt"))), 2)
        np.testing.assert_allclose(path[-1], 0, atol=1e-5)  # the last checkpoint is the centre
        assert f["train_loss"].shape == (3, 4)
    again = _invoke(*args)
    assert again.exit_code == 0 and "0 point(s) computed" in again.output
    bad = CliRunner().invoke(main, [str(a) for a in args] + ["--seed", "1"])
    # The library's message names its arguments (seed=0, overwrite=True); the CLI shows this command's flags.
    assert bad.exit_code == 1 and "made with --seed 0, this run asks for --seed 1; pass --overwrite" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
    assert _invoke(*args, "--seed", "1", "--overwrite").exit_code == 0
    info = _invoke("info", out)
    assert "12/12" in info.output and "pca_explained_variance_ratio" in info.output
    for kind in ("contour", "surface3d"):
        assert _invoke("plot", out, "--kind", kind, "--out", tmp_path / f"{kind}.png").exit_code == 0


@pytest.mark.parametrize("args, fragment", [
    (["--x", "1:0:3"], "above MAX"),
    (["--x", "0:1"], "MIN:MAX:NUM"),
    (["--y", "0:1:x"], "whole number"),
    (["--dir", "target"], "--target"),
    (["--dir", "pca"], "--trajectory"),
    (["--precision-target", "-1"], "--precision-target -1.0 must be positive"),
    (["--bn", "recalibrate", "--dir-type", "states"], "--bn 'recalibrate' recomputes the BN statistics that "
                                                      "--dir-type 'states' perturbs"),
])
def test_bad_options_are_one_line_errors(tmp_path, digits_ckpt, args, fragment):
    r = CliRunner().invoke(main, ["surface", str(digits_ckpt), "--out", str(tmp_path / "x.h5"), "--n-samples", "8",
                                  "--quiet", *args])
    assert r.exit_code == 1, r.output
    assert fragment in r.output and len(r.output.strip().splitlines()) == 1


def test_directions_from_another_model_or_unused_options_are_refused(tmp_path, digits_ckpt, digits_run,
                                                                      digits_fmm_ckpt, digits_fmm_run):
    cases = [
        (["--target", digits_fmm_ckpt], "--target applies to --dir target only"),
        (["--trajectory", digits_run], "--trajectory applies to --dir pca only"),
        (["--eigen", tmp_path / "h.h5"], "--eigen applies to --dir eigen only"),
        (["--dir", "target", "--target", digits_fmm_ckpt], "is not the same model as"),
        (["--dir", "pca", "--trajectory", digits_fmm_run], "--trajectory must be the run that trained it"),
        (["--dir", "eigen", "--eigen", tmp_path / "no_vectors.h5"],
         f"--eigen {tmp_path / 'no_vectors.h5'} holds no eigenvectors; run landscape hessian"),
    ]
    from landscape.analyses.hessian.schema import write_hessian

    write_hessian(tmp_path / "no_vectors.h5", attrs={}, eigenvalues=np.ones(2))
    for args, fragment in cases:
        out = tmp_path / "x.h5"
        r = CliRunner().invoke(main, [str(a) for a in ["surface", digits_ckpt, "--x", "0:1:2", "--n-samples", 8,
                                                       "--quiet", "--out", out, *args]])
        assert r.exit_code == 1 and fragment in r.output and r.output.count("\n") == 1, r.output
        assert not out.exists()


def test_info_on_bad_and_foreign_files(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_text("nope")
    r = CliRunner().invoke(main, ["info", str(junk)])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    with h5py.File(tmp_path / "h.h5", "w") as f:
        f.attrs["schema"] = "landscape.hessian/1"
        f.attrs["k"] = 3
        f["eigenvalues"] = np.arange(3.0)
    r = _invoke("info", tmp_path / "h.h5")
    assert r.exit_code == 0 and "landscape.hessian/1" in r.output and "/eigenvalues" in r.output and "(3,)" in r.output
