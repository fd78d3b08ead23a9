"""Study files are validated as a whole before any work: names, keys, types, every option of every step."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from landscape.cli import main
from landscape.cli.study import _as_args, _option_params, load_study
from landscape.errors import LandscapeError

MODEL = '[[models]]\nmodel = "resnet8"\n'


def _run(tmp_path: Path, text: str, *extra: str):
    study = tmp_path / "s.toml"
    study.write_text(f'[study]\nout = "{tmp_path / "out"}"\n{text}')
    return CliRunner().invoke(main, ["study", str(study), *extra])


def _one_line(result, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    err = result.stderr
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.mark.parametrize("label", ["../../x", "../x", "/tmp/abs", "a/b", "", ".", "..", ".hidden", "sp ace",
                                   "x,y", "tab\t", "é"])
def test_labels_must_be_plain_names(tmp_path, label):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    text = f'{MODEL}label = {json.dumps(label)}\n[train]\nepochs = 1\nn-train = 64\nquiet = true\n'
    _one_line(_run(work, text), "label", "not a plain name")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "s.toml"]  # nothing written anywhere


def test_a_model_name_that_is_not_a_plain_name_needs_a_label(tmp_path):
    _one_line(_run(tmp_path, '[[models]]\nmodel = "pkg.mod:make"\n'), "give the entry a 'label'")


@pytest.mark.parametrize(("text", "fragments"), [
    ('outt = "x"\n' + MODEL, ["unknown key 'outt' in [study]", "allowed: out (", "figure_prefix ("]),
    ("figure_prefix = 3\n" + MODEL, ["[study] figure_prefix must be a string, not an integer 3"]),
    (MODEL + "[train]\nepochs = [1, 2]\n", ["'epochs' takes one value, not a list [1, 2]"]),
    (MODEL + '[train]\nepochs = "three"\n', ["'epochs' = 'three'", "not a valid integer"]),
    (MODEL + "[train]\nepochs = 0\n", ["'epochs' = 0", "x>=1"]),
    (MODEL + "[train]\nlr = { peak = 1 }\n", ["'lr' takes one value, not a table"]),
    (MODEL + "[train]\nlr = nan\n", ["'lr' = nan must be a finite number"]),
    (MODEL + "[train]\nquiet = 1\n", ["'quiet' is a switch; give true or false, not an integer 1"]),
    (MODEL + "[train]\nepochs = true\n", ["'epochs' takes a value, not true/false"]),
    (MODEL + '[train]\nschedule = "linear"\n', ["'schedule' = 'linear'", "cosine"]),
    (MODEL + '[train]\ndataset = "digitz"\n', ["[train]: 'dataset': unknown dataset 'digitz'"]),
    (MODEL + '[train]\nmodel-option = ["merge"]\n', ["'model-option'", "not KEY=VALUE"]),
    (MODEL + "[train]\nepoch = 3\n", ["[train]: 'epoch' is not an option of landscape train",
                                      "did you mean 'epochs'"]),
    (MODEL + "lrr = 0.1\n", ["[[models]] #1: 'lrr' is not an option", "did you mean 'lr'"]),
    ('[[models]]\nmodel = "resnet21"\n', ["unknown model 'resnet21'", "did you mean"]),
    ("[[models]]\nmodel = 3\n", ["'model' must be a model name, not an integer 3"]),
    (MODEL + "label = 5\n", ["label must be a string, not an integer 5"]),
    (MODEL + '[[models]]\nmodel = "resnet8"\n', ["model labels must be unique"]),
    (MODEL + '[[analyses]]\ncommand = "hessian"\ntop_kk = 3\n', ["[[analyses]] #1: 'top_kk' is not an option of "
                                                                  "landscape hessian", "did you mean 'top-k'"]),
    (MODEL + '[[analyses]]\ncommand = "surface"\nx = "-1:1:3"\nnorm = "filtre"\n', ["'norm' = 'filtre'"]),
    (MODEL + '[[analyses]]\ncommand = "surface"\ncompare = { logg = true }\n',
     ["compare: 'logg' is not an option of landscape compare", "did you mean 'log'"]),
    (MODEL + '[[analyses]]\ncommand = "surface"\ncompare = { labels = "a" }\n', ["'labels' is set by the study"]),
    (MODEL + '[[analyses]]\ncommand = "surface"\ncompare = 3\n', ["'compare' must be a table"]),
    (MODEL + '[[analyses]]\ncommand = "hessian"\n[[analyses]]\ncommand = "hessian"\n',
     ["two analyses are named 'hessian'"]),
    (MODEL + '[[analyses]]\ncommand = "hessian"\nname = "../h"\n', ["name '../h' is not a plain name"]),
    (MODEL + 'label = "hessian.png"\n[[analyses]]\ncommand = "hessian"\n', ["file the study writes"]),
    (MODEL + "[train]\ntop_k = 1\ntop-k = 2\n", ["is not an option"]),
    (MODEL + '[[analyses]]\ncommand = "hessian"\ntop_k = 1\ntop-k = 2\n', ["name the same option"]),
])
def test_bad_study_is_refused_before_any_work(tmp_path, text, fragments):
    _one_line(_run(tmp_path, text), *fragments)
    assert not (tmp_path / "out").exists()


def test_option_typos_in_the_last_analysis_are_found_before_the_first_model_trains(tmp_path):
    text = (MODEL + '[train]\nepochs = 1\nn-train = 64\nquiet = true\n'
            '[[analyses]]\ncommand = "evaluate"\n[[analyses]]\ncommand = "hessian"\ntrace = true\nprobs = 4\n')
    _one_line(_run(tmp_path, text), "[[analyses]] #2: 'probs' is not an option", "did you mean 'probes'")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"train/a": 3}', "\xff\xfe"])
def test_a_corrupt_study_record_is_one_line_saying_what_to_do(tmp_path, content):
    out = tmp_path / "out"
    out.mkdir()
    (out / "study.json").write_bytes(content.encode("latin-1"))
    _one_line(_run(tmp_path, MODEL + "[train]\nepochs = 1\nn-train = 64\nquiet = true\n"),
              "study.json is damaged", "delete", "to redo every step")
    assert sorted(os.listdir(out)) == ["study.json"]


def test_an_unwritable_out_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("")
    res = CliRunner().invoke(main, ["study", "digits_demo_quick", "--out", str(tmp_path / "afile" / "study")])
    _one_line(res, "afile")
    res = CliRunner().invoke(main, ["study", "digits_demo_quick", "--out", str(tmp_path / "s"),
                                    "--figures", str(tmp_path / "afile" / "figs")])
    _one_line(res, "afile")
    assert not (tmp_path / "s" / "ResNet-8").exists()  # refused before the first model trained


def test_a_study_folder_in_use_is_refused(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from landscape.core.fs import output_lock
        with output_lock({str(out)!r}):
            print("locked", flush=True)
            sys.stdin.read()
    """)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        _one_line(_run(tmp_path, MODEL), f"landscape process {child.pid}", "is writing")
        assert not out.exists()
    finally:
        child.communicate("", timeout=60)


def test_off_switches_reach_the_command():
    params = _option_params("train")
    assert _as_args({"augment": False, "quiet": False, "no-augment": False}, params) == ["--no-augment"]
    assert _as_args({"augment": True, "no-augment": True}, params) == ["--augment", "--no-augment"]


# --- fuzzing the loader: whatever a TOML file holds, the answer is a study or one LandscapeError ----------------

KEYS = ["study", "models", "train", "analyses", "out", "figure_prefix", "model", "label", "command", "name",
        "compare", "epochs", "lr", "batch-size", "batch_size", "n-train", "top-k", "trace", "x", "y", "dir", "quiet",
        "model-option", "augment", "no-augment", "dataset", "seed", "kind", "log", "levels", "probe-every", "resume",
        "force", "labels", "eta", "split", "dpi", "bogus"]
SCALARS = st.one_of(st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["resnet8", "fmmnet8", "hessian", "surface", "evaluate", "compare", "digits",
                                     "-1:1:3", "merge=gate", "../../x", "a/b", "cosine", "pca", "1e400"]))
KEY = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=6))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(KEY, inner, max_size=4)), max_leaves=12)
TABLE = st.dictionaries(KEY, VALUES, max_size=6)
DOCUMENT = st.fixed_dictionaries({}, optional={
    "study": st.one_of(TABLE, VALUES), "models": st.one_of(st.lists(TABLE, min_size=1, max_size=3), VALUES),
    "train": st.one_of(TABLE, VALUES), "analyses": st.one_of(st.lists(TABLE, max_size=3), VALUES),
}) | st.dictionaries(KEY, VALUES, max_size=4)


def _toml(value) -> str:
    """A TOML value (inline tables and arrays) for what tomllib would give back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=DOCUMENT)
def test_fuzzed_study_files_load_or_raise_one_landscape_error(tmp_path, document):
    path = tmp_path / "fuzz.toml"
    path.write_text("".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in document.items()))
    try:
        spec = load_study(path)
    except LandscapeError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(spec["study"]["out"], str) and spec["models"]


@pytest.mark.parametrize(("option", "fragment"), [('command = "surface"\nx = 3', "x='3' is not MIN:MAX:NUM"),
                                                  ('command = "surface"\ny = "1:-1:3"', "y"),
                                                  ('command = "predictiveness"\neta = "0:1:0"', "eta"),
                                                  ('command = "inputspace"\nradius = "a:b:c"', "radius")])
def test_grid_specs_of_analyses_are_checked_before_any_training(tmp_path, option, fragment):
    path = tmp_path / "s.toml"
    path.write_text(f'{MODEL}[[analyses]]\n{option}\n')
    with pytest.raises(LandscapeError, match="analyses") as info:
        load_study(path)
    assert fragment in str(info.value)
