"""Shared HDF5 helpers: atomic creation, schema checks, JSON-safe attributes, one-line errors for damaged files."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np

from landscape._version import __version__
from landscape.core.fs import atomic_path, output_lock
from landscape.errors import LandscapeError

F = TypeVar("F", bound=Callable[..., Any])


def _reason(exc: BaseException) -> str:
    """The useful part of an OS or HDF5 error, on one line (HDF5 nests the errno text inside its own)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    found = re.search(r"error message = '([^']*)'", text)
    if found:
        return found.group(1)
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return " ".join((text or type(exc).__name__).split())


def write_error(path: str | os.PathLike[str], exc: BaseException, *, kept: str = "") -> LandscapeError:
    """The one-line error for a write that failed (full disk, file-size limit, quota, I/O error)."""
    return LandscapeError(f"cannot write {os.fspath(path)}: {_reason(exc)}; free space or choose another output"
                          + (f"; {kept}" if kept else ""))


@contextlib.contextmanager
def surfaced_h5_errors() -> Iterator[list[BaseException]]:
    """Collect the HDF5 errors that h5py cannot raise.

    HDF5 reports some failed writes (full disk, file-size limit) only when h5py frees an object; Cython then prints
    them (through ``sys.excepthook``, then ``sys.unraisablehook``: "Exception ignored in ObjectID.__dealloc__") and
    carries on. Inside this block they are collected instead, for the caller to raise as one line.
    """
    caught: list[BaseException] = []
    hook, unraisable = sys.excepthook, sys.unraisablehook

    def on_except(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if isinstance(value, (OSError, RuntimeError)):
            caught.append(value)
        else:
            hook(kind, value, tb)

    def on_unraisable(info: Any) -> None:
        if isinstance(info.exc_value, (OSError, RuntimeError)):
            caught.append(info.exc_value)
        else:
            unraisable(info)

    sys.excepthook, sys.unraisablehook = on_except, on_unraisable
    try:
        yield caught
    finally:
        sys.excepthook, sys.unraisablehook = hook, unraisable


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike[str]) -> Iterator[h5py.File]:
    """Build a new HDF5 file and put it at ``path`` only when the block succeeds, holding the output lock.

    The file is built in memory and written to a temporary name with one checked write, then renamed: HDF5 itself
    never meets a full disk or a file-size limit, which it reports only when objects are freed, after which it may
    crash at exit. A failed write is one line, and no file is left behind. Costs the file's size in memory.
    """
    buffer = io.BytesIO()
    with output_lock(path), atomic_path(path) as tmp:
        with h5py.File(buffer, "w") as f:
            yield f
        try:
            with open(tmp, "wb") as out:
                out.write(buffer.getbuffer())
            buffer = io.BytesIO()  # free it before the check
            h5py.File(tmp, "r").close()  # HDF5 refuses a truncated file here ("truncated file: eof = ...")
        except OSError as exc:
            raise write_error(path, exc) from None


def damaged(path: str | os.PathLike[str], what: str) -> LandscapeError:
    return LandscapeError(f"{os.fspath(path)} is damaged: {what}; compute it again")


def guard_read(func: F) -> F:
    """Turn what a damaged file raises while ``func(path, ...)`` reads it (missing datasets or attributes, wrong
    shapes or types, unreadable bytes) into one line, ``PATH is damaged: ...``."""
    @functools.wraps(func)
    def wrapper(path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Any:
        try:
            return func(path, *args, **kwargs)
        except (KeyError, ValueError, TypeError, IndexError, OSError, RuntimeError, AttributeError) as exc:
            raise damaged(path, _reason(exc)) from None
    return wrapper  # type: ignore[return-value]


def _attr_value(value: Any) -> Any:
    if value is None:
        return "null"
    if isinstance(value, str):
        return str(value)  # a str subclass (torch's TorchVersion) would reach h5py as a numpy unicode array
    if isinstance(value, (bool, int, float, np.integer, np.floating, np.bool_)):
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
            value = value.decode()  # invalid UTF-8 is a ValueError: guard_read reports the file as damaged
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


@guard_read
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


# Row tables (training probes, curvature along training): equal-length 1-D datasets, one row per measurement,
# appended while training runs. A row counts only once the ``n_rows`` attribute, written after its values, says so:
# a failed append never shows a torn row, and the next append overwrites whatever it left past the commit.

def committed_rows(f: h5py.File, fields: Iterable[str]) -> int:
    """Rows whose values are all on disk: ``n_rows`` (files before it: the shortest field)."""
    held = min(len(f[k]) for k in fields)
    n = f.attrs.get("n_rows")
    return held if n is None else min(int(n), held)


def _open_for_append(path: str | os.PathLike[str], *, wait: float) -> h5py.File:
    """Open for appending; a reader holding the file (``landscape info`` or ``plot`` while training runs) makes
    HDF5 refuse the lock at once, so retry for up to ``wait`` seconds before giving up with the usual error."""
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        try:
            return h5py.File(path, "a")
        except OSError as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                return open_h5(path, "a")  # the one-line error (or success, if the reader just left)
        time.sleep(delay)
        delay = min(2 * delay, 1.0)


@contextlib.contextmanager
def rows_in_place(path: str | os.PathLike[str], *, wait: float = 30.0) -> Iterator[h5py.File]:
    """Open a row table for an in-place change under the output lock; a failed write (full disk…) is one line."""
    with output_lock(path), surfaced_h5_errors() as swallowed:
        f = _open_for_append(path, wait=wait)
        try:
            with f:
                yield f
        except (OSError, RuntimeError) as exc:
            raise write_error(path, exc) from None
        if swallowed:  # HDF5 reported the failure only while freeing an object
            raise write_error(path, swallowed[0])


def append_rows(f: h5py.File, rows: Mapping[str, Any], fields: Iterable[str]) -> int:
    """Append ``rows`` (field -> values, the first axis the rows) after the committed ones, then commit them;
    returns the new committed row count."""
    n_old = committed_rows(f, fields)  # rows of a failed earlier append past it are overwritten
    n_new = n_old + len(next(iter(rows.values())))
    for name, values in rows.items():
        f[name].resize(n_new, axis=0)
        f[name][n_old:n_new] = values
    f.flush()
    f.attrs["n_rows"] = n_new  # the commit: only now do the rows count
    return n_new


def truncate_rows(f: h5py.File, fields: Iterable[str], *, before_step: int) -> int:
    """Drop every row from the first one with ``step >= before_step`` on (a resumed run redoes them); returns the
    rows kept."""
    fields = list(fields)
    steps = f["step"][:committed_rows(f, fields)]
    late = np.flatnonzero(steps >= before_step)
    keep = int(late[0]) if len(late) else len(steps)
    for name in fields:
        if len(f[name]) != keep:
            f[name].resize(keep, axis=0)
    f.flush()
    f.attrs["n_rows"] = keep
    return keep
