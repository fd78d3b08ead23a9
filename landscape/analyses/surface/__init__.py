"""Loss surfaces: the loss (and accuracy) on a 1D or 2D grid of directions around a checkpoint.

``ANALYSIS`` is this folder's registry record; it imports only the click command, so listing the commands stays
fast. The engine (``compute``), HDF5 layout (``schema``), figures (``plot``) and ``info`` text (``summary``) load
when used.
"""

from landscape.analyses._base import Analysis, lazy
from landscape.analyses.surface.command import surface as _command

ANALYSIS = Analysis(
    name="surface",
    schema="landscape.surface/1",
    command=_command,
    plot=lazy("landscape.analyses.surface.plot", "plot"),
    compare=lazy("landscape.analyses.surface.plot", "compare"),
    summary=lazy("landscape.analyses.surface.summary", "summary"),
    info_lists_datasets=False,
    load=lazy("landscape.analyses.surface.result", "load"),
)

__all__ = ["ANALYSIS"]
