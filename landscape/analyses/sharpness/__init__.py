"""Sharpness: worst-case ρ-sharpness (L2/L∞, m-sharpness), average-case Gaussian sharpness, PAC-Bayes flatness σ,
each plain or adaptive (|w|-scaled), and a check of which measures survive function-preserving rescalings.

``ANALYSIS`` is this folder's registry record; it imports only the click command, so listing the commands stays
fast. The engine (``compute``), result type (``result``), HDF5 layout (``schema``), figures (``plot``), ``info``
text (``summary``) and the invariance check (``invariance``) load when used.
"""

from landscape.analyses._base import Analysis, lazy
from landscape.analyses.sharpness.command import sharpness as _command

ANALYSIS = Analysis(
    name="sharpness",
    schema="landscape.sharpness/1",
    command=_command,
    plot=lazy("landscape.analyses.sharpness.plot", "plot"),
    compare=lazy("landscape.analyses.sharpness.plot", "compare"),
    summary=lazy("landscape.analyses.sharpness.summary", "summary"),
    load=lazy("landscape.analyses.sharpness.result", "load"),
    info_lists_datasets=False,  # the summary names every measure and setting
)

__all__ = ["ANALYSIS"]
