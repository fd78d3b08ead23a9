"""The Hessian HDF5 store: round trip, parameter order of eigenvectors, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from landscape.analyses.hessian.schema import read_eigenvectors, read_hessian, write_hessian
from landscape.errors import LandscapeError


def test_round_trip_keeps_order(tmp_path: Path) -> None:
    vec = {"z.weight": np.ones((2, 2)), "a.bias": np.zeros(3)}
    layers = {"z": {"eigenvalues": [2.0], "trace": 3.0}, "a": {"eigenvalues": [1.0], "trace": 1.5}}
    write_hessian(tmp_path / "h.h5", attrs={"seed": 3, "model": None}, eigenvalues=np.array([2.0, 1.0]),
                  residuals=np.array([1e-9, 1e-8]), trace=4.5, trace_stderr=0.1, eigenvectors=[vec, vec],
                  per_layer=layers,
                  density={"grid": np.arange(3.0), "values": np.ones(3), "nodes": np.ones((1, 2)),
                           "weights": np.full((1, 2), 0.5)})
    r = read_hessian(tmp_path / "h.h5")
    assert r["attrs"]["seed"] == 3 and r["attrs"]["schema"] == "landscape.hessian/1"
    np.testing.assert_array_equal(r["eigenvalues"], [2.0, 1.0])
    assert r["trace"] == 4.5 and list(r["per_layer"]) == ["z", "a"] and r["n_eigenvectors"] == 2
    vecs = read_eigenvectors(tmp_path / "h.h5")
    assert len(vecs) == 2 and list(vecs[0]) == ["z.weight", "a.bias"]
    np.testing.assert_array_equal(vecs[1]["z.weight"], np.ones((2, 2)))


def test_missing_eigenvectors_and_foreign_file(tmp_path: Path) -> None:
    write_hessian(tmp_path / "h.h5", attrs={}, trace=1.0)
    with pytest.raises(LandscapeError, match="holds no eigenvectors; compute the Hessian again with eigenvectors=True"):
        read_eigenvectors(tmp_path / "h.h5")
    with pytest.raises(LandscapeError, match="not found"):
        read_hessian(tmp_path / "nope.h5")
