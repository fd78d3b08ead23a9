"""HDF5 layout of gradient-predictiveness results (schema ``landscape.predictiveness/1``).

Public contract: datasets ``step`` (T,), ``eta`` (E,), ``loss`` (T, E), ``grad_diff`` (T, E), ``beta`` (T,),
``train_loss`` (T,), ``grad_norm`` (T,), all float64 except ``step`` (int64); root attributes ``schema``,
``library_version`` and the settings (``bn_mode``, ``source``, ``every``…). Row datasets are resizable so a
training run appends one row per probe and a resumed run truncates rows past its restart step.

Rows are committed by the root attribute ``n_rows``, written after a row's values: a write that fails half-way
(full disk) leaves datasets longer than ``n_rows``, and readers, appends and truncation see only the committed
rows. Files without ``n_rows`` (written before it existed) count the rows every dataset holds.
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

SCHEMA = "landscape.predictiveness/1"
ROW_FIELDS = ("step", "loss", "grad_diff", "beta", "train_loss", "grad_norm")


@dataclass(frozen=True)
class PredictivenessData:
    """The content of a predictiveness file (arrays as float64, ``step`` as int64)."""

    step: np.ndarray
    eta: np.ndarray
    loss: np.ndarray
    grad_diff: np.ndarray
    beta: np.ndarray
    train_loss: np.ndarray
    grad_norm: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)


def _rows(step: Any, loss: Any, grad_diff: Any, beta: Any, train_loss: Any, grad_norm: Any,
          n_eta: int) -> dict[str, np.ndarray]:
    rows = {
        "step": np.asarray(step, dtype=np.int64).reshape(-1),
        "loss": np.asarray(loss, dtype=np.float64).reshape(-1, n_eta),
        "grad_diff": np.asarray(grad_diff, dtype=np.float64).reshape(-1, n_eta),
        "beta": np.asarray(beta, dtype=np.float64).reshape(-1),
        "train_loss": np.asarray(train_loss, dtype=np.float64).reshape(-1),
        "grad_norm": np.asarray(grad_norm, dtype=np.float64).reshape(-1),
    }
    lengths = {k: len(v) for k, v in rows.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"predictiveness rows disagree in length: {lengths}")
    return rows


def create(path: str | os.PathLike[str], *, eta: Any, attrs: Mapping[str, Any] | None = None) -> None:
    """Write an empty, appendable file (atomically) holding the η grid and the settings."""
    write(path, eta=eta, step=[], loss=[], grad_diff=[], beta=[], train_loss=[], grad_norm=[], attrs=attrs)


def write(path: str | os.PathLike[str], *, eta: Any, step: Any, loss: Any, grad_diff: Any, beta: Any,
          train_loss: Any, grad_norm: Any, attrs: Mapping[str, Any] | None = None) -> None:
    """Write a complete file atomically (temp file + rename); the rows stay appendable."""
    eta = np.asarray(eta, dtype=np.float64).reshape(-1)
    rows = _rows(step, loss, grad_diff, beta, train_loss, grad_norm, len(eta))
    with atomic_h5(path) as f:
        write_attrs(f, {**base_attrs(SCHEMA), **(attrs or {})})
        f.create_dataset("eta", data=eta)
        for name, data in rows.items():
            chunks = (64, *data.shape[1:])
            f.create_dataset(name, data=data, maxshape=(None, *data.shape[1:]), chunks=chunks)
        f.attrs["n_rows"] = len(rows["step"])


def _committed(f: h5py.File) -> int:
    """Rows whose values are all on disk (see the module docstring)."""
    return committed_rows(f, ROW_FIELDS)


def append(path: str | os.PathLike[str], *, step: Any, loss: Any, grad_diff: Any, beta: Any, train_loss: Any,
           grad_norm: Any) -> int:
    """Append rows to an existing file; returns the new row count."""
    require_schema(path, SCHEMA)
    with rows_in_place(path) as f:
        rows = _rows(step, loss, grad_diff, beta, train_loss, grad_norm, len(f["eta"]))
        return append_rows(f, rows, ROW_FIELDS)


def truncate(path: str | os.PathLike[str], *, before_step: int) -> int:
    """Drop every row from the first one with ``step >= before_step`` on; returns the rows kept."""
    require_schema(path, SCHEMA)
    with rows_in_place(path) as f:
        return truncate_rows(f, ROW_FIELDS, before_step=before_step)


@guard_read
def read_settings(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """The η grid and root attributes, without reading the rows."""
    require_schema(path, SCHEMA)
    with open_h5(path) as f:
        return f["eta"][:].astype(np.float64), read_attrs(f)


@guard_read
def read(path: str | os.PathLike[str]) -> PredictivenessData:
    """Read a whole predictiveness file."""
    require_schema(path, SCHEMA)
    with open_h5(path) as f:
        missing = [k for k in ("eta", *ROW_FIELDS) if k not in f]
        if missing:
            raise LandscapeError(f"{path} lacks dataset(s) {', '.join(missing)}; the file is damaged, recompute it")
        n = _committed(f)
        arrays = {"eta": f["eta"][:], **{k: f[k][:n] for k in ROW_FIELDS}}
        attrs = read_attrs(f)
    return PredictivenessData(
        step=arrays["step"].astype(np.int64),
        **{k: arrays[k].astype(np.float64) for k in ("eta", *ROW_FIELDS) if k != "step"},
        attrs=attrs,
    )
