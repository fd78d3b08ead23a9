"""A miniature study end to end: 4 tiny-trained models × 2 seeds, every analysis at a few points; then the report
and every figure. A rerun does no work; a lost output is redone; a stored value edited changes the report."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner

from landscape.cli.figures import figures
from landscape.cli.study import load_study, run_study

STUDY = """
[study]
out = "{out}"
seeds = [0, 1]

[[models]]
model = "resnet8"
label = "ResNet"

[[models]]
model = "fmmnet8"
label = "FMMNet"

[[models]]
model = "se_resnet8"
label = "SE"

[[models]]
model = "se_resnet8"
label = "SE-add"
model-option = ["attention_merge=add"]

[train]
dataset = "digits"
n-train = 128
epochs = 2
save-every = 1
probe-every = 2
quiet = true

[[analyses]]
command = "surface"
name = "surface1d"
x = "-1:1:5"
n-samples = 32
quiet = true

[[analyses]]
command = "surface"
name = "surface2d"
x = "-1:1:3"
y = "-1:1:3"
n-samples = 32
quiet = true

[[analyses]]
command = "surface"
name = "surface_pca"
dir = "pca"
x = "-1:1:3"
y = "-1:1:3"
n-samples = 32
quiet = true

[[analyses]]
command = "hessian"
top-k = 1
trace = true
probes = 4
density = true
lanczos-steps = 5
n-samples = 32
quiet = true

[[analyses]]
command = "sharpness"
measures = "worst,worst_adaptive"
steps = 2
n-samples = 32
quiet = true

[[analyses]]
command = "predictiveness"
batches = 2
batch-size = 16
quiet = true

[[analyses]]
command = "inputspace"
name = "between"
mode = "between"
pairs = 4
steps = 5
quiet = true

[[analyses]]
command = "inputspace"
name = "noise"
mode = "noise"
sigma = "0:1:3"
draws = 1
n-samples = 32
quiet = true

[[analyses]]
command = "attention"
models = ["SE", "SE-add"]
samples = 32
quiet = true
"""
LABELS = ("ResNet", "FMMNet", "SE", "SE-add")
RESULTS = ("surface1d", "surface2d", "surface_pca", "hessian", "sharpness", "predictiveness", "between", "noise")
FIGURES = ("accuracy", "surfaces", "pca", "hessian", "predictiveness", "between", "noise", "attention", "measures")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    base = tmp_path_factory.mktemp("mini")
    path = base / "s.toml"
    path.write_text(STUDY.format(out=base / "out"))
    log: list[str] = []
    run_study(load_study(path), echo=log.append)
    return path, base / "out", log


def test_every_unit_file_report_and_figure_is_written(study):
    _, out, log = study
    for label in LABELS:
        for seed in (0, 1):
            run = out / label / f"seed-{seed}"
            assert (run / "final.pt").is_file() and (run / "metrics.csv").is_file()
            for name in RESULTS + (("attention",) if label.startswith("SE") else ()):
                with h5py.File(run / "results" / f"{name}.h5") as f:
                    assert f.attrs["seed"] == seed, name  # each replicate draws its own directions and subsets
            assert (run / "results" / "attention.h5").exists() == label.startswith("SE")
    assert sorted(p.stem for p in (out / "figures").iterdir()) == sorted(FIGURES)
    assert all(p.stat().st_size > 10_000 for p in (out / "figures").iterdir())
    data = json.loads((out / "report.json").read_text())
    assert data["seeds"] == [0, 1] and [m["label"] for m in data["models"]] == list(LABELS)
    assert {c["id"] for c in data["claims"]} == {"1", "2", "3", "4a", "4b"}
    # Two seeds: every verdict is inconclusive by rule, and the report says why.
    assert {c["verdict"] for c in data["claims"]} == {"inconclusive"}
    assert "fewer than 3 seeds" in (out / "report.md").read_text()
    assert any("[1/" in line and "train/ResNet/seed-0" in line for line in log)  # progress: step i of n
    assert any("| 4a. FMMNet is at least as accurate as ResNet | **inconclusive**" in line for line in log)
    metrics = data["metrics"]
    assert {"accuracy", "surface1d.curvature", "surface2d.rise", "hessian.top_eigenvalue", "hessian.trace",
            "predictiveness.beta", "between.jacobian_norm", "noise.retained", "attention.spearman"} <= set(metrics)
    assert metrics["surface1d.curvature"]["invariant"] is True and metrics["hessian.trace"]["invariant"] is False
    assert metrics["sharpness.worst_adaptive"]["invariant"] is True and metrics["sharpness.worst"]["invariant"] is False


def test_a_rerun_does_no_work_and_a_lost_output_is_redone(study, tmp_path):
    path, out, _ = study
    log: list[str] = []
    run_study(load_study(path), echo=log.append, report=False)
    steps = [line for line in log if line.startswith("[study] [")]
    assert steps and all("done earlier, skipped" in line for line in steps), steps
    lost = out / "FMMNet" / "seed-1" / "results" / "hessian.h5"
    kept = (out / "FMMNet" / "seed-0" / "results" / "hessian.h5").stat().st_mtime_ns
    lost.unlink()
    log.clear()
    run_study(load_study(path), echo=log.append, report=False)
    ran = [line for line in log if line.startswith("[study] [") and "skipped" not in line]
    assert len(ran) == 2 and "redoing" in ran[0] and "hessian/FMMNet/seed-1" in ran[1], ran
    assert lost.is_file() and (out / "FMMNet" / "seed-0" / "results" / "hessian.h5").stat().st_mtime_ns == kept


def test_figures_command_formats_and_stored_edits(study, tmp_path):
    from landscape.report import build_report

    _, out, _ = study
    result = CliRunner().invoke(figures, [str(out), "--out", str(tmp_path / "f"), "--format", "svg"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == sorted(f"{n}.svg" for n in FIGURES)
    before = build_report(out)["metrics"]["noise.accuracy"]["by_model"]["SE"]["values"]["0"]
    with h5py.File(out / "SE" / "seed-0" / "results" / "noise.h5", "r+") as f:
        f["acc"][...] = f["acc"][()] * 0 + 0.123
    after = build_report(out)["metrics"]["noise.accuracy"]["by_model"]["SE"]["values"]["0"]
    assert after == pytest.approx(0.123) and before != pytest.approx(0.123)
