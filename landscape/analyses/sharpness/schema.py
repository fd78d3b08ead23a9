"""HDF5 layout of sharpness results (schema ``landscape.sharpness/1``).

Datasets: ``loss`` (scalar, ``L(w)``), ``rho`` (R,), ``sigma`` (S,), ``subsets`` (K, m) when m-sharpness split the
samples, and one group per measure computed (``worst``, ``worst_adaptive``, ``average``, ``average_adaptive``,
``pac_bayes``, ``pac_bayes_adaptive``) holding its arrays (see :class:`~landscape.analyses.sharpness.result.
Sharpness`). With an invariance check, ``invariance/`` holds ``values`` (1 + T, M: row 0 the model as given, then
one row per rescaling), ``output_diff`` (T,) and, as attributes, ``alpha``, ``measures``, ``transforms``,
``descriptions`` and ``rejected``. Root attributes: ``schema``, ``library_version``, the provenance record and
every setting (``measures``, ``norm``, ``m``, ``steps``, ``step_size``, ``random_start``, ``xi``, ``draws``,
``pac_target``, ``pac_draws``, ``pac_steps``, ``params``, ``ignore``, ``mode``, ``batch_size``, ``seed`` …).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from landscape.analyses.sharpness.result import Sharpness

SCHEMA = "landscape.sharpness/1"
_INTS = ("last_improvement",)


def write_sharpness(path: str | os.PathLike[str], result: Sharpness) -> None:
    """Write one sharpness result atomically (temp file + rename)."""
    with atomic_h5(path) as f:
        attrs = {k: v for k, v in result.attrs.items() if k not in ("schema", "library_version")}
        write_attrs(f, {**base_attrs(SCHEMA), **attrs})
        f["loss"] = np.float64(result.loss)
        f["rho"] = np.asarray(result.rho, dtype=np.float64)
        f["sigma"] = np.asarray(result.sigma, dtype=np.float64)
        if result.subsets is not None:
            f["subsets"] = np.asarray(result.subsets, dtype=np.int64)
        for name, arrays in result.measures.items():
            g = f.create_group(name)
            for key, value in arrays.items():
                g[key] = np.asarray(value, dtype=np.int64 if key in _INTS else np.float64)
        inv = result.invariance
        if inv is not None:
            g = f.create_group("invariance")
            g["values"] = np.asarray(inv.values, dtype=np.float64)
            g["output_diff"] = np.asarray(inv.output_diff, dtype=np.float64)
            write_attrs(g, {"alpha": inv.alpha, "measures": json.dumps(list(inv.measures)),
                            "transforms": json.dumps(list(inv.transforms)),
                            "descriptions": json.dumps(list(inv.descriptions)),
                            "rejected": json.dumps(list(inv.rejected))})


def _names(value: Any) -> tuple[str, ...]:
    return tuple(json.loads(value) if isinstance(value, str) else value)


@guard_read
def read_sharpness(path: str | os.PathLike[str]) -> Sharpness:
    """The file as a :class:`Sharpness` (its ``path`` set)."""
    from landscape.analyses.sharpness.invariance import Invariance
    from landscape.analyses.sharpness.result import MEASURES, Sharpness

    require_schema(path, SCHEMA)
    with open_h5(path) as f:
        attrs = read_attrs(f)
        if isinstance(attrs.get("measures"), str):
            attrs["measures"] = json.loads(attrs["measures"])
        measures = {name: {key: f[name][key][()] for key in f[name]} for name in MEASURES if name in f}
        invariance = None
        if "invariance" in f:
            g = f["invariance"]
            ga = read_attrs(g)
            invariance = Invariance(alpha=float(ga["alpha"]), measures=_names(ga["measures"]),
                                    transforms=_names(ga["transforms"]), descriptions=_names(ga["descriptions"]),
                                    rejected=_names(ga["rejected"]), values=g["values"][()],
                                    output_diff=g["output_diff"][()])
        return Sharpness(attrs=attrs, loss=float(f["loss"][()]), rho=f["rho"][()], sigma=f["sigma"][()],
                         measures=measures, subsets=f["subsets"][()] if "subsets" in f else None,
                         invariance=invariance, path=os.fspath(path))
