"""HDF5 layout of mode-connectivity results (schema ``landscape.connectivity/1``); a public contract.

- root attributes: ``schema``, ``library_version``, the provenance of model A (``weights_sha256``, ``checkpoint``,
  ``checkpoint_sha256``, ``model``, ``model_options``, ``dataset``, ``seed``, ``device``, ``threads`` …) and the
  settings (``points``, ``bn``, ``bn_curve``, ``align``, ``curve``, ``curve_epochs``, ``curve_lr``,
  ``curve_batch_size``, ``curve_momentum``, ``curve_weight_decay``, ``curve_endpoint_b``, ``recal_samples``,
  ``batch_size``, ``splits``, ``n_train``/``n_test``, ``plane``, ``plane_margin``, ``seconds``);
- ``t`` (T,) float64, from 0 to 1;
- ``paths/<name>/<split>_{loss,acc,stderr}`` (T,) float64 for ``name`` in ``linear``, ``linear_aligned``,
  ``curve``; group attributes ``barrier_<split>_{height,stderr,t,max_loss}``;
- ``endpoint_b``: a group whose attributes are the provenance of model B;
- ``alignment/perms/<name>`` int64 (with alignment); attributes ``sweeps``, ``converged``, ``kind``,
  ``objective_before``, ``objective_after``;
- ``curve/history`` (epochs,) mean training loss per epoch, ``curve/bend/<parameter>`` (with a curve); attribute
  ``kind``;
- ``plane/{x,y}`` (N,), ``plane/{loss,acc}`` (N, N) with ``[i, j]`` at ``(x[i], y[j])``, ``plane/points`` (3, 2)
  (θ_A, θ_B, bend), ``plane/curve`` (T, 2).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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

SCHEMA = "landscape.connectivity/1"
PATHS = ("linear", "linear_aligned", "curve")
BARRIER_KEYS = ("height", "stderr", "t", "max_loss")
SPLIT_ORDER = ("train", "test")


def write(path: str | os.PathLike[str], *, attrs: Mapping[str, Any], t: np.ndarray,
          paths: Mapping[str, Mapping[str, np.ndarray]], barriers: Mapping[str, Mapping[str, Mapping[str, float]]],
          endpoint_b: Mapping[str, Any], alignment: Mapping[str, Any] | None = None,
          curve: Mapping[str, Any] | None = None, plane: Mapping[str, np.ndarray] | None = None) -> None:
    """Write one result atomically (built in memory, renamed into place)."""
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        raise LandscapeError(f"unknown path '{unknown[0]}'; a connectivity file holds {', '.join(PATHS)}")
    with atomic_h5(path) as f:
        write_attrs(f, {**base_attrs(SCHEMA), **{k: v for k, v in attrs.items()
                                                 if k not in ("schema", "library_version")}})
        f["t"] = np.asarray(t, dtype=np.float64)
        g = f.create_group("paths", track_order=True)
        for name, arrays in paths.items():
            gp = g.create_group(name)
            for key, value in arrays.items():
                gp[key] = np.asarray(value, dtype=np.float64)
            write_attrs(gp, {f"barrier_{split}_{k}": float(v[k]) for split, v in barriers[name].items()
                             for k in BARRIER_KEYS})
        write_attrs(f.create_group("endpoint_b"), endpoint_b)
        if alignment is not None:
            ga = f.create_group("alignment")
            gperm = ga.create_group("perms")
            for name, perm in alignment["perms"].items():
                gperm[name] = np.asarray(perm, dtype=np.int64)
            write_attrs(ga, {k: v for k, v in alignment.items() if k != "perms"})
        if curve is not None:
            gc = f.create_group("curve")
            gc["history"] = np.asarray(curve["history"], dtype=np.float64)
            gb = gc.create_group("bend", track_order=True)  # keep the model's parameter order
            for name, value in curve["bend"].items():
                gb[name] = np.asarray(value)
            write_attrs(gc, {"kind": curve["kind"]})
        if plane is not None:
            gpl = f.create_group("plane")
            for key in ("x", "y", "loss", "acc", "points", "curve"):
                gpl[key] = np.asarray(plane[key], dtype=np.float64)


@guard_read
def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The fields of :class:`~landscape.analyses.connectivity.result.Connectivity` as stored."""
    require_schema(path, SCHEMA)
    with open_h5(path) as f:
        attrs = read_attrs(f)
        t = f["t"][()]
        paths, barriers = {}, {}
        for name in f["paths"]:
            g = f["paths"][name]
            paths[name] = {key: g[key][()] for key in g}
            ga = read_attrs(g)
            found = {k.split("_")[1] for k in ga if k.startswith("barrier_")}
            splits = sorted(found, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 9, s))
            barriers[name] = {s: {k: float(ga[f"barrier_{s}_{k}"]) for k in BARRIER_KEYS} for s in splits}
        out: dict[str, Any] = {"attrs": attrs, "t": t, "paths": paths, "barriers": barriers,
                               "endpoint_b": read_attrs(f["endpoint_b"])}
        if "alignment" in f:
            ga = f["alignment"]
            out["alignment"] = {**read_attrs(ga), "perms": {k: ga["perms"][k][()] for k in ga["perms"]}}
        if "curve" in f:
            gc = f["curve"]
            out["curve"] = {**read_attrs(gc), "history": gc["history"][()],
                            "bend": {k: gc["bend"][k][()] for k in gc["bend"]}}
        if "plane" in f:
            out["plane"] = {k: f["plane"][k][()] for k in f["plane"]}
    if t.ndim != 1 or any(v.shape != t.shape for p in paths.values() for v in p.values()):
        raise LandscapeError(f"{path} is damaged: its paths do not match its t grid; compute it again")
    return out
