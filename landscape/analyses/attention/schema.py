"""HDF5 layout of attention-vs-importance results (schema ``landscape.attention/1``); a public contract.

Root attributes: ``schema``, ``library_version``, ``importance`` (ablation | taylor), ``n_modules``, ``base_loss``,
``n_samples``, ``n_forward``, ``seconds``, ``seed``, the pooled correlation ``spearman``, ``spearman_p``,
``kendall``, ``kendall_p`` (over all channels of all modules), the same four with the prefix ``within_`` (pooled
over ranks normalised within each module), ``batch_size``, ``label``, ``checkpoint`` and the provenance record of
``landscape.core.provenance`` (``weights_sha256``, ``checkpoint_sha256``, ``model``, ``model_options``, ``dataset``,
``data_dir``, ``split``, ``subset``, ``device``, ``dtype``, ``threads``, versions); older files lack some of these
(and the ``within_`` four), and still load.
Written by ``Attention.save`` (``landscape.analyses.attention.result``), which the command calls too.
One group per attention module, ``modules/000``, ``modules/001`` … in forward order, with attributes ``name``
(qualified module name), ``kind`` (class name), ``spearman``, ``spearman_p``, ``kendall``, ``kendall_p`` and
datasets ``mean_weight`` (C,) and ``importance`` (C,), float64. Undefined correlations are NaN.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
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

SCHEMA = "landscape.attention/1"
CORRELATION_KEYS = ("spearman", "spearman_p", "kendall", "kendall_p")


def write_attention(path: str | os.PathLike[str], *, modules: Sequence[Mapping[str, Any]],
                    attrs: Mapping[str, Any]) -> Path:
    """Write atomically; each module mapping holds ``name``, ``kind``, ``mean_weight``, ``importance`` and the
    correlation keys; ``attrs`` holds ``importance``, the pooled correlation keys and the settings."""
    need = ("importance", *CORRELATION_KEYS)
    missing = [k for k in need if k not in attrs]
    if missing or not modules:
        raise LandscapeError(f"attention result lacks {', '.join(missing) or 'modules'}")
    with atomic_h5(path) as f:
        write_attrs(f, {**base_attrs(SCHEMA), **attrs, "n_modules": len(modules)})
        group = f.create_group("modules")
        for i, m in enumerate(modules):
            g = group.create_group(f"{i:03d}")
            write_attrs(g, {k: m[k] for k in ("name", "kind", *CORRELATION_KEYS)})
            for key in ("mean_weight", "importance"):
                g.create_dataset(key, data=np.asarray(m[key], dtype=np.float64))
    return Path(path)


@guard_read
def read_attention(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(root attributes, modules)``; each module a dict of its attributes plus ``mean_weight``/``importance``."""
    require_schema(path, SCHEMA)
    with open_h5(path) as f:
        attrs = read_attrs(f)
        if "modules" not in f:
            raise LandscapeError(f"{path} is an incomplete attention file; compute it again")
        modules = []
        for key in sorted(f["modules"].keys()):
            g = f["modules"][key]
            modules.append({**read_attrs(g), "mean_weight": g["mean_weight"][()], "importance": g["importance"][()]})
    return attrs, modules
