"""Hessian spectrum of the loss: extreme eigenvalues (Lanczos), trace (Hutch++ / Hutchinson), spectral density
(stochastic Lanczos quadrature) and per-layer blocks, all from exact Hessian-vector products.

``ANALYSIS`` is this folder's registry record and imports only the click command. The API below (the old
``landscape.hessian``) is imported on first use, so listing the commands never loads torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from landscape.analyses._base import Analysis, lazy
from landscape.analyses.hessian.command import hessian as _command

ANALYSIS = Analysis(
    name="hessian",
    schema="landscape.hessian/1",
    command=_command,
    plot=lazy("landscape.analyses.hessian.plot", "plot"),
    compare=lazy("landscape.analyses.hessian.plot", "compare"),
    summary=lazy("landscape.analyses.hessian.summary", "summary"),
    load=lazy("landscape.analyses.hessian.result", "load"),
)

# public name -> the module of this package that defines it
_EXPORTS = {
    "HessianDensityResult": "compute", "HessianEigenResult": "compute", "HessianTraceResult": "compute",
    "density": "compute", "eigenvalues": "compute", "trace": "compute",
    "LayerCurvature": "perlayer", "PerLayerResult": "perlayer", "layer_groups": "perlayer", "per_layer": "perlayer",
    "EigenResult": "krylov", "lanczos": "krylov",
    "DenseOperator": "operator", "HessianOperator": "operator", "SymmetricOperator": "operator",
    "select_parameters": "operator",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


class _Package(types.ModuleType):
    """This package, callable as ``landscape.hessian(model, data, …)``.

    The modules are named so that none clashes with an API name (``hutch``, ``slq``, ``krylov`` hold ``trace``,
    ``density`` and ``lanczos``). Their old paths (``landscape.analyses.hessian.trace`` …, see
    ``landscape._aliases``) still import the same module objects, and the import system then binds the module to
    this package under the old name, which is the API function's: that one binding is refused, so
    ``landscape.hessian.trace`` stays the function whichever path was imported first."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # ``landscape.hessian(model, data, …)``: the one-call API installs itself here (landscape/__init__.py).
        call = self.__dict__.get("__landscape_call__")
        if call is None:
            raise TypeError(f"module {self.__name__!r} is not callable; use landscape.hessian(model, data, …)")
        return call(*args, **kwargs)


sys.modules[__name__].__class__ = _Package

__all__ = ["ANALYSIS", *sorted(_EXPORTS)]
