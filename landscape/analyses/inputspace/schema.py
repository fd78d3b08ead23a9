"""HDF5 layout of input-space results (schema ``landscape.inputspace/1``); a public contract.

Root attributes: ``schema``, ``library_version``, ``mode`` (around | between | noise) plus the run's settings
(``directions``, ``seed``, ``checkpoint``, ``checkpoint_sha256``, ``model``, ``dataset``, ``split``, ``n_forward``,
``seconds`` …). Datasets by mode (S samples, K directions, P pairs, D draws, N grid points):

- around: ``radius`` (N,), ``loss`` / ``prob`` (S, K, N) float64, ``pred`` (S, K, N) int64, ``target`` (S,),
  ``grad_norm`` (S,), ``jacobian_norm`` (S,), and per curve ``total_variation``, ``max_second_diff``,
  ``lipschitz``, ``flips`` (S, K);
- between: ``alpha`` (N,), ``pair_index`` / ``pair_target`` (P, 2), ``same_class`` (P,) bool, ``distance`` (P,),
  ``loss`` / ``loss_i`` / ``loss_j`` / ``prob_i`` / ``prob_j`` (P, N) float64, ``pred`` (P, N) int64,
  ``jacobian_norm`` (P, 2), ``total_variation`` / ``max_second_diff`` / ``lipschitz`` / ``flips`` /
  ``chord_deviation`` (P,);
- noise: ``sigma`` (N,), ``loss`` / ``acc`` (D, N) float64.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from landscape.core.store import (
    atomic_h5,
    base_attrs,
    guard_read,
    open_h5,
    read_attrs,
    require_schema,
    write_attrs,
)
from landscape.errors import LandscapeError

SCHEMA = "landscape.inputspace/1"
_STATS = ("total_variation", "max_second_diff", "lipschitz", "flips")
REQUIRED: dict[str, tuple[str, ...]] = {
    "around": ("radius", "loss", "prob", "pred", "target", "grad_norm", "jacobian_norm", *_STATS),
    "between": ("alpha", "pair_index", "pair_target", "same_class", "distance", "loss", "loss_i", "loss_j",
                "prob_i", "prob_j", "pred", "jacobian_norm", *_STATS, "chord_deviation"),
    "noise": ("sigma", "loss", "acc"),
}


def write_inputspace(path: str | os.PathLike[str], *, mode: str, arrays: Mapping[str, np.ndarray],
                     attrs: Mapping[str, Any] | None = None) -> Path:
    """Write one input-space result atomically; ``arrays`` must hold every dataset of ``mode``'s layout."""
    if mode not in REQUIRED:
        raise LandscapeError(f"unknown input-space mode '{mode}'; use one of {', '.join(REQUIRED)}")
    missing = [k for k in REQUIRED[mode] if k not in arrays]
    if missing:
        raise LandscapeError(f"input-space result for mode '{mode}' lacks {', '.join(missing)}")
    with atomic_h5(path) as f:
        write_attrs(f, {**base_attrs(SCHEMA), **(attrs or {}), "mode": mode})
        for key, value in arrays.items():
            f.create_dataset(key, data=np.asarray(value))
    return Path(path)


@guard_read
def read_inputspace(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(attributes, arrays)`` of a stored input-space result."""
    require_schema(path, SCHEMA)
    with open_h5(path) as f:
        attrs = read_attrs(f)
        arrays = {key: f[key][()] for key in f.keys()}
    mode = attrs.get("mode")
    if mode not in REQUIRED or any(k not in arrays for k in REQUIRED[mode]):
        raise LandscapeError(f"{path} is an incomplete input-space file (mode {mode!r}); compute it again")
    return attrs, arrays
