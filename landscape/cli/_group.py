"""The ``landscape`` click group and its error handling."""

from __future__ import annotations

import re
import sys
import textwrap
import warnings
from typing import Any

import click

from landscape._version import __version__
from landscape.cli._flags import name_flags, options_by_argument
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
              "demo": "run the same command again to continue",
              "connect": "add --resume to the same command to continue the curve's training"}


def _interrupt_advice(command: str | None) -> str:
    """What an interrupted ``command`` left on disk and how to go on; true for each command."""
    if command in _RESUMABLE:
        return f"finished work is saved; {_RESUMABLE[command]}"
    return "nothing was written; run the command again"


def _failing_command(exc: BaseException) -> click.Command | None:
    """The innermost command whose body raised ``exc``: a study runs its steps' commands inside its own, and a
    step's message must name the step's flags."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is click.Command.invoke.__code__:  # the frame that calls a command's function
            found = tb.tb_frame.f_locals.get("self")
        tb = tb.tb_next
    return found if isinstance(found, click.Command) else None


# The first sentence of a help text: up to a full stop that ends it or is followed by a new sentence ("e.g. X" and
# "i.e. X" do not end one).
_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)\.(?=\s+[A-Z(])")


def summary(command: click.Command) -> str:
    """The one-sentence summary of ``command`` in the group's help: its ``short_help``, else the first sentence of
    its help, complete (click's default cuts it to the line with "...")."""
    if command.short_help:
        return command.short_help
    paragraph = " ".join((command.help or "").strip().split("\n\n")[0].split())
    end = _SENTENCE_END.search(paragraph)
    return paragraph[:end.end()] if end else paragraph


class _Group(click.Group):
    """A group that prints user errors as one line (LandscapeError: exit 1, usage: exit 2); tracebacks only under
    --debug."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Every command with its complete one-sentence summary, wrapped (click's default truncates with "...")."""
        rows = [(name, summary(cmd)) for name in self.list_commands(ctx)
                if (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden]
        if not rows:
            return
        with formatter.section("Commands"):
            # As click's definition list, but never breaking a word at its hyphen ("input-space").
            first = max(len(name) for name, _ in rows) + 2
            indent = " " * (formatter.current_indent + first)
            for name, text in rows:
                lines = textwrap.wrap(text, max(formatter.width - first - 2, 10), break_on_hyphens=False,
                                      break_long_words=False)
                formatter.write(f"{'':>{formatter.current_indent}}{name:<{first}}{lines[0] if lines else ''}\n")
                formatter.write("".join(f"{indent}{line}\n" for line in lines[1:]))

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
            # The library speaks of arguments (n_samples=500); the user typed flags (--n-samples 500).
            command = _failing_command(exc) or self.get_command(ctx, ctx.invoked_subcommand or "")
            options = options_by_argument([self, *([command] if command is not None else [])])
            click.echo(f"error: {name_flags(str(exc), options)}", err=True)
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
