"""Shared HDF5 helpers: atomic creation, schema checks, JSON-safe attributes."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from landscape._fs import atomic_path
from landscape._version import __version__
from landscape.errors import LandscapeError


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike[str]) -> Iterator[h5py.File]:
    """Open a new HDF5 file under a temporary name and rename it to ``path`` only when the block succeeds."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        yield f


def _attr_value(value: Any) -> Any:
    if value is None:
        return "null"
    if isinstance(value, (str, bool, int, float, np.integer, np.floating, np.bool_)):
        return value
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    # Lists, dicts and the like are stored as JSON text so h5py alone can read them back.
    return json.dumps(value, default=str)


def write_attrs(obj: h5py.Group | h5py.Dataset, attrs: Mapping[str, Any]) -> None:
    """Write attributes, turning ``None`` into ``"null"`` and containers into JSON text."""
    for key, value in attrs.items():
        obj.attrs[key] = _attr_value(value)


def read_attrs(obj: h5py.Group | h5py.Dataset) -> dict[str, Any]:
    """Read attributes as plain Python values (bytes decoded, numpy scalars unwrapped)."""
    out: dict[str, Any] = {}
    for key, value in obj.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def open_h5(path: str | os.PathLike[str], mode: str = "r") -> h5py.File:
    """Open an existing HDF5 file, turning the usual failures into one-line errors."""
    path = Path(path)
    if not path.exists():
        raise LandscapeError(f"file not found: {path}")
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise LandscapeError(f"{path} is not a readable HDF5 file ({exc}); was it written by landscape?") from None


def read_schema(path: str | os.PathLike[str]) -> str:
    """The ``schema`` root attribute of a landscape HDF5 file, e.g. ``"landscape.surface/1"``."""
    with open_h5(path) as f:
        schema = f.attrs.get("schema")
    if schema is None:
        raise LandscapeError(f"{path} has no 'schema' attribute: it was not written by landscape")
    return schema.decode() if isinstance(schema, bytes) else str(schema)


def require_schema(path: str | os.PathLike[str], expected: str) -> None:
    """Raise unless ``path`` carries the schema ``expected`` (same kind; version must match exactly)."""
    found = read_schema(path)
    if found != expected:
        raise LandscapeError(f"{path} holds '{found}', expected '{expected}'")


def base_attrs(schema: str) -> dict[str, Any]:
    """The attributes every landscape file carries."""
    return {"schema": schema, "library_version": __version__}
