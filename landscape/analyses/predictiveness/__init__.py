"""Gradient predictiveness and effective β-smoothness along the gradient (Santurkar et al.).

``ANALYSIS`` is this folder's registry record; it imports only the click command, so listing the commands stays
fast. The engine (``compute``), result type (``result``: ``Predictiveness``, ``compute``, ``run``), HDF5 layout
(``schema``), figures (``plot``) and ``info`` text (``summary``) load when used.
"""

from landscape.analyses._base import Analysis, lazy
from landscape.analyses.predictiveness.command import predictiveness as _command

ANALYSIS = Analysis(
    name="predictiveness",
    schema="landscape.predictiveness/1",
    command=_command,
    plot=lazy("landscape.analyses.predictiveness.plot", "plot"),
    compare=lazy("landscape.analyses.predictiveness.plot", "compare"),
    summary=lazy("landscape.analyses.predictiveness.summary", "summary"),
    load=lazy("landscape.analyses.predictiveness.result", "load"),
)

__all__ = ["ANALYSIS"]
