"""Library messages name arguments (``n_samples=500``); the CLI prints the running command's flags instead."""

from __future__ import annotations

import re
import subprocess
import sys

import click
import pytest
import torch
from click.testing import CliRunner

from landscape.cli import main
from landscape.cli._flags import name_flags, options_by_argument
from landscape.cli._group import summary
from landscape.core.data import load_dataset
from landscape.errors import LandscapeError


@click.command()
@click.option("--n-samples", "--samples", "n_samples", type=int)
@click.option("--min-samples", type=int)
@click.option("--overwrite", "--force", "overwrite", is_flag=True)
@click.option("--augment/--no-augment", default=None)
@click.option("--model", "model_name")
@click.option("--out", "out_dir")
def _cmd(**_: object) -> None:
    """A command with the kinds of options the rewrite meets."""


@pytest.fixture
def options():
    return options_by_argument([main, _cmd])


@pytest.mark.parametrize(("message", "shown"), [
    # A value: the flag, a space, the value.
    ("n_samples=500 is more than the 360 samples; lower n_samples=", "--n-samples 500 is more than the 360 "
                                                                    "samples; lower --n-samples"),
    ("lower n_samples=", "lower --n-samples"),
    ("lower n_samples=, or min_samples=", "lower --n-samples, or --min-samples"),
    # Whole identifiers only: min_samples= is its own option, never "min_" + samples=.
    ("min_samples=10 exceeds n_samples=5", "--min-samples 10 exceeds --n-samples 5"),
    # Booleans: True is the flag itself; False of an --on/--off pair is its --off.
    ("out.h5 exists; pass overwrite=True to replace it", "out.h5 exists; pass --overwrite to replace it"),
    ("augment=False was asked", "--no-augment was asked"),
    # A parameter named otherwise than its flag answers to the flag's name (model= of --model model_name).
    ("pass model= for a plain state dict", "pass --model for a plain state dict"),
    ("choose another out_dir=", "choose another --out"),
    ("choose another out=", "choose another --out"),
    # The group's own options.
    ("threads=64 is more than the 2 cores", "--threads 64 is more than the 2 cores"),
    # Left alone: unknown names, quoted user input, flags written out, comparisons, KEY=VALUE placeholders.
    ("width=2 vs 4", "width=2 vs 4"),
    ("model option 'n_samples=3' is odd", "model option 'n_samples=3' is odd"),
    ("--n-samples=3 and a.n_samples=3 and n_samples==3", "--n-samples=3 and a.n_samples=3 and n_samples==3"),
    ("not KEY=VALUE", "not KEY=VALUE"),
])
def test_arguments_become_the_commands_flags(options, message, shown):
    assert name_flags(message, options) == shown


def test_a_command_option_wins_over_a_flag_spelt_alike():
    @click.command()
    @click.option("--samples", "n_draws", type=int)
    @click.option("--n", "samples", type=int)
    def cmd(**_: object) -> None:
        """Options whose parameter and flag names cross."""

    assert name_flags("samples=3", options_by_argument([cmd])) == "--n 3"
    assert name_flags("n_draws=3", options_by_argument([cmd])) == "--samples 3"


def test_library_and_cli_say_the_same_thing_in_their_own_words(tmp_path):
    # The library speaks of its argument ...
    from landscape.training import train

    data = load_dataset("digits", n=8)
    with pytest.raises(LandscapeError) as err:
        train(torch.nn.Linear(64, 10), data, None, epochs=1, batch_size=4, lr=float("nan"), out_dir=tmp_path / "r")
    assert str(err.value) == "lr=nan must be a finite positive number"
    # ... the CLI of its flag, for the command being run.
    res = CliRunner().invoke(main, ["train", "resnet8", "--lr", "nan", "--out", str(tmp_path / "r")])
    assert res.exit_code == 1 and res.stderr == "error: --lr nan must be a finite positive number\n"


def test_a_plain_state_dict_asks_for_the_model_argument_or_flag(tmp_path):
    from landscape.core.checkpoint import load_checkpoint

    torch.save({"w": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(LandscapeError, match="say which model it is with model=$"):
        load_checkpoint(tmp_path / "plain.pt")
    res = CliRunner().invoke(main, ["evaluate", str(tmp_path / "plain.pt")])
    assert res.exit_code == 1 and res.stderr.endswith("say which model it is with --model\n")


def test_a_boolean_argument_becomes_the_bare_flag(tmp_path):
    from landscape.training import train

    data = load_dataset("digits", n=8)
    run = dict(epochs=1, batch_size=8, lr=0.01, out_dir=tmp_path / "r", progress=False)
    train(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), data, None, **run)
    with pytest.raises(LandscapeError, match="pass resume=True to continue it or choose another out_dir=$"):
        train(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), data, None, **run)
    res = CliRunner().invoke(main, ["train", "resnet8", "--n-train", "8", "--epochs", "1", "--quiet",
                                    "--out", str(tmp_path / "r")])
    assert res.exit_code == 1
    assert res.stderr.endswith("pass --resume to continue it or choose another --out\n"), res.stderr


def test_group_help_lists_every_command_with_its_whole_first_sentence():
    res = CliRunner().invoke(main, ["--help"], terminal_width=80)
    assert res.exit_code == 0
    listing = " ".join(res.output.split("Commands:")[1].split())
    assert "..." not in listing
    for name, command in main.commands.items():
        paragraph = " ".join(command.help.split("\n\n")[0].split())
        # The first sentence: up to a full stop followed by a capital (not the one of "e.g.").
        sentence = re.split(r"(?<!e\.g\.)(?<=\.)\s+(?=[A-Z])", paragraph)[0]
        assert f"{name} {sentence}" in listing, name
        assert summary(command) == sentence


def test_python_dash_m_landscape_runs_the_cli():
    res = subprocess.run([sys.executable, "-m", "landscape", "--version"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("landscape, version ")


def test_a_command_run_inside_another_speaks_with_its_own_flags():
    # A study runs its steps' commands inside its own: the step's message names the step's flags.
    from landscape.cli._group import _Group

    @click.group(cls=_Group)
    def group() -> None:
        """A group like landscape's."""

    @click.command()
    @click.option("--n-samples", "n_samples", type=int)
    def inner(n_samples: int | None) -> None:
        """The step."""
        raise LandscapeError(f"n_samples={n_samples} is too many")

    @group.command()
    @click.option("--draws", "n_samples", type=int)
    def outer(n_samples: int | None) -> None:
        """The study."""
        inner.main(["--n-samples", str(n_samples)], standalone_mode=False)

    res = CliRunner().invoke(group, ["outer", "--draws", "7"])
    assert res.exit_code == 1 and res.stderr == "error: --n-samples 7 is too many\n"
    group.add_command(inner)
    res = CliRunner().invoke(group, ["inner", "--n-samples", "7"])
    assert res.exit_code == 1 and res.stderr == "error: --n-samples 7 is too many\n"
