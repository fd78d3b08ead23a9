"""Hessian spectrum of the loss: extreme eigenvalues (Lanczos), trace (Hutch++ / Hutchinson), spectral density
(stochastic Lanczos quadrature) and per-layer blocks, all from exact Hessian-vector products."""

from landscape.hessian._api import (
    HessianDensityResult,
    HessianEigenResult,
    HessianTraceResult,
    density,
    eigenvalues,
    trace,
)
from landscape.hessian._perlayer import LayerCurvature, PerLayerResult, layer_groups, per_layer
from landscape.hessian.lanczos import EigenResult, lanczos
from landscape.hessian.operator import DenseOperator, HessianOperator, SymmetricOperator, select_parameters

__all__ = [
    "DenseOperator",
    "EigenResult",
    "HessianDensityResult",
    "HessianEigenResult",
    "HessianOperator",
    "HessianTraceResult",
    "LayerCurvature",
    "PerLayerResult",
    "SymmetricOperator",
    "density",
    "eigenvalues",
    "lanczos",
    "layer_groups",
    "per_layer",
    "select_parameters",
    "trace",
]
