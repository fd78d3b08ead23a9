"""Curvature along training: the top Hessian eigenvalue against 2/η (the edge of stability, Cohen et al. 2021),
the trace, and Adam's preconditioned sharpness (Cohen et al. 2022), tracked during ``landscape train
--track-curvature`` or measured over a run's checkpoints by ``landscape curvature``.

``ANALYSIS`` is this folder's registry record; it imports only the click command, so listing the commands stays
fast. The measurement (``measure``), training callback (``track``), result type (``result``), HDF5 layout
(``schema``), figures (``plot``) and ``info`` text (``summary``) load when used.
"""

from landscape.analyses._base import Analysis, lazy
from landscape.analyses.curvature.command import curvature as _command

ANALYSIS = Analysis(
    name="curvature",
    schema="landscape.curvature/1",
    command=_command,
    plot=lazy("landscape.analyses.curvature.plot", "plot"),
    compare=lazy("landscape.analyses.curvature.plot", "compare"),
    summary=lazy("landscape.analyses.curvature.summary", "summary"),
    load=lazy("landscape.analyses.curvature.result", "load"),
    info_lists_datasets=False,  # the summary gives the headline of every row field that was measured
)

__all__ = ["ANALYSIS"]
