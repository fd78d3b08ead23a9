"""HDF5 layout of a loss surface (``landscape.surface/1``), written resumably point by point.

Datasets: ``xcoordinates`` (nx,), ``ycoordinates`` (ny,) for 2D; ``<split>_loss``, ``<split>_acc``,
``<split>_loss_stderr`` (float64), ``n_evaluated`` (int64), ``point_seconds`` (float64) and ``done`` (bool), all of
shape (nx,) or (nx, ny) with ``[i, j]`` the point ``(x_i, y_j)``; unfinished points hold NaN (and ``n_evaluated``
−1). ``directions/x/<key>`` and ``directions/y/<key>``: the directions used, every key they cover (zeros for ignored
tensors). Optional ``trajectory/coordinates`` (T, 2): the projected training path (PCA).

Crash safety: the file is created complete-but-empty under a temporary name and renamed; every dataset is contiguous
and allocated up front, so writing a point touches raw data only. A point's values are flushed before its ``done``
flag, so a kill -9 at any moment leaves at worst a point that is not marked done. ``complete`` turns true only
when every point is done.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from landscape.errors import LandscapeError
from landscape.store._h5 import atomic_h5, base_attrs, open_h5, read_attrs, require_schema, write_attrs

SCHEMA = "landscape.surface/1"
# Root attributes that must agree for a file to be resumed.
IDENTITY_KEYS = ("checkpoint_sha256", "model", "dataset", "split", "n_samples", "seed", "norm", "ignore", "dir_type",
                 "direction", "target_sha256", "trajectory", "eigenvectors", "bn", "recalibration_samples",
                 "batch_size", "xspec", "yspec", "precision_target", "min_samples", "loss")


@dataclass(frozen=True)
class SurfaceData:
    """Everything a plot or a summary needs, read back from a surface file."""

    path: str
    attrs: dict[str, Any]
    x: np.ndarray
    y: np.ndarray | None
    loss: np.ndarray
    acc: np.ndarray
    stderr: np.ndarray
    n_evaluated: np.ndarray
    done: np.ndarray
    trajectory: np.ndarray | None

    @property
    def ndim(self) -> int:
        return 1 if self.y is None else 2


def create(path: str | os.PathLike[str], *, attrs: Mapping[str, Any], x: np.ndarray, y: np.ndarray | None,
           split: str, directions: Mapping[str, Mapping[str, np.ndarray]],
           trajectory: np.ndarray | None = None) -> None:
    """Write a new, empty surface file atomically (every point NaN, nothing done)."""
    shape = (len(x),) if y is None else (len(x), len(y))
    with atomic_h5(path) as f:
        write_attrs(f, {**base_attrs(SCHEMA), **attrs, "complete": False, "compute_seconds": 0.0})
        f.create_dataset("xcoordinates", data=np.asarray(x, dtype=np.float64))
        if y is not None:
            f.create_dataset("ycoordinates", data=np.asarray(y, dtype=np.float64))
        for name in (f"{split}_loss", f"{split}_acc", f"{split}_loss_stderr", "point_seconds"):
            f.create_dataset(name, data=np.full(shape, np.nan))
        f.create_dataset("n_evaluated", data=np.full(shape, -1, dtype=np.int64))
        f.create_dataset("done", data=np.zeros(shape, dtype=bool))
        for axis, tensors in directions.items():
            g = f.create_group(f"directions/{axis}")
            for key, arr in tensors.items():
                g.create_dataset(key, data=np.asarray(arr))
        if trajectory is not None:
            f.create_dataset("trajectory/coordinates", data=np.asarray(trajectory, dtype=np.float64))


def check_settings(path: str | os.PathLike[str], attrs: Mapping[str, Any]) -> None:
    """Refuse, naming the first difference, if ``path`` was made with other settings than ``attrs``."""
    require_schema(path, SCHEMA)
    with open_h5(path) as f:
        found = read_attrs(f)
    for key in IDENTITY_KEYS:
        if key not in attrs:
            continue
        want = _norm_attr(attrs[key])
        have = _norm_attr(found.get(key, "<absent>"))
        if want != have:
            raise LandscapeError(f"{path} was made with {key}={have}, this run asks for {key}={want}; "
                                 "use --overwrite to start afresh or --out another file")


def _norm_attr(value: Any) -> Any:
    if value is None:
        return "null"
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def read_done(path: str | os.PathLike[str]) -> np.ndarray:
    with open_h5(path) as f:
        return f["done"][()]


def read_directions(path: str | os.PathLike[str]) -> dict[str, dict[str, np.ndarray]]:
    """``{"x": {key: array}, "y": {...}}`` as stored (``y`` absent for 1D)."""
    with open_h5(path) as f:
        return {axis: {k: g[k][()] for k in g} for axis, g in f["directions"].items()}


class Writer:
    """Writes finished points into an existing surface file (open for the duration of a run)."""

    def __init__(self, path: str | os.PathLike[str], *, split: str) -> None:
        self.path = os.fspath(path)
        self.split = split
        self._f: h5py.File | None = None
        self._lock: int | None = None
        self._t0 = time.perf_counter()

    def __enter__(self) -> Writer:
        # HDF5's own lock would keep `landscape info` / `plot` out of a running surface; writes touch raw data only,
        # so readers are safe, and a POSIX record lock (independent of HDF5's flock) keeps a second writer out.
        self._lock = _exclusive_lock(self.path)
        try:
            self._f = h5py.File(self.path, "r+", locking=False)
        except OSError as exc:
            self._release()
            raise LandscapeError(f"{self.path} cannot be opened for writing ({exc})") from None
        self._t0 = time.perf_counter()
        return self

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor drops the record lock
            self._lock = None

    def write(self, index: tuple[int, ...], *, loss: float, acc: float, stderr: float, n: int,
              seconds: float) -> None:
        """Store one point: values first and flushed, then the ``done`` flag (see the module docstring)."""
        f = self._f
        assert f is not None, "Writer used outside its with-block"
        f[f"{self.split}_loss"][index] = loss
        f[f"{self.split}_acc"][index] = acc
        f[f"{self.split}_loss_stderr"][index] = stderr
        f["n_evaluated"][index] = n
        f["point_seconds"][index] = seconds
        f.flush()
        f["done"][index] = True
        f.flush()

    def __exit__(self, *exc: object) -> None:
        f = self._f
        self._f = None
        if f is None:
            return
        try:
            if exc[0] is None:
                done = f["done"][()]
                f.attrs["compute_seconds"] = float(np.nansum(f["point_seconds"][()]))
                f.attrs["complete"] = bool(done.all())
        finally:
            f.close()
            self._release()


def _exclusive_lock(path: str) -> int | None:
    """A non-blocking exclusive POSIX record lock on ``path`` (None where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no protection against two writers
        return None
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise LandscapeError(f"another landscape run is writing {path}; wait for it or choose another --out") from None
    return fd


def read(path: str | os.PathLike[str]) -> SurfaceData:
    """Read a surface file written by :func:`create` (any progress)."""
    require_schema(path, SCHEMA)
    with open_h5(path) as f:
        attrs = read_attrs(f)
        split = attrs.get("split", "train")
        if f"{split}_loss" not in f:
            raise LandscapeError(f"{path} lacks the dataset '{split}_loss'; the file is damaged")
        shape = f[f"{split}_loss"].shape
        return SurfaceData(
            path=os.fspath(path), attrs=attrs, x=f["xcoordinates"][()],
            y=f["ycoordinates"][()] if "ycoordinates" in f else None,
            loss=f[f"{split}_loss"][()], acc=f[f"{split}_acc"][()],
            stderr=f[f"{split}_loss_stderr"][()] if f"{split}_loss_stderr" in f else np.full(shape, np.nan),
            n_evaluated=f["n_evaluated"][()] if "n_evaluated" in f else np.full(shape, -1),
            done=f["done"][()] if "done" in f else np.isfinite(f[f"{split}_loss"][()]),
            trajectory=f["trajectory/coordinates"][()] if "trajectory/coordinates" in f else None,
        )
