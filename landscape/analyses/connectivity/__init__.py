"""Mode connectivity: loss barriers on the linear path between two models, before and after permutation
alignment, and along trained Bézier / polygonal-chain curves, with the loss plane through the bend.

``ANALYSIS`` is this folder's registry record (command ``landscape connect``); it imports only the click command.
The engine (``compute``, ``curve``, ``align``), the result (``result``), the HDF5 layout (``schema``), figures
(``plot``) and ``info`` text (``summary``) load when used.
"""

from landscape.analyses._base import Analysis, lazy
from landscape.analyses.connectivity.command import connect as _command

ANALYSIS = Analysis(
    name="connect",
    schema="landscape.connectivity/1",
    command=_command,
    plot=lazy("landscape.analyses.connectivity.plot", "plot"),
    compare=lazy("landscape.analyses.connectivity.plot", "compare"),
    summary=lazy("landscape.analyses.connectivity.summary", "summary"),
    load=lazy("landscape.analyses.connectivity.result", "load"),
)

__all__ = ["ANALYSIS"]
