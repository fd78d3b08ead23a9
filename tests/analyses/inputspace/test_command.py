"""``landscape inputspace`` / ``landscape attention``: files with their contract, one-line errors, plots."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import landscape.cli  # noqa: F401  mounts every command
from landscape import load_checkpoint, load_dataset, save_checkpoint
from landscape.analyses.attention.schema import read_attention
from landscape.analyses.inputspace.schema import read_inputspace
from landscape.cli import main
from landscape.training import seeded_model


def _ckpt(factory, name: str):
    path = factory.mktemp("ckpt") / f"{name}.pt"
    save_checkpoint(path, seeded_model(name, num_classes=10, in_channels=1, seed=0, width=0.5), {"dataset": "digits"})
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return _ckpt(tmp_path_factory, "resnet8")


@pytest.fixture(scope="module")
def se_ckpt(tmp_path_factory):
    return _ckpt(tmp_path_factory, "se_fmmnet8")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _clean_loss(ckpt, n, seed=0):
    model, _ = load_checkpoint(ckpt)
    x, y = load_dataset("digits", split="test", n=n, seed=seed)
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(x).double(), y, reduction="none").numpy(), y.numpy()


def test_around_writes_contract(ckpt, tmp_path):
    out = tmp_path / "a.h5"
    res = run("inputspace", ckpt, "--samples", 8, "--radius", "0:2:5", "--n-directions", 2, "--device", "cpu",
              "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    with h5py.File(out) as f:
        assert f.attrs["schema"] == "landscape.inputspace/1" and f.attrs["mode"] == "around"
        assert f["loss"].shape == f["prob"].shape == f["pred"].shape == (8, 2, 5)
        assert f["lipschitz"].shape == f["flips"].shape == (8, 2) and f["jacobian_norm"].shape == (8,)
    attrs, arrays = read_inputspace(out)
    clean, y = _clean_loss(ckpt, 8)
    # Radius 0 is the sample itself, whatever the direction.
    np.testing.assert_allclose(arrays["loss"][:, :, 0], np.repeat(clean[:, None], 2, axis=1), rtol=1e-5)
    np.testing.assert_array_equal(arrays["target"], y)
    assert attrs["directions"] == "random" and attrs["dataset"] == "digits" and attrs["split"] == "test"


def test_between_and_noise(ckpt, tmp_path):
    b, n = tmp_path / "b.h5", tmp_path / "n.h5"
    assert run("inputspace", ckpt, "--mode", "between", "--samples", 40, "--pairs", 6, "--steps", 5,
               "--out", b, "--quiet").exit_code == 0
    attrs, arr = read_inputspace(b)
    assert arr["loss"].shape == (6, 5) and arr["same_class"].sum() == 3
    np.testing.assert_array_equal(arr["same_class"], arr["pair_target"][:, 0] == arr["pair_target"][:, 1])
    # the stored pool settings map pair_index back to the samples
    from landscape import load_dataset

    assert attrs["n_samples"] == 40 and attrs["subset"]
    _, pool_y = load_dataset("digits", split=attrs["split"], n=attrs["n_samples"] if attrs["subset"] else None,
                             seed=attrs["seed"])
    np.testing.assert_array_equal(pool_y.numpy()[arr["pair_index"]], arr["pair_target"])
    res = run("inputspace", ckpt, "--mode", "noise", "--samples", 16, "--sigma", "0:1:3", "--draws", 2,
              "--out", n, "--quiet")
    assert res.exit_code == 0, res.output
    _, arr = read_inputspace(n)
    assert arr["loss"].shape == arr["acc"].shape == (2, 3)
    np.testing.assert_allclose(arr["loss"][:, 0], _clean_loss(ckpt, 16)[0].mean(), rtol=1e-5)  # σ = 0 is clean


def test_plot_and_compare_write_files(ckpt, se_ckpt, tmp_path, check_bad_figure_outputs):
    for mode, extra in (("around", ["--samples", 6, "--radius", "0:1:3"]),
                        ("between", ["--samples", 30, "--pairs", 4, "--steps", 3]),
                        ("noise", ["--samples", 8, "--sigma", "0:1:3", "--draws", 2])):
        files = []
        for c in (ckpt, se_ckpt):
            out = tmp_path / f"{c.stem}-{mode}.h5"
            assert run("inputspace", c, "--mode", mode, *extra, "--out", out, "--quiet").exit_code == 0
            files.append(out)
        res = run("plot", files[0])
        assert res.exit_code == 0, res.output
        assert files[0].with_suffix(".png").stat().st_size > 0
        fig = tmp_path / f"cmp-{mode}.png"
        res = run("compare", *files, "--labels", "ResNet,SE-FMMNet", "--out", fig)
        assert res.exit_code == 0, res.output
        assert fig.stat().st_size > 0
    check_bad_figure_outputs(files)


@pytest.mark.parametrize(("args", "fragment"), [
    (["--radius", "0:1"], "--radius '0:1' is not MIN:MAX:NUM"),
    (["--mode", "noise", "--directions", "gradient"], "--directions applies to --mode around only"),
    (["--mode", "between", "--radius", "0:5:3"], "--radius applies to --mode around only, not --mode between"),
    (["--mode", "noise", "--pairs", "3"], "--pairs applies to --mode between only"),
    (["--mode", "around", "--draws", "9"], "--draws applies to --mode noise only"),
    (["--mode", "between", "--sigma", "0:3:4"], "--sigma applies to --mode noise only"),
    (["--mode", "between", "--samples", 1], "no same-class pair exists"),
    (["--dataset", "nope"], "unknown dataset 'nope'"),
])
def test_errors_are_one_line(ckpt, tmp_path, args, fragment):
    res = run("inputspace", ckpt, *args, "--out", tmp_path / "x.h5", "--quiet")
    assert res.exit_code == 1
    assert res.output.count("\n") == 1 and res.output.startswith("error: ") and fragment in res.output


@pytest.mark.parametrize("flag", ["--overwrite", "--force"])  # --force: the old name, kept as an alias
def test_existing_output_needs_overwrite(ckpt, tmp_path, flag):
    out = tmp_path / "a.h5"
    out.write_bytes(b"")
    res = run("inputspace", ckpt, "--samples", 2, "--radius", "0:1:2", "--out", out, "--quiet")
    assert res.exit_code == 1 and "--overwrite" in res.output and out.read_bytes() == b""
    assert run("inputspace", ckpt, "--samples", 2, "--radius", "0:1:2", "--out", out, "--quiet",
               flag).exit_code == 0
    assert read_inputspace(out)[1]["loss"].shape == (2, 1, 2)


@pytest.mark.parametrize("importance", ["ablation", "taylor"])
def test_attention_cli_plot_and_compare(se_ckpt, tmp_path, importance, check_bad_figure_outputs):
    out = tmp_path / f"att-{importance}.h5"
    res = run("attention", se_ckpt, "--samples", 12, "--importance", importance, "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    assert "Spearman" in res.output
    attrs, modules = read_attention(out)
    assert attrs["schema"] == "landscape.attention/1" and attrs["importance"] == importance
    assert [m["name"] for m in modules] == [f"stages.{i}.0.attention" for i in range(3)]
    assert all(m["mean_weight"].shape == m["importance"].shape for m in modules)
    assert all(0 < m["mean_weight"].min() and m["mean_weight"].max() < 1 for m in modules)
    pooled_w = np.concatenate([m["mean_weight"] for m in modules])
    pooled_i = np.concatenate([m["importance"] for m in modules])
    from scipy.stats import spearmanr

    assert attrs["spearman"] == pytest.approx(spearmanr(pooled_w, pooled_i)[0])
    assert run("plot", out).exit_code == 0 and out.with_suffix(".png").stat().st_size > 0
    fig = tmp_path / "cmp.png"
    assert run("compare", out, out, "--out", fig).exit_code == 0 and fig.stat().st_size > 0
    check_bad_figure_outputs([out])


def test_attention_cli_without_attention_modules(ckpt, tmp_path):
    res = run("attention", ckpt, "--samples", 4, "--out", tmp_path / "x.h5")
    assert res.exit_code == 1 and res.output.count("\n") == 1
    assert "no attention modules" in res.output and "se_resnet8" in res.output


def test_every_result_kind_records_the_checkpoint_sha256(tmp_path):
    """Provenance under one attribute name for every result kind written from a checkpoint."""
    from landscape.core.checkpoint import file_sha256

    model = seeded_model("se_resnet8", num_classes=10, in_channels=1, seed=0)
    ckpt = save_checkpoint(tmp_path / "m.pt", model, {"dataset": "digits"})
    runner = CliRunner()
    outs = {"inputspace": tmp_path / "i.h5", "attention": tmp_path / "a.h5"}
    for cmd, extra in [("inputspace", ["--mode", "noise", "--sigma", "0:1:2", "--draws", "1", "--samples", "8"]),
                       ("attention", ["--samples", "8", "--importance", "taylor"])]:
        r = runner.invoke(main, [cmd, str(ckpt), *extra, "--quiet", "--out", str(outs[cmd])])
        assert r.exit_code == 0, r.output
        with h5py.File(outs[cmd]) as f:
            assert f.attrs["checkpoint_sha256"] == file_sha256(ckpt)
