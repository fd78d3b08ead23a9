"""HDF5 layout of a loss surface (``landscape.surface/1``), written resumably point by point.

Datasets: ``xcoordinates`` (nx,), ``ycoordinates`` (ny,) for 2D; ``<split>_loss``, ``<split>_acc``,
``<split>_loss_stderr`` (float64), ``n_evaluated`` (int64), ``point_seconds`` (float64) and ``done`` (bool), all of
shape (nx,) or (nx, ny) with ``[i, j]`` the point ``(x_i, y_j)``; unfinished points hold NaN (and ``n_evaluated``
−1). ``directions/x/<key>`` and ``directions/y/<key>``: the directions used, every key they cover (zeros for ignored
tensors). Optional ``trajectory/coordinates`` (T, 2): the projected training path (PCA).

Crash safety: the file is created complete-but-empty under a temporary name and renamed; every dataset is contiguous
and allocated up front, so writing a point touches raw data only. A point's values are written (each write checked)
before its ``done`` flag, so a kill -9 at any moment leaves at worst a point that is not marked done, and a failed
write (full disk, file-size limit, I/O error) stops the run with one line before the flag. Readers trust a flag
only where the point's values are all there (:func:`valid_points`); a resumed run recomputes the others.
``complete`` turns true only when every point is done and holds its values.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from landscape.core.fs import output_lock
from landscape.core.store import (
    atomic_h5,
    base_attrs,
    damaged,
    guard_read,
    open_h5,
    read_attrs,
    require_schema,
    surfaced_h5_errors,
    write_attrs,
    write_error,
)
from landscape.errors import LandscapeError

SCHEMA = "landscape.surface/1"
# Root attributes that must agree for a file to be resumed.
IDENTITY_KEYS = ("checkpoint_sha256", "model", "dataset", "split", "n_samples", "seed", "norm", "ignore", "dir_type",
                 "direction", "target_sha256", "trajectory", "eigenvectors", "bn", "recalibration_samples",
                 "batch_size", "xspec", "yspec", "precision_target", "min_samples", "loss", "precision")
# What an identity attribute means when a file lacks it (files written before the attribute existed).
IDENTITY_DEFAULTS = {"precision": "fp32"}


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
    flagged: np.ndarray | None = None  # the raw done flags; ``done`` is these where the values are all there
    seconds: np.ndarray | None = None

    @property
    def n_lacking(self) -> int:
        """Points flagged done whose values are missing (a write failed): they are computed again on resume."""
        return 0 if self.flagged is None else int((self.flagged & ~self.done).sum())

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


@guard_read
def check_settings(path: str | os.PathLike[str], attrs: Mapping[str, Any]) -> None:
    """Refuse, naming the first difference, if ``path`` was made with other settings than ``attrs``."""
    require_schema(path, SCHEMA)
    with open_h5(path) as f:
        found = read_attrs(f)
    for key in IDENTITY_KEYS:
        if key not in attrs:
            continue
        want = _norm_attr(attrs[key])
        have = _norm_attr(found.get(key, IDENTITY_DEFAULTS.get(key, "<absent>")))
        if want != have:
            raise LandscapeError(f"{path} was made with {key}={have}, this run asks for {key}={want}; "
                                 "pass overwrite=True to start afresh or choose another out=")


def _norm_attr(value: Any) -> Any:
    if value is None:
        return "null"
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def read_directions(path: str | os.PathLike[str]) -> dict[str, dict[str, np.ndarray]]:
    """``{"x": {key: array}, "y": {...}}`` as stored (``y`` absent for 1D)."""
    return _read_directions(path)


@guard_read
def _read_directions(path: str | os.PathLike[str]) -> dict[str, dict[str, np.ndarray]]:
    with open_h5(path) as f:
        if "directions" not in f or "x" not in f["directions"]:
            raise damaged(path, "it holds no directions")
        return {axis: {k: g[k][()] for k in g} for axis, g in f["directions"].items()}


def grid_datasets(split: str) -> dict[str, str]:
    """The per-point datasets of a surface and the numpy kind of each (f: float, i: integer, b: bool)."""
    return {f"{split}_loss": "f", f"{split}_acc": "f", f"{split}_loss_stderr": "f", "n_evaluated": "i",
            "point_seconds": "f", "done": "b"}


def _layout(f: h5py.File, path: str | os.PathLike[str]) -> tuple[dict[str, Any], str, tuple[int, ...]]:
    """Validate the structure of an open surface file: ``(attributes, split, grid shape)``, or one line naming
    what is damaged (missing coordinates, datasets of another shape or type, unusable attributes)."""
    attrs = read_attrs(f)
    split = attrs.get("split")
    if not isinstance(split, str) or not split or "/" in split:
        raise damaged(path, f"its 'split' attribute is {split!r}, not a split name")
    axes = []
    for name in ("xcoordinates", "ycoordinates"):
        if name not in f:
            if name == "xcoordinates":
                raise damaged(path, "it lacks the dataset 'xcoordinates'")
            continue
        c = f[name]
        if not isinstance(c, h5py.Dataset) or c.ndim != 1 or c.size == 0 or c.dtype.kind != "f":
            raise damaged(path, f"'{name}' is not a list of coordinates")
        values = c[()]
        if not (np.isfinite(values).all() and (np.diff(values) > 0).all()):
            raise damaged(path, f"'{name}' is not finite and increasing")
        axes.append(c.shape[0])
    yspec = attrs.get("yspec", "null")
    if isinstance(yspec, str) and yspec != "null" and len(axes) == 1:
        raise damaged(path, f"yspec is {yspec} but it lacks the dataset 'ycoordinates'")
    shape = tuple(axes)
    for name, kind in grid_datasets(split).items():
        if name not in f:
            raise damaged(path, f"it lacks the dataset '{name}'")
        d = f[name]
        if not isinstance(d, h5py.Dataset) or d.shape != shape or d.dtype.kind != kind:
            what = f"{d.shape} {d.dtype}" if isinstance(d, h5py.Dataset) else "a group"
            raise damaged(path, f"'{name}' is {what}, the grid needs shape {shape} of kind '{kind}'")
    return attrs, split, shape


def valid_points(*, loss: np.ndarray, acc: np.ndarray, stderr: np.ndarray, n: np.ndarray, seconds: np.ndarray,
                 n_samples: Any = None) -> np.ndarray:
    """Where a point holds all its values, whatever its ``done`` flag says.

    The rule: at least one sample evaluated (``n_evaluated`` ≥ 1, and at most ``n_samples`` when recorded), a
    finite, non-negative ``point_seconds``, an accuracy that is NaN (not a classifier) or within [0, 1], and for a
    finite loss over more than one sample a finite, non-negative standard error. A non-finite loss with
    ``n_evaluated`` ≥ 1 is a diverged point, which is a result. Points never written hold NaN and −1: never valid.
    """
    with np.errstate(invalid="ignore"):
        ok = (n >= 1) & np.isfinite(seconds) & (seconds >= 0)
        if isinstance(n_samples, int) and not isinstance(n_samples, bool) and n_samples >= 1:
            ok &= n <= n_samples
        ok &= np.isnan(acc) | ((acc >= 0) & (acc <= 1))
        ok &= ~(np.isfinite(loss) & (n > 1)) | (np.isfinite(stderr) & (stderr >= 0))
    return ok


class Writer:
    """Writes finished points into an existing surface file (open for the duration of a run).

    Holds the output lock on the file. Each value goes to disk with one ``pwrite`` at the dataset's raw offset
    (the datasets are contiguous and allocated up front), so a failed write raises at once instead of vanishing
    inside HDF5's caches; a point's ``done`` flag is written only after all its values were. On entry, points
    whose flag is set but whose values are missing (see :func:`valid_points`) are unmarked, to be computed again.
    """

    def __init__(self, path: str | os.PathLike[str], *, split: str) -> None:
        self.path = os.fspath(path)
        self.split = split
        self._fd: int | None = None
        self._stack: contextlib.ExitStack | None = None
        self._where: dict[str, tuple[int, np.dtype, tuple[int, ...]]] = {}
        self.done = np.zeros(0, dtype=bool)
        self.n_unmarked = 0

    def __enter__(self) -> Writer:
        stack = contextlib.ExitStack()
        stack.enter_context(output_lock(self.path))
        try:
            data = read(self.path)
            if data.attrs.get("split") != self.split:
                raise LandscapeError(f"{self.path} holds the split '{data.attrs.get('split')}', not '{self.split}'")
            self._where = _raw_offsets(self.path, self.split)
            lacking = data.flagged & ~data.done
            if data.attrs.get("complete") is True and not data.done.all():
                _set_attrs(self.path, {"complete": False})  # the file claimed points it lacks
            try:
                self._fd = os.open(self.path, os.O_RDWR)
            except OSError as exc:
                raise LandscapeError(f"{self.path} cannot be opened for writing ({exc.strerror})") from None
            stack.callback(os.close, self._fd)
            for index in zip(*np.nonzero(lacking)):
                self._put("done", tuple(int(i) for i in index), False)
        except BaseException:
            stack.close()
            raise
        self.done, self.n_unmarked = data.done.copy(), int(lacking.sum())
        self._stack = stack
        return self

    def _put(self, name: str, index: tuple[int, ...], value: Any) -> None:
        offset, dtype, shape = self._where[name]
        raw = np.asarray(value, dtype=dtype).tobytes()
        pos = offset + int(np.ravel_multi_index(index, shape)) * len(raw)
        assert self._fd is not None, "Writer used outside its with-block"
        try:
            written = os.pwrite(self._fd, raw, pos)
        except OSError as exc:
            raise write_error(self.path, exc, kept="finished points are kept") from None
        if written != len(raw):
            raise write_error(self.path, OSError(0, f"short write ({written} of {len(raw)} bytes)"),
                              kept="finished points are kept")

    def write(self, index: tuple[int, ...], *, loss: float, acc: float, stderr: float, n: int,
              seconds: float) -> None:
        """Store one point: its values, each write checked, then its ``done`` flag."""
        s = self.split
        for name, value in ((f"{s}_loss", loss), (f"{s}_acc", acc), (f"{s}_loss_stderr", stderr),
                            ("n_evaluated", n), ("point_seconds", seconds)):
            self._put(name, index, value)
        self._put("done", index, True)
        self.done[index] = True

    def __exit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        with stack:
            fd, self._fd = self._fd, None
            assert fd is not None, "the file is opened with the stack in __enter__"
            try:
                os.fsync(fd)  # an I/O error the kernel only learns when it writes back is reported here
            except OSError as err:
                if exc[0] is None:
                    raise write_error(self.path, err, kept="finished points are kept") from None
            if exc[0] is None:
                # From the file, validated: `complete` is true only when every point holds all its values.
                data = read(self.path)
                assert data.seconds is not None, "read() fills point_seconds"
                _set_attrs(self.path, {"compute_seconds": float(np.nansum(np.where(data.done, data.seconds, 0))),
                                       "complete": bool(data.done.all())})


def _raw_offsets(path: str, split: str) -> dict[str, tuple[int, np.dtype, tuple[int, ...]]]:
    """Where each per-point dataset's raw data start in the file, with its on-disk type and shape."""
    out = {}
    with open_h5(path) as f:
        for name in grid_datasets(split):
            d = f[name]
            offset = d.id.get_offset()
            if d.chunks is not None or offset is None:
                raise damaged(path, f"'{name}' is not stored contiguously as landscape writes it")
            out[name] = (int(offset), d.id.get_type().dtype, d.shape)
    return out


def _set_attrs(path: str, attrs: Mapping[str, Any]) -> None:
    with surfaced_h5_errors() as swallowed:
        try:
            with h5py.File(path, "r+", locking=False) as f:  # readers may have it open; writes touch attributes only
                write_attrs(f, attrs)
        except (OSError, RuntimeError) as exc:
            raise write_error(path, exc, kept="finished points are kept") from None
    if swallowed:
        raise write_error(path, swallowed[0], kept="finished points are kept")


@guard_read
def read(path: str | os.PathLike[str]) -> SurfaceData:
    """Read and validate a surface file written by :func:`create` (any progress); a damaged file is one line.

    ``done`` marks the points whose flag is set *and* whose values are all present (:func:`valid_points`);
    ``flagged`` holds the raw flags.
    """
    require_schema(path, SCHEMA)
    with open_h5(path) as f:
        attrs, split, shape = _layout(f, path)
        arrays = {name: f[name][()] for name in grid_datasets(split)}
        loss, acc, stderr = arrays[f"{split}_loss"], arrays[f"{split}_acc"], arrays[f"{split}_loss_stderr"]
        flagged = arrays["done"]
        seconds = arrays["point_seconds"]
        valid = valid_points(loss=loss, acc=acc, stderr=stderr, n=arrays["n_evaluated"], seconds=seconds,
                             n_samples=attrs.get("n_samples"))
        trajectory = f["trajectory/coordinates"][()] if "trajectory/coordinates" in f else None
        if trajectory is not None and (trajectory.ndim != 2 or trajectory.shape[1] != 2):
            raise damaged(path, f"'trajectory/coordinates' has shape {trajectory.shape}, not (T, 2)")
        return SurfaceData(
            path=os.fspath(path), attrs=attrs, x=f["xcoordinates"][()],
            y=f["ycoordinates"][()] if len(shape) == 2 else None,
            loss=loss, acc=acc, stderr=stderr, n_evaluated=arrays["n_evaluated"], done=flagged & valid,
            trajectory=trajectory, flagged=flagged, seconds=seconds)
