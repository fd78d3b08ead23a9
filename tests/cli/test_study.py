"""Studies: TOML declarations run as resumable steps, with comparison figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from landscape.cli import main
from landscape.cli.study import BUNDLED, _as_args, load_study
from landscape.studies.spec import ANALYSIS_KEYS

STUDY = """
[study]
out = "{out}"

[[models]]
model = "resnet8"
label = "add"

[[models]]
model = "resnet8"
label = "gate"
model-option = ["merge=gate"]

[train]
dataset = "digits"
n-train = 128
epochs = 1
batch-size = 64
probe-every = 1
probe-eta = "0.1:0.2:2"
quiet = true

[[analyses]]
command = "predictiveness"
batches = 2
batch-size = 32
eta = "0.1:0.2:2"
quiet = true

[[analyses]]
command = "evaluate"
split = "test"
"""


def test_study_runs_resumes_and_compares(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(STUDY.format(out=tmp_path / "out"))
    runner = CliRunner()
    result = runner.invoke(main, ["study", str(path), "--figures", str(tmp_path / "figs")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    for label in ("add", "gate"):
        assert (out / label / "final.pt").exists() and (out / label / "predictiveness.h5").exists()
    assert (out / "predictiveness.png").stat().st_size > 0
    import h5py

    with h5py.File(out / "add" / "predictiveness.h5") as probes, h5py.File(out / "add" / "results" / "predictiveness.h5") as at_end:
        assert probes.attrs["source"] != at_end.attrs["source"]  # training probes are not overwritten by the analysis
    assert (tmp_path / "figs" / "predictiveness-training.png").exists()
    record = json.loads((out / "study.json").read_text())
    assert {"train/add", "train/gate", "predictiveness/add", "evaluate/gate"} <= set(record)
    again = runner.invoke(main, ["study", str(path)])
    assert again.exit_code == 0 and again.output.count("done earlier, skipped") == 6
    assert _litter(tmp_path) == []


def _litter(folder: Path) -> list[str]:
    """Temporary and lock files anywhere under ``folder``: a finished study leaves none."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith((".tmp", ".lock")) or ".tmp" in p.suffixes)


def test_bad_studies_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    for text, fragment in [("[[models]]\nlabel = 'x'", "at least one [[models]]"),
                           ("[[models]]\nmodel = 'resnet8'\n[[analyses]]\ncommand = 'rm'", "not one of"),
                           ("[models\n", "not valid TOML"), ("[oops]\n", "unknown section"),
                           ("models = 3", "at least one [[models]]"),
                           ("train = 3\n[[models]]\nmodel = 'resnet8'", "'train' must be a [train] table"),
                           ("analyses = 3\n[[models]]\nmodel = 'resnet8'", "'analyses' must be [[analyses]]"),
                           ("[[models]]\nmodel = 'resnet8'\n[[analyses]]\ncommand = 'hessian'\nout = 'x.h5'",
                            "'out' is set by the study itself"),
                           ("[[models]]\nmodel = 'resnet8'\nresume = false", "'resume' is set by the study")]:
        bad.write_text(text)
        result = CliRunner().invoke(main, ["study", str(bad)])
        assert result.exit_code == 1 and fragment in result.stderr, result.output
        assert result.stderr.count("\n") == 1, result.stderr
    result = CliRunner().invoke(main, ["study", "no_such_study"])
    assert result.exit_code == 1 and "bundled studies: digits_demo" in result.stderr


def test_options_become_arguments():
    assert _as_args({"x": "-1:1:5", "trace": True, "log": False, "model-option": ["a=1", "b=2"], "top_k": 3}) == [
        "--x", "-1:1:5", "--trace", "--model-option", "a=1", "--model-option", "b=2", "--top-k", "3"]


@pytest.mark.parametrize("name", ["digits_demo", "digits_demo_quick"])
def test_bundled_studies_parse(name):
    spec = load_study(name)
    assert [m["model"] for m in spec["models"]][:2] == ["resnet8", "fmmnet8"]


STUDY_FILES = sorted(Path(__file__).resolve().parents[2].glob("analyses/*.toml")) + sorted(BUNDLED.glob("*.toml"))


@pytest.mark.parametrize("path", STUDY_FILES, ids=lambda p: p.name)
def test_every_study_file_names_real_options(path):
    spec = load_study(path)

    def check(command, options):
        flags = {opt for p in main.commands[command].params for opt in getattr(p, "opts", [])}
        for key in options:
            assert "--" + key.replace("_", "-") in flags, f"{path.name}: {command} has no option --{key}"

    for model in spec["models"]:
        check("train", {**(spec.get("train") or {}), **{k: v for k, v in model.items() if k not in ("model", "label")}})
    for analysis in spec.get("analyses") or []:
        opts = {k: v for k, v in analysis.items() if k not in ANALYSIS_KEYS}  # the study's own keys
        check(analysis["command"], opts)
        check("compare", analysis.get("compare", {}))


def test_quick_demo_runs_end_to_end(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--quick", "--out", str(tmp_path / "demo"),
                                       "--figures", str(tmp_path / "figs")])
    assert result.exit_code == 0, result.output
    figs = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert figs == sorted(["surface1d.png", "surface_pca.png", "hessian.png", "predictiveness.png", "between.png",
                           "predictiveness-training.png"])
    assert _litter(tmp_path) == []


def test_quick_and_full_demo_default_to_separate_folders(monkeypatch):
    import landscape.cli.study

    seen = []
    monkeypatch.setattr(landscape.cli.study, "run_study", lambda spec, figures=None: seen.append(spec["study"]["out"]))
    for args in (["demo", "--quick"], ["demo"], ["demo", "--out", "elsewhere"]):
        assert CliRunner().invoke(main, args).exit_code == 0
    assert seen == ["runs/demo-quick", "runs/demo", "elsewhere"]


def test_a_rerun_sweeps_the_temp_files_of_a_killed_study(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".study.json.k1.tmp", out / ".evaluate.png.k2.tmp", out / ".predictiveness-training.png.k3.tmp"]
    for p in stale:
        p.write_bytes(b"")
    path = tmp_path / "s.toml"
    path.write_text(f'[study]\nout = "{out}"\n[[models]]\nmodel = "resnet8"\n[train]\nepochs = 1\nn-train = 64\n'
                    'quiet = true\n[[analyses]]\ncommand = "evaluate"\n')
    result = CliRunner().invoke(main, ["study", str(path)])
    assert result.exit_code == 0, result.output
    assert _litter(tmp_path) == []
    assert json.loads((out / "study.json").read_text()).keys() == {"train/resnet8", "evaluate/resnet8"}
