"""Study files with seeds and per-analysis model lists: validated as a whole, each problem one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from landscape.cli import main
from landscape.cli.study import load_study
from landscape.errors import LandscapeError
from landscape.studies.runner import manifest, units

ROOT = Path(__file__).resolve().parents[2]
BASE = '[study]\nout = "o"\nseeds = [0, 1, 2]\n[[models]]\nmodel = "resnet8"\nlabel = "r"\n' \
       '[[models]]\nmodel = "se_resnet8"\nlabel = "se"\n'


@pytest.mark.parametrize(("text", "fragments"), [
    (BASE.replace("seeds = [0, 1, 2]", "seed = [0, 1]"), ["unknown key 'seed' in [study]", "did you mean 'seeds'"]),
    (BASE.replace("[0, 1, 2]", "3"), ["[study] seeds must be a non-empty list of integers", "an integer 3"]),
    (BASE.replace("[0, 1, 2]", "[]"), ["seeds must be a non-empty list"]),
    (BASE.replace("[0, 1, 2]", "[0, 0]"), ["lists a seed twice"]),
    (BASE.replace("[0, 1, 2]", '["a"]'), ["seeds must be a non-empty list of integers"]),
    (BASE.replace("[0, 1, 2]", "[-1]"), ["between 0 and 2^63-1"]),
    (BASE + "[train]\nseed = 4\n", ["[train]: 'seed' is set by the study itself ([study] seeds"]),
    (BASE + 'seed = 4\n', ["[[models]] #2: 'seed' is set by the study itself"]),
    (BASE + '[[analyses]]\ncommand = "attention"\nmodels = ["sE"]\n', ["'models' names 'sE'", "labels: r, se"]),
    (BASE + '[[analyses]]\ncommand = "attention"\nmodels = "se"\n', ["'models' must be a non-empty list"]),
    (BASE + '[[analyses]]\ncommand = "hessian"\ntop-kk = 2\n', ["'top-kk' is not an option of landscape hessian",
                                                                "did you mean 'top-k'"]),
    (BASE + '[[analyses]]\ncommand = "hessian"\noverwrite = true\n', ["'overwrite' is set by the study itself"]),
    (BASE + '[[models]]\nmodel = "resnet8"\nlabel = "report.md"\n', ["'report.md' is the name of a file the study"]),
])
def test_typos_and_bad_values_are_refused_naming_the_key(tmp_path, text, fragments):
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(LandscapeError) as info:
        load_study(path)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    result = CliRunner().invoke(main, ["study", str(path)])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert not (tmp_path / "o").exists()


def test_units_and_layout(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(BASE.replace('"o"', f'"{tmp_path / "o"}"'))
    spec = load_study(path)
    got = [(u.label, u.seed, u.folder.relative_to(tmp_path / "o").as_posix()) for u in units(spec)]
    assert got[:3] == [("r", 0, "r/seed-0"), ("se", 0, "se/seed-0"), ("r", 1, "r/seed-1")] and len(got) == 6
    m = manifest(spec)
    assert m["models"][1]["runs"] == {"0": "se/seed-0", "1": "se/seed-1", "2": "se/seed-2"}
    # A study without seeds keeps the old layout: one run folder per label.
    path.write_text(BASE.replace("seeds = [0, 1, 2]\n", "").replace('"o"', f'"{tmp_path / "o"}"'))
    assert [(u.seed, u.folder.name) for u in units(load_study(path))] == [(None, "r"), (None, "se")]


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_studies_are_valid(name):
    spec = load_study(ROOT / "analyses" / f"{name}.toml")
    assert len(spec["study"]["seeds"]) >= 3
    assert spec["train"]["dataset"] == name and spec["train"]["data-dir"]
    models = {m["model"] for m in spec["models"]}
    assert {"resnet20", "resnet56", "resnet110", "fmmnet20", "fmmnet56", "fmmnet110", "se_resnet20",
            "cbam_resnet20"} <= models
    assert any("attention_merge=add" in m.get("model-option", []) for m in spec["models"])
    surface2d = next(a for a in spec["analyses"] if a.get("name") == "surface2d")
    assert (surface2d["x"], surface2d["y"]) == ("-1:1:51", "-1:1:51")  # loss-landscape's default 2D grid
    assert {a["command"] for a in spec["analyses"]} >= {"surface", "hessian", "predictiveness", "inputspace",
                                                         "attention"}


def test_the_demo_tests_every_claim():
    spec = load_study("digits_demo")
    assert spec["study"]["seeds"] == [0, 1, 2]
    assert [(m["model"], m.get("model-option")) for m in spec["models"]] == [
        ("resnet8", None), ("fmmnet8", None), ("se_resnet8", None), ("se_resnet8", ["attention_merge=add"])]
    commands = {a["command"] for a in spec["analyses"]}
    assert commands >= {"surface", "hessian", "predictiveness", "inputspace", "attention"}
    assert {a.get("mode") for a in spec["analyses"] if a["command"] == "inputspace"} == {"between", "noise"}
