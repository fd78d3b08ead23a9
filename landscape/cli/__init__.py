"""The ``landscape`` command line: a thin layer over the library (one module per command)."""

import importlib

from landscape.cli._group import main

# Importing a command module registers its command on ``main``.
COMMAND_MODULES = (
    "models", "train", "evaluate", "surface", "hessian", "info", "predictiveness", "inputspace", "attention",
    "plot", "study", "demo",
)
for _name in COMMAND_MODULES:
    importlib.import_module(f"landscape.cli.{_name}")

__all__ = ["main"]
