"""A checkpoint never runs code: not through its pickle, nor through the model its metadata names.

Every command that loads a checkpoint, a --target or a --trajectory is tried with files whose metadata names
``os:system`` (and a test callable that leaves a marker); each must refuse in one line and leave no marker. A user's
own model still loads when the user names it with --model.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from landscape import LandscapeError, load_checkpoint, save_checkpoint
from landscape.cli import main
from landscape.core.checkpoint import FORMAT, atomic_torch_save

USER_MODULE = textwrap.dedent("""
    import pathlib
    import torch

    def tiny(num_classes, in_channels, hidden=6, marker=None):
        # Leaves a marker whenever it runs: the tests see whether landscape called it.
        pathlib.Path(marker or "USER_MODEL_CALLED").write_text("called")
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_channels * 64, hidden), torch.nn.ReLU(),
                                   torch.nn.Linear(hidden, num_classes))
""")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``sec_user_models:tiny``, importable, run in ``tmp_path`` (where its marker lands)."""
    (tmp_path / "sec_user_models.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield "sec_user_models:tiny"
    sys.modules.pop("sec_user_models", None)


def _hostile(path: Path, model: str, options: dict, like: Path) -> Path:
    """A file that passes ``torch.load(weights_only=True)`` (tensors and strings only) whose metadata names code."""
    raw = torch.load(like, weights_only=True)
    meta = {"model": model, "model_options": options, "num_classes": 10, "in_channels": 1, "dataset": "digits"}
    import json

    atomic_torch_save({"format": FORMAT, "state_dict": raw["state_dict"], "meta": json.dumps(meta)}, path)
    return path


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def _commands(ckpt: str, good: str, run: str) -> list[list[str]]:
    out = ["--out", "out.h5"]
    return [
        ["evaluate", ckpt, "--n-samples", "8"],
        ["surface", ckpt, "--x", "-0.1:0.1:3", "--n-samples", "8", "--quiet", *out],
        ["surface", good, "--dir", "target", "--target", ckpt, "--x", "0:1:3", "--n-samples", "8", "--quiet", *out],
        ["surface", good, "--dir", "pca", "--trajectory", run, "--x", "-0.1:0.1:3", "--y", "-0.1:0.1:3",
         "--n-samples", "8", "--quiet", *out],
        ["hessian", ckpt, "--n-samples", "8", *out],
        ["predictiveness", ckpt, "--n-samples", "16", *out],
        ["inputspace", ckpt, "--samples", "2", "--radius", "0:1:2", *out],
        ["attention", ckpt, "--samples", "8", *out],
    ]


@pytest.mark.parametrize("named", ["os:system", "test-callable"])
def test_no_command_runs_code_a_checkpoint_names(tmp_path, monkeypatch, digits_ckpt, user_module, named):
    marker = tmp_path / "MARKER"
    model, options = ("os:system", {"command": f"touch {marker}"}) if named == "os:system" else \
        (user_module, {"marker": str(marker)})
    ckpt = _hostile(tmp_path / "evil.pt", model, options, digits_ckpt)
    run = tmp_path / "run"
    run.mkdir()
    for i in range(3):  # a trajectory whose every checkpoint names the code
        _hostile(run / f"epoch_{i:04d}.pt", model, options, digits_ckpt)
    for args in _commands(str(ckpt), str(digits_ckpt), str(run)):
        result = CliRunner().invoke(main, args)
        assert not marker.exists(), args
        assert not Path("USER_MODEL_CALLED").exists(), args
        _one_line_error(result, f"records model '{model}'", "never imports code a file names",
                        f"--model {model}")
        assert not (tmp_path / "out.h5").exists(), args


def test_the_library_refuses_too_and_the_caller_may_name_the_code(tmp_path, user_module):
    marker = tmp_path / "MARKER"
    ckpt = save_checkpoint(tmp_path / "user.pt", _user_model(user_module, marker), {"dataset": "digits"})
    marker.unlink()
    with pytest.raises(LandscapeError, match="never imports code a file names") as err:
        load_checkpoint(ckpt)
    assert "\n" not in str(err.value) and not marker.exists()
    with pytest.raises(LandscapeError, match="records its model"):  # another model than recorded: refused, no code
        load_checkpoint(ckpt, model="os:getcwd")
    model, meta = load_checkpoint(ckpt, model=user_module)  # the caller names it: it is the caller's code
    assert marker.exists() and meta["model"] == user_module
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def _user_model(spec: str, marker: Path):
    from landscape import build_model

    return build_model(spec, num_classes=10, in_channels=1, marker=str(marker))


def test_user_model_passed_with_model_works_in_evaluate_and_surfaces(tmp_path, user_module):
    marker = tmp_path / "MARKER"
    net = _user_model(user_module, marker)
    run = tmp_path / "run"
    for i in range(3):  # a small trajectory: the weights move a little each epoch
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(i)))
        save_checkpoint(run / f"epoch_{i:04d}.pt", net, {"dataset": "digits", "epoch": i})
    final = save_checkpoint(run / "final.pt", net, {"dataset": "digits"})
    marker.unlink()
    runner = CliRunner()
    _one_line_error(runner.invoke(main, ["evaluate", str(final)]), "--model sec_user_models:tiny")
    assert not marker.exists()
    res = runner.invoke(main, ["evaluate", str(final), "--model", user_module, "--n-samples", "16"])
    assert res.exit_code == 0 and "accuracy" in res.output, res.output
    for extra in (["--dir", "pca", "--trajectory", str(run), "--y", "-0.1:0.1:3"],
                  ["--dir", "target", "--target", str(run / "epoch_0000.pt")]):
        out = tmp_path / f"{extra[1]}.h5"
        res = runner.invoke(main, ["surface", str(final), "--model", user_module, "--x", "-0.1:0.1:3", *extra,
                                   "--n-samples", "16", "--quiet", "--out", str(out)])
        assert res.exit_code == 0 and out.exists(), res.output


@pytest.mark.parametrize("command", ["surface", "hessian", "predictiveness", "inputspace", "attention", "train"])
@pytest.mark.parametrize("seed", [str(2**64), str(2**63), "-1"])
def test_seeds_torch_cannot_take_are_usage_errors(tmp_path, monkeypatch, command, seed):
    monkeypatch.chdir(tmp_path)
    target = "resnet8" if command == "train" else "m.pt"
    result = CliRunner().invoke(main, [command, target, "--seed", seed])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert "0<=x<=9223372036854775807" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("option", "fragment"), [
    ("width=nan", "option width=nan must be a finite number > 0"),
    ("width=-2", "option width=-2 must be a finite number > 0"),
    ("width=1e6", "needs about"),
    ("reduction=0", "option reduction=0 must be a whole number"),
    ("merge=xor", "option merge='xor'; use one of"),
])
def test_bad_model_options_on_a_plain_state_dict_are_one_line(tmp_path, digits_ckpt, option, fragment):
    plain = tmp_path / "plain.pt"
    torch.save(torch.load(digits_ckpt, weights_only=True)["state_dict"], plain)
    result = CliRunner().invoke(main, ["evaluate", str(plain), "--model", "resnet8", "--model-option", option,
                                       "--dataset", "digits", "--n-samples", "8"])
    _one_line_error(result, fragment, "plain.pt")


def test_a_study_of_a_user_model_passes_it_to_every_analysis(tmp_path, user_module):
    # The checkpoint cannot name its model for us, so the study (the user's own file) names it at every step.
    from landscape.cli.study import load_study, run_study

    study = tmp_path / "s.toml"
    study.write_text(f'[study]\nout = "{tmp_path / "out"}"\n[[models]]\nmodel = "{user_module}"\nlabel = "mine"\n'
                     '[train]\nepochs = 1\nn-train = 64\n[[analyses]]\ncommand = "evaluate"\nn-samples = 32\n'
                     '[[analyses]]\ncommand = "hessian"\nn-samples = 32\ntop-k = 1\n')
    run_study(load_study(study), echo=lambda _msg: None)
    assert (tmp_path / "out" / "mine" / "results" / "hessian.h5").is_file()
