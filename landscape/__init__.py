"""landscape: loss landscapes, Hessian spectra and smoothness probes for neural networks."""

from landscape import _aliases

_aliases.install()  # first: old module paths (landscape.params, landscape.store.surface …) resolve to the new ones

# The one-call API. ``landscape.surface`` and ``landscape.hessian`` are also the modules of the older API
# (landscape.analyses.surface.compute and landscape.analyses.hessian, through the aliases), made callable, so an
# ``import landscape.surface`` elsewhere can never shadow the function.
from landscape import api as _api  # noqa: E402
from landscape import attention, hessian, inputspace, predictiveness, surface  # type: ignore[attr-defined]  # noqa: E402
from landscape._version import __version__  # noqa: E402
from landscape.api import load  # noqa: E402
from landscape.core.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from landscape.core.data import load_dataset  # noqa: E402
from landscape.errors import LandscapeError  # noqa: E402
from landscape.models import build_model  # noqa: E402

_api.make_callable(surface, _api.surface)
hessian.__landscape_call__ = _api.hessian
for _module in (predictiveness, inputspace, attention):
    _api.make_callable(_module, _api._one_call(_module.__name__.split(".")[-2]))
# Analyses with no older module of the same name are plain functions.
sharpness = _api._one_call("sharpness")
invariance_check = _api._one_call("sharpness", "invariance_check", "invariance")
connect = _api._one_call("connectivity", public="connect")
curvature = _api._one_call("curvature")

__all__ = [
    "LandscapeError",
    "__version__",
    "attention",
    "build_model",
    "connect",
    "curvature",
    "hessian",
    "inputspace",
    "invariance_check",
    "load",
    "load_checkpoint",
    "load_dataset",
    "predictiveness",
    "save_checkpoint",
    "sharpness",
    "surface",
]
