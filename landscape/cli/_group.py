"""The ``landscape`` click group and its error handling."""

from __future__ import annotations

import sys
from typing import Any

import click

from landscape._version import __version__
from landscape.errors import LandscapeError


class _Group(click.Group):
    """A group that prints a LandscapeError as one line (exit 1), with the traceback only under --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LandscapeError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted: finished work is saved; run the same command again to resume", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="landscape")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
def main(debug: bool) -> None:
    """Loss landscapes, Hessian spectra and smoothness probes for neural networks."""
