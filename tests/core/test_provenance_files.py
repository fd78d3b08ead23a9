"""Every kind of result file records the same provenance record, with the values of the run that wrote it."""

from __future__ import annotations

import dataclasses

import h5py
import pytest
import torch
from click.testing import CliRunner

from landscape import load_checkpoint
from landscape.cli import main
from landscape.core.provenance import Provenance, weights_sha256
from landscape.core.store import read_attrs

COMMANDS = {
    "surface": ["surface", "{ckpt}", "--x", "-0.5:0.5:3", "--n-samples", "32", "--quiet"],
    "hessian": ["hessian", "{ckpt}", "--top-k", "1", "--n-samples", "32", "--quiet"],
    "predictiveness": ["predictiveness", "{ckpt}", "--n-samples", "32", "--batch-size", "16", "--batches", "2",
                       "--eta", "0.1:0.2:2"],
    "inputspace": ["inputspace", "{ckpt}", "--mode", "noise", "--samples", "16", "--sigma", "0:1:2", "--draws", "1",
                   "--quiet"],
    "attention": ["attention", "{se_ckpt}", "--samples", "16", "--importance", "taylor", "--quiet"],
    "connect": ["connect", "{ckpt}", "{ckpt}", "--points", "3", "--n-samples", "32", "--recal-samples", "32",
                "--quiet"],
    "sharpness": ["sharpness", "{ckpt}", "--n-samples", "32", "--steps", "2", "--draws", "2", "--quiet"],
    "curvature": ["curvature", "{ckpt}", "--n-samples", "32", "--quiet"],
}


@pytest.mark.parametrize("kind", sorted(COMMANDS))
def test_every_result_kind_records_the_provenance(tmp_path, digits_ckpt, se_digits_ckpt, kind):
    ckpt = se_digits_ckpt if kind == "attention" else digits_ckpt
    out = tmp_path / f"{kind}.h5"
    args = [a.format(ckpt=digits_ckpt, se_ckpt=se_digits_ckpt) for a in COMMANDS[kind]]
    res = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    with h5py.File(out, "r") as f:
        attrs = read_attrs(f)
    missing = [field.name for field in dataclasses.fields(Provenance) if field.name not in attrs]
    assert not missing, f"{kind} lacks {missing}"
    model, meta = load_checkpoint(ckpt)
    record = Provenance.from_attrs(attrs)
    assert record.weights_sha256 == weights_sha256(model)
    assert record.checkpoint_sha256 == meta["sha256"]
    assert record.model == meta["model"] and record.dataset == "digits"
    assert record.torch_version == str(torch.__version__) and record.threads >= 1
    assert record.dtype == "float32" and record.device == "cpu" and record.seed == 0


def test_training_probe_file_records_the_provenance_of_the_start_weights(tmp_path):
    """``landscape train --probe-every`` writes predictiveness.h5 with the record of the weights training began
    from (epoch_0000.pt); a resumed run keeps that record and the file stays resumable."""
    run = tmp_path / "run"
    args = ["train", "resnet8", "--n-train", "32", "--batch-size", "16", "--width", "0.5", "--probe-every", "1",
            "--probe-eta", "0.1", "--device", "cpu", "--quiet", "--out", str(run)]
    res = CliRunner().invoke(main, [*args, "--epochs", "1"])
    assert res.exit_code == 0, res.output
    with h5py.File(run / "predictiveness.h5", "r") as f:
        attrs = read_attrs(f)
    missing = [field.name for field in dataclasses.fields(Provenance) if field.name not in attrs]
    assert not missing, f"the probe file lacks {missing}"
    start, _ = load_checkpoint(run / "epoch_0000.pt")
    record = Provenance.from_attrs(attrs)
    assert record.weights_sha256 == weights_sha256(start)
    assert record.model == "resnet8" and record.model_options == {"width": 0.5} and record.dataset == "digits"
    assert record.seed == 0 and record.split == "train" and record.device == "cpu" and record.dtype == "float32"
    assert record.torch_version == str(torch.__version__) and record.threads >= 1 and attrs["start_step"] == 0
    res = CliRunner().invoke(main, [*args, "--epochs", "1", "--resume"])  # resumes the probe file: rows kept
    assert res.exit_code == 0, res.output
    with h5py.File(run / "predictiveness.h5", "r") as f:
        assert read_attrs(f)["weights_sha256"] == record.weights_sha256 and f["step"][:].tolist() == [0, 1]
