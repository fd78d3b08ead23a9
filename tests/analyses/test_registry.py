"""The registry: every analysis's record agrees with its folder, and the CLI and generic commands read it."""

import importlib

import h5py
import pytest
from click.testing import CliRunner

from landscape.analyses import ANALYSES, analysis_for_file, analysis_for_schema
from landscape.cli import main
from landscape.errors import LandscapeError


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_record_matches_its_folder(name):
    analysis = ANALYSES[name]
    assert analysis.name == name and analysis.command.name == name
    # The folder is the one the command lives in (the ``connect`` command lives in ``connectivity/``).
    folder = analysis.command.callback.__module__.rsplit(".", 1)[0]
    assert folder.startswith("landscape.analyses.")
    assert analysis.schema == importlib.import_module(f"{folder}.schema").SCHEMA
    assert main.commands[name] is analysis.command  # mounted from the registry
    plot = importlib.import_module(f"{folder}.plot")
    assert callable(plot.plot) and callable(plot.compare)
    assert analysis_for_schema(analysis.schema) is analysis


def test_help_lists_every_command():
    out = CliRunner().invoke(main, ["--help"]).output
    for name in (*ANALYSES, "models", "train", "evaluate", "info", "plot", "compare", "study", "demo"):
        assert f"  {name} " in out, name


def test_unknown_kind_is_one_line(tmp_path):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = "landscape.nothing/1"
    with pytest.raises(LandscapeError, match=r"holds 'landscape.nothing/1', which landscape cannot plot; known: "):
        analysis_for_file(path)
