"""``landscape study FILE.toml``: a whole study declared in TOML, run as resumable (model, seed) units.

The library does the work (``landscape.studies``: validation, the runner, the report); this module hands it the
``landscape`` commands the steps run and prints the verdict table at the end. See ``analyses/*.toml``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from landscape.cli._group import main
from landscape.studies import spec as _spec
from landscape.studies.spec import BUNDLED, STUDY_KEYS, as_args

__all__ = ["BUNDLED", "STUDY_KEYS", "check_study", "load_study", "run_study", "study"]
_as_args = as_args  # the old private names, which tests and scripts import


def _option_params(command: str) -> dict[str, click.Option]:
    return _spec.option_params(command, main.commands)


def check_study(spec: dict[str, Any], *, source: str = "study") -> dict[str, Any]:
    """Validate a parsed study against the ``landscape`` commands (see :func:`landscape.studies.check_study`)."""
    return _spec.check_study(spec, commands=main.commands, source=source)


def load_study(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a study file, or a bundled study by name (``digits_demo``)."""
    return _spec.load_study(path, commands=main.commands)


def run_study(spec: dict[str, Any], *, echo: Callable[[str], Any] = click.echo, figures: str | None = None,
              report: bool = True) -> Path:
    """Run (or continue) a study with the ``landscape`` commands; then its report, figures and verdict table."""
    from landscape.studies import run_study as run

    out = run(spec, commands=main.commands, echo=echo, figures=figures, report=report)
    if report:
        from landscape.report import verdict_table

        echo("")
        echo(verdict_table(out))
        echo(f"report: {out / 'report.md'} (and report.json); figures: {out / 'figures'}/")
    return out


@main.command()
@click.argument("file")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default: the file's study.out).")
@click.option("--figures", type=click.Path(file_okay=False), default=None, help="Also copy the comparison figures here.")
def study(file: str, out: str | None, figures: str | None) -> None:
    """Run the study declared in FILE (a TOML path, or a bundled study name such as digits_demo)."""
    spec = load_study(file)
    if out:
        spec["study"]["out"] = out
    run_study(spec, figures=figures)
