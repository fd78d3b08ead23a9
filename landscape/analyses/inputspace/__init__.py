"""Input-space smoothness: loss paths around and between real samples, and noise robustness.

``ANALYSIS`` is this folder's registry record; it imports only the click command, so listing the commands stays
fast. The engine (``compute``), the result type (``result``: ``InputSpace``, ``compute``, ``run``), HDF5 layout
(``schema``), figures (``plot``) and ``info`` text (``summary``) load when used.
"""

from landscape.analyses._base import Analysis, lazy
from landscape.analyses.inputspace.command import inputspace as _command

ANALYSIS = Analysis(
    name="inputspace",
    schema="landscape.inputspace/1",
    command=_command,
    plot=lazy("landscape.analyses.inputspace.plot", "plot"),
    compare=lazy("landscape.analyses.inputspace.plot", "compare"),
    summary=lazy("landscape.analyses.inputspace.summary", "summary"),
    load=lazy("landscape.analyses.inputspace.result", "load"),
)

__all__ = ["ANALYSIS"]
