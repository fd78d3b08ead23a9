"""Library messages speak of arguments (``n_samples=500``); under the CLI they name the running command's flags.

The library writes an argument as ``name=`` (``lower n_samples=``, ``pass overwrite=True``, ``choose another out=``)
so the same message reads right in a notebook. The CLI rewrites each ``name=`` whose ``name`` is one of the
command's (or the group's) options into that option's flag: ``n_samples=500`` -> ``--n-samples 500``,
``overwrite=True`` -> ``--overwrite``, ``model=`` -> ``--model``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import click

# A whole identifier followed by one '=' (not '=='): not the tail of a longer name or a dotted path, not a flag
# already written out (--x=), and not inside quoted text (quoted text is the user's input, shown verbatim).
_ARGUMENT = re.compile(r"(?<![\w.\-'\"])([A-Za-z_]\w*)=(?!=)((?:True|False)\b)?")
# What may follow a bare ``name=`` that has no value: the end, a space, closing punctuation.
_NO_VALUE = re.compile(r"$|[\s,;)\]}]")


def flag_of(option: click.Option) -> str:
    """The flag an option is shown by: its first long flag (``--overwrite`` of ``--overwrite/--force``)."""
    return next((o for o in option.opts if o.startswith("--")), option.opts[0])


def options_by_argument(commands: Iterable[click.Command]) -> dict[str, click.Option]:
    """Each argument name -> the option that sets it, over ``commands`` (later ones win: give the group first).

    An option answers to its parameter name (``n_samples`` of ``--n-samples``) and, failing that, to each of its
    long flags spelt as an identifier (``model`` of ``--model``, whose parameter is ``model_name``; ``force`` of
    the ``--force`` alias), so a command whose parameter names differ from the library's still gets its flags.
    """
    by_name: dict[str, click.Option] = {}
    by_flag: dict[str, click.Option] = {}
    for command in commands:
        for param in command.params:
            if not isinstance(param, click.Option) or not param.name:
                continue
            by_name[param.name] = param
            for opt in (*param.opts, *param.secondary_opts):
                if opt.startswith("--"):
                    by_flag[opt[2:].replace("-", "_")] = param
    return {**by_flag, **by_name}


def name_flags(message: str, options: dict[str, click.Option]) -> str:
    """``message`` with every ``name=`` of a known argument written as its flag (see the module docstring)."""

    def swap(m: re.Match[str]) -> str:
        option = options.get(m.group(1))
        if option is None:
            return m.group(0)
        flag, value = flag_of(option), m.group(2)
        if value is not None and option.is_flag:
            if value == "True":
                return flag
            return option.secondary_opts[0] if option.secondary_opts else f"no {flag}"
        if value is None and _NO_VALUE.match(m.string, m.end()):
            return flag  # "lower n_samples=" -> "lower --n-samples"
        return f"{flag} {value or ''}"  # "n_samples=500" -> "--n-samples 500"

    return _ARGUMENT.sub(swap, message)
