"""The ``landscape`` command line: a thin layer over the library.

The generic commands live here, one module each; every analysis's command comes from the registry
(``landscape.analyses.ANALYSES``) and is mounted on the group below.
"""

import importlib
import os

# The command line draws into files: no window, whatever the machine. Only the CLI chooses a backend, so
# notebooks using the library keep theirs (matplotlib reads this when it is first imported).
os.environ.setdefault("MPLBACKEND", "Agg")

from landscape.analyses import ANALYSES
from landscape.cli._group import main

# Importing a command module registers its command on ``main``.
COMMAND_MODULES = ("models", "train", "evaluate", "info", "plot", "study", "demo", "report", "figures")
for _name in COMMAND_MODULES:
    importlib.import_module(f"landscape.cli.{_name}")
for _analysis in ANALYSES.values():
    main.add_command(_analysis.command)

__all__ = ["main"]
