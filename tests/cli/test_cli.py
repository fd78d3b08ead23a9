"""CLI: help and version, model listing, training, and one-line user errors with exit codes."""

from __future__ import annotations

import os

import pytest
import torch
from click.testing import CliRunner

from landscape import __version__
from landscape.cli import main
from landscape.models import list_models


@pytest.fixture
def runner():
    return CliRunner()


def test_version_and_help_on_every_command(runner):
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    assert runner.invoke(main, ["--help"]).exit_code == 0
    for name in main.commands:
        res = runner.invoke(main, [name, "--help"])
        assert res.exit_code == 0 and "Usage:" in res.output, name


def test_models_lists_every_model_with_its_parameter_count(runner):
    result = runner.invoke(main, ["models"])
    assert result.exit_code == 0
    lines = {line.split()[0]: line.split()[1] for line in result.output.splitlines()[1:]}
    assert set(lines) == set(list_models())
    assert lines["resnet20"] == "272,474" and lines["resnet8"] != lines["resnet110"]


def test_train_writes_run_folder_and_evaluate_reads_it(runner, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(main, ["train", "fmmnet8", "--dataset", "digits", "--epochs", "2", "--batch-size", "64",
                                  "--lr", "0.05", "--n-train", "200", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert {"metrics.csv", "final.pt", "last.pt", "epoch_0000.pt", "epoch_0002.pt"} <= set(os.listdir(out))
    res = runner.invoke(main, ["evaluate", str(out / "final.pt"), "--split", "test"])
    assert res.exit_code == 0 and "fmmnet8 on digits/test (360 samples)" in res.output
    again = runner.invoke(main, ["train", "fmmnet8", "--epochs", "2", "--n-train", "200", "--out", str(out), "--resume",
                                 "--quiet"])
    assert again.exit_code == 0, again.output


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _one_line_error(result, fragment):
    assert result.exit_code != 0
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in result.output, result.output
    assert fragment in err, err


def test_user_errors_are_one_line(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"x": _Evil()}, "evil.pt")
    torch.save(build_state := {"w": torch.zeros(2, 2)}, "plain.pt")
    del build_state
    (tmp_path / "foreign.pt").write_text("not a checkpoint")
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o500)
    cases = [
        (["evaluate", "missing.pt"], "not found"),
        (["evaluate", "foreign.pt"], "not a readable PyTorch checkpoint"),
        (["evaluate", "evil.pt"], "refusing to load"),
        (["evaluate", "plain.pt", "--model", "resnet8"], "does not fit model 'resnet8'"),
        (["train", "resnet21"], "did you mean"),
        (["train", "nosuchpkg.mod:make"], "cannot import module"),
        (["train", "resnet8", "--dataset", "cifar10", "--data-dir", "nowhere"], "data_batch_1"),
    ]
    if os.geteuid() != 0:  # root ignores permission bits
        cases.append((["train", "resnet8", "--epochs", "1", "--out", "ro/run"], "not writable"))
    else:
        (tmp_path / "afile").write_text("")
        cases.append((["train", "resnet8", "--epochs", "1", "--out", "afile/run"], "cannot create output folder"))
    for args, fragment in cases:
        _one_line_error(runner.invoke(main, args), fragment)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(("args", "fragment"), [
    (["surface", "m.pt", "--norm", "bogus"], "'bogus' is not one of"),
    (["info", "."], "is a directory"),
    (["hessian", "m.pt", "--out", "."], "is a directory"),
    (["surface", "m.pt", "--dir", "pca", "--trajectory", "m.pt"], "is a file"),
    (["surface"], "Missing argument"),
    (["nosuchcommand"], "No such command"),
    (["--nosuchoption"], "No such option"),
    (["plot", "m.pt", "--dpi", "0"], "0 is not in the range x>=1"),
    (["plot", "m.pt", "--levels", "1"], "1 is not in the range x>=2"),
])
def test_usage_errors_are_one_line_with_exit_code_2(runner, tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.pt").write_bytes(b"")
    result = runner.invoke(main, args)
    _one_line_error(result, fragment)
    assert result.exit_code == 2 and "--help" in result.stderr


@pytest.mark.parametrize("command", ["evaluate", "surface", "hessian", "predictiveness", "inputspace", "attention"])
def test_dataset_that_does_not_fit_the_model_is_refused_before_any_work(runner, digits_ckpt, tmp_path, command):
    out = tmp_path / "out.h5"
    extra = [] if command == "evaluate" else ["--out", str(out)]
    result = runner.invoke(main, [command, str(digits_ckpt), "--dataset", "synthetic-3x8x8", *extra])
    _one_line_error(result, "synthetic-3x8x8 has 3-channel images but the model in")
    assert "trained on digits" in result.stderr and not out.exists()


def test_bare_command_still_shows_help(runner):
    result = runner.invoke(main, [])
    assert result.output.startswith("Usage: ") and "Commands:" in result.output and not result.output.startswith("error")


def test_debug_shows_the_traceback(runner):
    result = runner.invoke(main, ["--debug", "evaluate", "missing.pt"])
    assert result.exit_code != 0 and result.exception is not None
    assert type(result.exception).__name__ == "LandscapeError"


def test_train_with_probes_writes_predictiveness(runner, tmp_path):
    import h5py

    out = tmp_path / "probed"
    result = runner.invoke(main, ["train", "resnet8", "--epochs", "1", "--n-train", "128", "--batch-size", "32",
                                  "--probe-every", "2", "--probe-eta", "0.1:0.3:3", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    with h5py.File(out / "predictiveness.h5", "r") as f:
        assert f.attrs["schema"] == "landscape.predictiveness/1"
        assert f["step"][:].tolist() == [0, 2]
        assert f["loss"].shape == (2, 3) and f["eta"][:] == pytest.approx([0.1, 0.2, 0.3])
    bad = runner.invoke(main, ["train", "resnet8", "--probe-eta", "0.1:0.2:2", "--out", str(tmp_path / "x")])
    _one_line_error(bad, "need --probe-every")


@pytest.mark.parametrize(("command", "said"), [
    ("surface", "interrupted: finished work is saved; run the same command again to continue"),
    ("hessian", "interrupted: nothing was written; run the command again"),
    ("predictiveness", "interrupted: nothing was written; run the command again"),
    ("inputspace", "interrupted: nothing was written; run the command again"),
    ("evaluate", "interrupted: nothing was written; run the command again"),
])
def test_ctrl_c_message_is_true_for_each_command(runner, digits_ckpt, tmp_path, monkeypatch, command, said):
    import landscape
    import landscape.core.data

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(landscape.core.data, "load_dataset", interrupted)
    monkeypatch.setattr(landscape, "load_dataset", interrupted)
    out = tmp_path / "out.h5"
    result = runner.invoke(main, [command, str(digits_ckpt), *([] if command == "evaluate" else ["--out", str(out)])])
    assert result.exit_code == 130 and result.stderr.strip() == said, result.output
    if command != "surface":
        assert not out.exists() and os.listdir(tmp_path) == []


def test_ctrl_c_in_a_study_step_says_the_study_continues(runner, tmp_path, monkeypatch):
    import landscape.training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(landscape.training, "train", interrupted)
    study = tmp_path / "s.toml"
    study.write_text(f'[study]\nout = "{tmp_path / "out"}"\n[[models]]\nmodel = "resnet8"\n[train]\nquiet = true\n')
    result = runner.invoke(main, ["study", str(study)])
    assert result.exit_code == 130, result.output
    assert result.stderr.strip().endswith("interrupted: finished work is saved; run the same command again to "
                                          "continue"), result.stderr


def test_library_warnings_print_as_one_line():
    import warnings

    from click.testing import CliRunner

    from landscape.cli import main

    @main.command("_warn_probe")
    def _warn_probe() -> None:
        warnings.warn("this will take about 3.0 days at the measured speed", stacklevel=1)

    try:
        res = CliRunner().invoke(main, ["_warn_probe"])
    finally:
        main.commands.pop("_warn_probe")
    assert res.exit_code == 0
    assert res.output == "warning: this will take about 3.0 days at the measured speed\n"
    assert warnings.showwarning.__module__ == "warnings"  # put back after the command


def test_an_error_quoting_a_line_break_stays_one_line():
    from landscape.errors import LandscapeError

    err = LandscapeError("unknown section 'a\nb'; use study")
    assert str(err) == "unknown section 'a\\nb'; use study"
