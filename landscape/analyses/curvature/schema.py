"""HDF5 layout of curvature along training (schema ``landscape.curvature/1``).

Public contract: one row per measurement, every row dataset of length T (resizable, so a training run appends a
row per measurement and a resumed run truncates rows at and past its restart step):

- ``step`` (int64): the training step whose weights were measured (before that step's update); ``epoch`` (int64);
- ``lr``: the step size η of that step's update; ``two_over_lr``: 2/η; ``threshold``: the stability threshold of
  ``lambda_max`` for the run's optimizer, ``(2 + 2μ)/η`` for gradient descent or SGD with heavy-ball momentum μ
  (2/η without momentum), NaN for Adam; ``precond_threshold``: Adam's ``(2 + 2β₁)/((1 − β₁)η)``, NaN otherwise;
- ``lambda_max``: the top Hessian eigenvalue of the loss on the fixed sample set, ``lambda_residual``
  ``‖Hv − λv‖``, ``lambda_converged`` (int8, 1 when the residual met ``tol``), ``lambda_matvecs``;
- ``loss``: the loss on the fixed set; ``trace``, ``trace_stderr``, ``trace_matvecs`` (NaN/0 without the trace);
- ``precond_lambda_max``, ``precond_residual``, ``precond_matvecs``: λmax(P^{-1/2} H P^{-1/2}) with Adam's
  preconditioner ``P = diag(sqrt(v̂) + ε)`` (NaN/0 for other optimizers);
- ``seconds``: the wall time of the measurement.

Root attributes: ``schema``, ``library_version``, the settings (``every``, ``n_samples``, ``tol``, ``seed``,
``optimizer``, ``source``…), the provenance record, and ``n_rows``: rows count only once it is written after their
values (a write that failed half-way leaves datasets longer than ``n_rows``; readers, appends and truncation see
only committed rows).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from landscape.core.store import (
    append_rows,
    atomic_h5,
    base_attrs,
    committed_rows,
    guard_read,
    open_h5,
    read_attrs,
    require_schema,
    rows_in_place,
    truncate_rows,
    write_attrs,
)
from landscape.errors import LandscapeError

SCHEMA = "landscape.curvature/1"
ROW_FIELDS: dict[str, type] = {
    "step": np.int64, "epoch": np.int64, "lr": np.float64, "two_over_lr": np.float64, "threshold": np.float64,
    "precond_threshold": np.float64, "lambda_max": np.float64, "lambda_residual": np.float64,
    "lambda_converged": np.int8, "lambda_matvecs": np.int64, "loss": np.float64, "trace": np.float64,
    "trace_stderr": np.float64, "trace_matvecs": np.int64, "precond_lambda_max": np.float64,
    "precond_residual": np.float64, "precond_matvecs": np.int64, "seconds": np.float64,
}


@dataclass(frozen=True)
class CurvatureData:
    """The content of a curvature file: ``rows`` maps each row field to its (T,) array; ``attrs`` the settings."""

    rows: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)


def as_rows(values: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every row field as a 1-D array of its dtype; all of equal length (a missing field is refused)."""
    missing = [k for k in ROW_FIELDS if k not in values]
    if missing:
        raise ValueError(f"curvature rows lack {', '.join(missing)}")
    rows: dict[str, np.ndarray] = {k: np.asarray(values[k], dtype=dtype).reshape(-1) for k, dtype in ROW_FIELDS.items()}
    lengths = {len(v) for v in rows.values()}
    if len(lengths) != 1:
        raise ValueError(f"curvature rows disagree in length: { {k: len(v) for k, v in rows.items()} }")
    return rows


def empty_rows() -> dict[str, np.ndarray]:
    return {k: np.zeros(0, dtype=dtype) for k, dtype in ROW_FIELDS.items()}


def write(path: str | os.PathLike[str], *, rows: Mapping[str, Any], attrs: Mapping[str, Any] | None = None) -> None:
    """Write a complete file atomically (temp file + rename); its rows stay appendable."""
    data = as_rows(rows)
    with atomic_h5(path) as f:
        write_attrs(f, {**base_attrs(SCHEMA), **(attrs or {})})
        for name, values in data.items():
            f.create_dataset(name, data=values, maxshape=(None,), chunks=(256,))
        f.attrs["n_rows"] = len(data["step"])


def create(path: str | os.PathLike[str], *, attrs: Mapping[str, Any] | None = None) -> None:
    """Write an empty, appendable file holding the settings."""
    write(path, rows=empty_rows(), attrs=attrs)


def _committed(f: h5py.File) -> int:
    return committed_rows(f, ROW_FIELDS)


def append(path: str | os.PathLike[str], rows: Mapping[str, Any]) -> int:
    """Append rows to an existing file; returns the new committed row count."""
    require_schema(path, SCHEMA)
    data = as_rows(rows)
    with rows_in_place(path) as f:
        return append_rows(f, data, ROW_FIELDS)


def truncate(path: str | os.PathLike[str], *, before_step: int) -> int:
    """Drop every row from the first one with ``step >= before_step`` on; returns the rows kept."""
    require_schema(path, SCHEMA)
    with rows_in_place(path) as f:
        return truncate_rows(f, ROW_FIELDS, before_step=before_step)


@guard_read
def read_attributes(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The root attributes, without reading the rows."""
    require_schema(path, SCHEMA)
    with open_h5(path) as f:
        return read_attrs(f)


@guard_read
def read(path: str | os.PathLike[str]) -> CurvatureData:
    """Read a whole curvature file (committed rows only)."""
    require_schema(path, SCHEMA)
    with open_h5(path) as f:
        missing = [k for k in ROW_FIELDS if k not in f]
        if missing:
            raise LandscapeError(f"{os.fspath(path)} lacks dataset(s) {', '.join(missing)}; the file is damaged, "
                                 "compute it again")
        n = _committed(f)
        rows = {k: f[k][:n].astype(dtype) for k, dtype in ROW_FIELDS.items()}
        attrs = read_attrs(f)
    return CurvatureData(rows=rows, attrs=attrs)
