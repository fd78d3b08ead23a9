"""``landscape info`` for surface files: settings, progress, loss range and flatness."""

from __future__ import annotations

import os

from landscape.core.summary import fmt

_SETTINGS = ("model", "checkpoint", "dataset", "split", "n_samples", "direction", "norm", "ignore", "dir_type",
             "xspec", "yspec", "seed", "bn", "recalibration_samples", "batch_size", "precision_target",
             "min_samples", "target", "trajectory", "eigenvectors", "pca_explained_variance_ratio", "device",
             "library_version", "compute_seconds")


def summary(file: str | os.PathLike[str]) -> list[str]:
    import numpy as np

    from landscape.analyses.surface.compute import flatness
    from landscape.analyses.surface.schema import SCHEMA, read

    lines: list[str] = []
    data = read(file)
    a = data.attrs
    lines.append(f"{file}: {SCHEMA}, {data.ndim}D surface, grid {'×'.join(str(n) for n in data.loss.shape)}")
    for key in _SETTINGS:
        if key in a and a[key] not in ("null", None):
            lines.append(f"  {key:<30} {' '.join(str(a[key]).split())}")
    done, total = int(data.done.sum()), data.done.size
    state = "complete" if done == total else "incomplete: run the same command again to resume"
    lines.append(f"  {'progress':<30} {done}/{total} points ({state})")
    if data.n_lacking:
        lines.append(f"  {'damaged points':<30} {data.n_lacking} marked done but lacking values (a write failed); "
                     "run the same command again to recompute them")
    finite = data.loss[data.done & np.isfinite(data.loss)]
    if done:
        diverged = int((data.done & ~np.isfinite(data.loss)).sum())
        span = f"{finite.min():.6g} .. {finite.max():.6g}" if finite.size else "none finite"
        lines.append(f"  {'loss range':<30} {span}" + (f" ({diverged} diverged points)" if diverged else ""))
        n = data.n_evaluated[data.done]
        lines.append(f"  {'samples per point':<30} {int(n.min())} .. {int(n.max())}; stderr of the loss up to "
                     f"{np.nanmax(data.stderr[data.done]):.3g}")
    if done < total:
        return lines
    flat = flatness(data.x, data.y, data.loss)
    if "note" in flat:
        lines.append(f"  flatness: {flat['note']}")
        return lines
    lines.append(f"  {'centre loss':<30} {flat['centre_loss']:.6g}")
    for r, mean, mx in zip(flat["radii"], flat["rise_mean"], flat["rise_max"]):
        lines.append(f"  {'loss rise at r=' + format(r, '.3g'):<30} mean {mean:.4g}, max {mx:.4g}")
    if "curvature" in flat:
        what = "curvature (d²L/dα²)" if data.ndim == 1 else "curvature (fit Hessian eigs)"
        lines.append(f"  {what:<30} {fmt(flat['curvature'])} (quadratic fit within r={flat['fit_radius']:.3g})")
    return lines
