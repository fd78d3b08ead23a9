"""The ``landscape`` command line: a thin layer over the library (one module per command)."""

from landscape.cli._group import main

# Importing a command module registers its command on ``main``.
from landscape.cli import models as _models  # noqa: F401  isort: skip
from landscape.cli import train as _train  # noqa: F401  isort: skip
from landscape.cli import demo as _demo  # noqa: F401  isort: skip
from landscape.cli import plot as _plot  # noqa: F401  isort: skip
from landscape.cli import evaluate as _evaluate  # noqa: F401  isort: skip

__all__ = ["main"]
