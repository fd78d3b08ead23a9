"""Text helpers for ``landscape info``: the rows every analysis's summary prints, and the generic listing."""

from __future__ import annotations

import json
import os
from typing import Any

# Provenance first, in this order; the remaining attributes follow alphabetically.
PROVENANCE = ("model", "model_options", "label", "checkpoint", "checkpoint_sha256", "checkpoint_step",
              "checkpoint_epoch", "dataset", "data_dir", "split", "n_samples", "subset", "seed", "device", "source",
              "mode")


def fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.4g}" for v in values)


def row(name: str, text: str) -> str:
    return f"  {name:<30} {text}"


def settings(attrs: dict[str, Any], *, skip: tuple[str, ...] = ()) -> list[str]:
    """The root attributes, provenance first; ``skip`` names those the summary prints as headline numbers."""
    keys = [k for k in PROVENANCE if k in attrs]
    keys += sorted(k for k in attrs if k not in PROVENANCE and k not in skip and k != "schema")
    lines = []
    for key in keys:
        value = attrs[key]
        if value is None or (isinstance(value, str) and value == "null"):
            continue
        if isinstance(value, float):
            value = float(f"{value:.6g}")  # timings and the like: six digits say enough
        text = value if isinstance(value, str) else json.dumps(
            value.tolist() if hasattr(value, "tolist") else value, default=str)
        lines.append(row(key, " ".join(str(text).split())))
    return lines


def stat_line(name: str, values: Any, what: str) -> str:
    import numpy as np

    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if not v.size:
        return row(name, f"none finite (over {what})")
    return row(name, f"mean {v.mean():.6g}, max {v.max():.6g} (over {v.size} {what})")


def generic_lines(file: str | os.PathLike[str], *, shown: bool = False) -> list[str]:
    """Dataset shapes (groups of groups, such as ``per_layer``, as a count); and the attributes too when no summary
    printed them (an unknown kind or version)."""
    import h5py

    from landscape.core.store import open_h5, read_attrs

    with open_h5(file) as f:
        lines = [] if shown else settings(read_attrs(f))
        lines.append("  datasets:")
        for name, obj in f.items():
            if isinstance(obj, h5py.Dataset):
                lines.append(f"  /{name:<29} {obj.shape} {obj.dtype}")
            elif all(isinstance(child, h5py.Dataset) for child in obj.values()):
                lines += [f"  /{name + '/' + key:<29} {child.shape} {child.dtype}" for key, child in obj.items()]
            else:
                lines.append(f"  /{name + '/':<29} {len(obj)} groups")
    return lines
