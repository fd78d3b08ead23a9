"""The contract of an analysis: one small record per folder, read by the CLI and the generic commands."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import click

Path = str | os.PathLike[str]


@dataclass(frozen=True)
class Analysis:
    """What ``landscape`` needs to know of an analysis; the heavy parts are imported only when called.

    ``schema`` is the HDF5 schema its files carry (``"landscape.surface/1"``): files of that kind are plotted and
    compared through it, and ``summary`` (lines for ``landscape info``; None: the generic listing) applies to
    files of that exact version.
    """

    name: str
    schema: str
    command: click.Command
    plot: Callable[..., Any]  # plot(path, *, out, options: PlotOptions)
    compare: Callable[..., Any]  # compare(paths, *, labels, out, options: PlotOptions)
    summary: Callable[[Path], list[str]] | None = None
    # load(path) -> the result read back, for ``landscape.load`` (the analysis's result type where it has one).
    load: Callable[..., Any] | None = None
    # info also lists the file's datasets after the summary (the surface summary says all there is to say).
    info_lists_datasets: bool = True

    @property
    def kind(self) -> str:
        """The schema without its version: ``"landscape.surface"``."""
        return self.schema.split("/")[0]


def lazy(module: str, name: str) -> Callable[..., Any]:
    """``module.name``, imported on the first call (keeps ``landscape --help`` free of torch, h5py, matplotlib)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"``{module}.{name}``, imported when called."
    return call

