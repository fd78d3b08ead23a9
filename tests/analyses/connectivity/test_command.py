"""``landscape connect`` end to end on two tiny digits checkpoints: the file, info, plot, compare, resume, errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import landscape
from landscape.analyses.connectivity.result import Connectivity
from landscape.cli import main


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """resnet8 (width 0.25) trained 2 epochs on 320 digits with seeds 0 and 1, and an fmmnet8 of the same size."""
    from landscape import load_dataset
    from landscape.training import seeded_model, train

    out = {}
    for key, name, seed in (("a", "resnet8", 0), ("b", "resnet8", 1), ("fmm", "fmmnet8", 0)):
        run = tmp_path_factory.mktemp(f"connect_{key}")
        model = seeded_model(name, num_classes=10, in_channels=1, seed=seed, width=0.25)
        train(model, load_dataset("digits", n=320, seed=seed), None, epochs=2, batch_size=64, lr=0.05, seed=seed, out_dir=run,
              progress=False, meta={"dataset": "digits", "data_dir": None})
        out[key] = run / "final.pt"
    return out


FAST = ["--points", "5", "--n-samples", "64", "--recal-samples", "64", "--quiet"]
CURVE = ["--curve", "bezier", "--curve-epochs", "1", "--curve-batch-size", "128"]


def invoke(*args: object) -> tuple[int, str]:
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, res.output


def test_end_to_end(tmp_path, pair):
    out = tmp_path / "ab.h5"
    code, text = invoke("connect", pair["a"], pair["b"], *FAST, *CURVE, "--align", "--plane", "3", "--out", out)
    assert code == 0, text
    assert "linear: train loss barrier" in text and "curve: train loss barrier" in text
    r = landscape.load(out)
    assert isinstance(r, Connectivity) and set(r.paths) == {"linear", "linear_aligned", "curve"}
    assert r.t.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert r.attrs["checkpoint_b"] == str(pair["b"].resolve()) and r.attrs["align"] is True
    assert r.endpoint_b["checkpoint_sha256"] == landscape.load_checkpoint(pair["b"])[1]["sha256"]
    assert r.attrs["n_train"] == 64 and r.attrs["n_test"] == 64 and r.attrs["bn"] == "recalibrate"
    # Every path starts at A; the curve ends at the aligned B, the linear path at B: same function.
    ends = {name: p["train_loss"][[0, -1]] for name, p in r.paths.items()}
    assert np.allclose(ends["curve"], ends["linear"], atol=1e-5) and ends["linear"][0] == ends["curve"][0]
    assert r.plane is not None and r.plane["loss"].shape == (3, 3)
    curve_ckpt = tmp_path / "ab.curve.pt"
    assert curve_ckpt.is_file()
    with h5py.File(out) as f:
        assert f.attrs["schema"] == "landscape.connectivity/1"
        assert f["paths/linear"].attrs["barrier_train_height"] == r.barrier("linear")[0]
    code, text = invoke("info", out)
    assert code == 0 and "barrier linear (train)" in text and "alignment" in text and "plane" in text, text
    code, text = invoke("plot", out, "--out", tmp_path / "ab.png")
    assert code == 0 and (tmp_path / "ab.png").stat().st_size > 0, text
    # Again without --overwrite: refused; with --resume (the finished curve is re-read): the same numbers.
    code, text = invoke("connect", pair["a"], pair["b"], *FAST, *CURVE, "--align", "--plane", "3", "--out", out)
    assert code == 1 and text.startswith("error: ") and "--overwrite" in text, text
    out.unlink()
    code, text = invoke("connect", pair["a"], pair["b"], *FAST, *CURVE, "--align", "--plane", "3", "--out", out)
    assert code == 1 and "holds a curve's training; add --resume" in text, text
    code, text = invoke("connect", pair["a"], pair["b"], *FAST, *CURVE, "--align", "--plane", "3", "--out", out,
                        "--resume")
    assert code == 0, text
    again = landscape.load(out)
    for name, p in r.paths.items():
        assert np.array_equal(again.paths[name]["train_loss"], p["train_loss"]), name
    # Another curve setting with --resume: refused, naming what differs.
    code, text = invoke("connect", pair["a"], pair["b"], *FAST, *CURVE, "--curve-lr", "0.1", "--align",
                        "--out", tmp_path / "ab.h5", "--overwrite", "--resume")
    assert code == 1 and "cannot resume" in text and "lr: checkpoint 0.05 vs now 0.1" in text, text


def test_default_output_and_compare(tmp_path, pair):
    code, text = invoke("connect", pair["a"], pair["b"], *FAST)
    assert code == 0, text
    default = pair["a"].parent / "final.connect.h5"
    assert text.strip().endswith(str(default)) and default.is_file()
    r = Connectivity.from_file(default)
    assert set(r.paths) == {"linear"} and r.curve is None and r.alignment is None
    code, text = invoke("connect", pair["b"], pair["a"], *FAST, "--bn", "interpolate", "--out", tmp_path / "ba.h5")
    assert code == 0, text
    assert landscape.load(tmp_path / "ba.h5").attrs["bn"] == "interpolate"
    code, text = invoke("compare", default, tmp_path / "ba.h5", "--out", tmp_path / "cmp.png")
    assert code == 0 and (tmp_path / "cmp.png").stat().st_size > 0, text
    default.unlink()


def test_one_line_errors(tmp_path, pair):
    cases = [
        (("connect", pair["a"], pair["fmm"], *FAST), "is not the same model as"),
        (("connect", pair["a"], pair["b"], *FAST, "--plane", "3"), "--plane needs --curve"),
        (("connect", pair["a"], pair["b"], *FAST, "--curve-lr", "0.1"), "--curve-lr applies to --curve"),
        (("connect", pair["a"], pair["b"], *FAST, "--resume"), "--resume continues a curve"),
        (("connect", pair["a"], pair["b"], *FAST, "--out", pair["b"]), "is the checkpoint B itself"),
    ]
    for args, fragment in cases:
        code, text = invoke(*args, "--out", tmp_path / "x.h5") if "--out" not in args else invoke(*args)
        assert code == 1 and text.startswith("error: ") and text.count("\n") == 1, text
        assert fragment in text, text
    assert not (tmp_path / "x.h5").exists()


MLP = """
from torch import nn


def build(num_classes, in_channels):  # digits: 8×8 single-channel images
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                         nn.Linear(16, num_classes))
"""


def test_user_model_checkpoints(tmp_path, monkeypatch):
    """A user's ``module:callable`` (an MLP), named on the command line: aligned and connected by a curve."""
    import torch

    from landscape import save_checkpoint

    monkeypatch.chdir(tmp_path)
    (tmp_path / "conn_tiny_mlp.py").write_text(MLP)
    monkeypatch.syspath_prepend(str(tmp_path))
    from conn_tiny_mlp import build  # type: ignore[import-not-found]

    meta = {"model": "conn_tiny_mlp:build", "model_options": {}, "num_classes": 10, "in_channels": 1,
            "dataset": "digits"}
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = build(10, 1)
        save_checkpoint(tmp_path / f"m{seed}.pt", net, meta)
    code, text = invoke("connect", "m0.pt", "m1.pt", "--model", "conn_tiny_mlp:build", *FAST, "--align",
                        "--curve", "polychain", "--curve-epochs", "1", "--out", "mlp.h5")
    assert code == 0, text
    r = landscape.load(tmp_path / "mlp.h5")
    assert r.alignment["kind"] == "mlp" and set(r.alignment["perms"]) == {"P0", "P1"}
    assert r.attrs["model"] == "conn_tiny_mlp:build" and r.attrs["has_bn"] is False
    code, text = invoke("connect", "m0.pt", "m1.pt", *FAST, "--out", "x.h5")
    assert code == 1 and "landscape never imports code a file names" in text, text
