"""HDF5 layout of Hessian-spectrum results (schema ``landscape.hessian/1``).

Datasets (each present when measured): ``eigenvalues`` (k,), ``residuals`` (k,), ``trace``, ``trace_stderr``
(scalars), ``density/{grid,values,nodes,weights}``, ``eigenvectors/<i>/<param name>``,
``per_layer/<layer>/{eigenvalues,trace}`` (plus ``trace_stderr``, ``residuals``), ``per_block/…`` (block
heterogeneity, see :func:`write_per_block`). Root attributes: ``schema``,
``library_version``, ``checkpoint``, ``checkpoint_sha256``, ``model``, ``dataset``, ``split``, ``n_samples``,
``seed``, ``mode``, ``n_hvp``, ``seconds``, ``which``, ``k``, ``tol``, ``probes`` and the other settings given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
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

SCHEMA = "landscape.hessian/1"


def write_hessian(path: str | os.PathLike[str], *, attrs: Mapping[str, Any],
                  eigenvalues: np.ndarray | None = None, residuals: np.ndarray | None = None,
                  trace: float | None = None, trace_stderr: float | None = None,
                  density: Mapping[str, np.ndarray] | None = None,
                  eigenvectors: Sequence[Mapping[str, np.ndarray]] | None = None,
                  per_layer: Mapping[str, Mapping[str, Any]] | None = None,
                  per_block: Mapping[str, Any] | None = None) -> None:
    """Write one Hessian result atomically (temp file + rename)."""
    with atomic_h5(path) as f:
        write_attrs(f, {**base_attrs(SCHEMA), **attrs})
        if eigenvalues is not None:
            f["eigenvalues"] = np.asarray(eigenvalues, dtype=np.float64)
            f["residuals"] = np.asarray(residuals if residuals is not None else np.full(len(eigenvalues), np.nan),
                                        dtype=np.float64)
        if trace is not None:
            f["trace"] = np.float64(trace)
            f["trace_stderr"] = np.float64(trace_stderr if trace_stderr is not None else np.nan)
        if density is not None:
            g = f.create_group("density")
            for key in ("grid", "values", "nodes", "weights"):
                g[key] = np.asarray(density[key], dtype=np.float64)
        if eigenvectors is not None:
            g = f.create_group("eigenvectors")
            for i, vec in enumerate(eigenvectors):
                gi = g.create_group(str(i), track_order=True)  # keep the model's parameter order
                for name, value in vec.items():
                    gi[name] = np.asarray(value)
        if per_layer is not None:
            g = f.create_group("per_layer", track_order=True)
            for layer, values in per_layer.items():
                gl = g.create_group(layer)
                for key, value in values.items():
                    gl[key] = np.asarray(value, dtype=np.float64)
        if per_block is not None:
            write_per_block(f.create_group("per_block"), per_block)


@guard_read
def read_hessian(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Everything but the eigenvectors, as plain numpy values; ``attrs`` holds the root attributes."""
    require_schema(path, SCHEMA)
    out: dict[str, Any] = {}
    with open_h5(path) as f:
        out["attrs"] = read_attrs(f)
        for key in ("eigenvalues", "residuals"):
            if key in f:
                out[key] = f[key][()]
        for key in ("trace", "trace_stderr"):
            if key in f:
                out[key] = float(f[key][()])
        if "density" in f:
            out["density"] = {k: f["density"][k][()] for k in f["density"]}
        if "per_layer" in f:
            out["per_layer"] = {name: {k: f["per_layer"][name][k][()] for k in f["per_layer"][name]}
                                for name in f["per_layer"]}
        if "per_block" in f:
            out["per_block"] = read_per_block(f["per_block"])
        out["n_eigenvectors"] = len(f["eigenvectors"]) if "eigenvectors" in f else 0
    return out


@guard_read
def read_eigenvectors(path: str | os.PathLike[str]) -> list[dict[str, np.ndarray]]:
    """The saved eigenvectors, in eigenvalue order, each ``{parameter name: array}`` (unit norm overall)."""
    from landscape.errors import LandscapeError

    require_schema(path, SCHEMA)
    with open_h5(path) as f:
        if "eigenvectors" not in f:
            raise LandscapeError(f"{path} holds no eigenvectors; compute the Hessian again with eigenvectors=True")
        g = f["eigenvectors"]
        return [{name: g[i][name][()] for name in g[i]} for i in sorted(g, key=int)]


# -- per_block: block heterogeneity (blocks.py). A group of its own: readers that predate it never look inside. --
_BLOCK_ARRAYS = ("eigenvalues", "residuals", "values", "nodes", "weights")
_BLOCK_SCALARS = ("trace", "trace_stderr")


def write_per_block(g: Any, per_block: Mapping[str, Any]) -> None:
    """``per_block/{grid, js_distance}``, attributes ``sigma``, ``js_mean`` and the settings, and one group
    ``blocks/<i>`` per block (in order; attributes ``name``, ``trace_method``, ``size``; ``params`` as strings)."""
    import h5py

    write_attrs(g, {**per_block.get("settings", {}), "sigma": float(per_block["sigma"]),
                    "js_mean": float(per_block["js_mean"])})
    g["grid"] = np.asarray(per_block["grid"], dtype=np.float64)
    g["js_distance"] = np.asarray(per_block["js_distance"], dtype=np.float64)
    gb = g.create_group("blocks")
    for i, (name, block) in enumerate(per_block["blocks"].items()):
        gi = gb.create_group(str(i))  # block names may hold '/', so they are attributes, not group names
        write_attrs(gi, {"name": name, "trace_method": block["trace_method"], "size": int(block["size"])})
        gi["params"] = np.asarray(list(block["params"]), dtype=h5py.string_dtype())
        for key in (*_BLOCK_ARRAYS, *_BLOCK_SCALARS):
            gi[key] = np.asarray(block[key], dtype=np.float64)


def read_per_block(g: Any) -> dict[str, Any]:
    """The ``per_block`` group as written by :func:`write_per_block` (blocks in their stored order)."""
    attrs = read_attrs(g)
    settings = {k: None if v == "null" else v for k, v in attrs.items() if k not in ("sigma", "js_mean")}
    patterns = settings.get("patterns")
    if isinstance(patterns, str):
        settings["patterns"] = json.loads(patterns)  # a list is stored as JSON text
    blocks: dict[str, dict[str, Any]] = {}
    for i in sorted(g["blocks"], key=int):
        gi = g["blocks"][i]
        a = read_attrs(gi)
        block: dict[str, Any] = {"params": [str(p) for p in gi["params"].asstr()[()]], "size": int(a["size"]),
                                 "trace_method": a["trace_method"]}
        block.update({k: gi[k][()] for k in _BLOCK_ARRAYS})
        block.update({k: float(gi[k][()]) for k in _BLOCK_SCALARS})
        blocks[str(a["name"])] = block
    return {"grid": g["grid"][()], "sigma": float(attrs["sigma"]), "js_distance": g["js_distance"][()],
            "js_mean": float(attrs["js_mean"]), "settings": settings, "blocks": blocks}
