"""Attention weights vs channel importance for SE / CBAM models.

``ANALYSIS`` is this folder's registry record; it imports only the click command, so listing the commands stays
fast. The engine (``compute``), the result type with ``compute``/``run`` (``result``: what
``landscape.attention(model, data, …)`` and ``landscape.load`` give), HDF5 layout (``schema``), figures (``plot``)
and ``info`` text (``summary``) load when used.
"""

from landscape.analyses._base import Analysis, lazy
from landscape.analyses.attention.command import attention as _command

ANALYSIS = Analysis(
    name="attention",
    schema="landscape.attention/1",
    command=_command,
    plot=lazy("landscape.analyses.attention.plot", "plot"),
    compare=lazy("landscape.analyses.attention.plot", "compare"),
    summary=lazy("landscape.analyses.attention.summary", "summary"),
    load=lazy("landscape.analyses.attention.result", "load"),
)

__all__ = ["ANALYSIS"]
