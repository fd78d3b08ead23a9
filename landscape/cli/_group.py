"""The ``landscape`` click group and its error handling."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import click

from landscape._version import __version__
from landscape.core.threads import set_threads
from landscape.errors import LandscapeError


def _usage_error(exc: click.UsageError) -> None:
    """Click's usage errors as one line too (exit 2), pointing at the command's --help."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # click ≥ 8.2 signals a bare command this way: show its help
        exc.show()
        sys.exit(exc.exit_code)
    where = exc.ctx.command_path if exc.ctx is not None else "landscape"
    click.echo(f"error: {exc.format_message()} (see '{where} --help')", err=True)
    sys.exit(exc.exit_code)


# Commands that keep finished work when interrupted (epochs, surface points, study steps); every other command
# computes first and writes its file once, atomically, so an interruption leaves nothing behind.
_RESUMABLE = {"train": "add --resume to the same command to continue",
              "surface": "run the same command again to continue",
              "study": "run the same command again to continue",
              "demo": "run the same command again to continue"}


def _interrupt_advice(command: str | None) -> str:
    """What an interrupted ``command`` left on disk and how to go on; true for each command."""
    if command in _RESUMABLE:
        return f"finished work is saved; {_RESUMABLE[command]}"
    return "nothing was written; run the command again"


class _Group(click.Group):
    """A group that prints user errors as one line (LandscapeError: exit 1, usage: exit 2); tracebacks only under
    --debug."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            _usage_error(exc)
            raise  # not reached

    def invoke(self, ctx: click.Context) -> Any:
        shown = warnings.showwarning
        if not ctx.find_root().params.get("debug"):
            # The library's warnings (a run that will take days, steps that overflowed) as one line each.
            warnings.showwarning = lambda message, *_a, **_k: click.echo(f"warning: {message}", err=True)
        try:
            return self._invoke(ctx)
        finally:
            warnings.showwarning = shown

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            _usage_error(exc)
        except LandscapeError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except click.Abort as exc:
            # A command run inside another (a study's steps) turns Ctrl-C into Abort on its way out.
            if not isinstance(exc.__cause__, KeyboardInterrupt):
                raise
            click.echo(f"interrupted: {_interrupt_advice(ctx.invoked_subcommand)}", err=True)
            sys.exit(130)
        except KeyboardInterrupt:
            click.echo(f"interrupted: {_interrupt_advice(ctx.invoked_subcommand)}", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="landscape")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.option("--threads", type=click.IntRange(min=0), default=0, metavar="N",
              help="CPU threads for torch, recorded in result files [default: 0 = LANDSCAPE_THREADS or "
                   "OMP_NUM_THREADS if set, else the free cores: cores minus the 1-minute load, at least 1].")
def main(debug: bool, threads: int) -> None:
    """Loss landscapes, Hessian spectra and smoothness probes for neural networks."""
    # Before any command: torch's own default takes every core even when they are busy, which made a 2-minute demo
    # take 25 on a shared 2-core machine.
    set_threads(threads or None)
