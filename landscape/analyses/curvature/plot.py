"""Figures of curvature along training: λmax against the step with its stability threshold (2/η for gradient
descent), Adam's preconditioned sharpness with ``(2 + 2β₁)/((1 − β₁)η)``, and the trace when measured.

``compare`` overlays several runs (e.g. gradient descent at two step sizes: the edge-of-stability figure), each
run's threshold dashed in its colour.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from landscape.core.figure import PlotOptions, save_figure
from landscape.errors import LandscapeError

METRICS = ("lambda_max", "trace")


def _metric(options: PlotOptions) -> str:
    metric = "lambda_max" if options.metric == "loss" else options.metric  # "loss": PlotOptions' default
    if metric not in METRICS:
        raise LandscapeError(f"metric={options.metric!r}: a curvature result draws 'lambda_max' or 'trace'")
    return metric


def _check(result: Any) -> None:
    if len(result) == 0:
        raise LandscapeError(f"{result.path or 'the result'} has no measurements yet (none has run)")


def _label(result: Any) -> str:
    path = Path(result.path) if result.path else None
    if path is not None and path.stem.startswith("curvature") and path.parent.name:
        return path.parent.name  # a run stores RUN/curvature.h5: the run folder names the curve best
    return path.stem if path is not None else str(result.attrs.get("model", "run"))


def _curves(ax: plt.Axes, result: Any, metric: str, color: str, label: str | None) -> None:
    rows, x = result.rows, np.asarray(result.step, dtype=np.float64)
    marker = "o" if len(x) <= 30 else None
    suffix = f" {label}" if label else ""
    if metric == "trace":
        ax.plot(x, rows["trace"], color=color, marker=marker, ms=3, label=f"trace{suffix}")
        ok = np.isfinite(rows["trace_stderr"])
        if ok.any():
            err = rows["trace_stderr"]
            ax.fill_between(x, rows["trace"] - err, rows["trace"] + err, color=color, alpha=0.25, lw=0)
        return
    if result.is_adam:
        ax.plot(x, rows["precond_lambda_max"], color=color, marker=marker, ms=3,
                label=f"λmax(P⁻¹H){suffix}")
        ax.plot(x, rows["precond_threshold"], color=color, ls="--", lw=1, label=f"(2+2β₁)/((1−β₁)η){suffix}")
        ax.plot(x, rows["lambda_max"], color=color, alpha=0.5, lw=1, ls=":", label=f"λmax(H){suffix}")
        return
    ax.plot(x, rows["lambda_max"], color=color, marker=marker, ms=3, label=f"λmax{suffix}")
    ax.plot(x, rows["two_over_lr"], color=color, ls="--", lw=1, label=f"2/η{suffix}")
    momentum = np.isfinite(rows["threshold"]) & ~np.isclose(rows["threshold"], rows["two_over_lr"])
    if momentum.any():
        ax.plot(x, rows["threshold"], color=color, ls="-.", lw=1, label=f"(2+2μ)/η{suffix}")


def _dress(ax: plt.Axes, metric: str, options: PlotOptions) -> None:
    ax.set_xlabel("training step")
    ax.set_ylabel("Hessian trace" if metric == "trace" else "top Hessian eigenvalue")
    if options.log:
        ax.set_yscale("log")
    if options.vmin is not None or options.vmax is not None:
        ax.set_ylim(options.vmin, options.vmax)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")


def draw(result: Any, *, ax: plt.Axes | None = None, options: PlotOptions | None = None) -> plt.Axes:
    """One panel for ``result`` (a ``Curvature``) on ``ax`` (a new figure when None)."""
    options = options or PlotOptions()
    metric = _metric(options)
    _check(result)
    if metric == "trace" and not result.has_trace:
        raise LandscapeError(f"{result.path or 'the result'} holds no trace; measure with trace_probes > 0")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    _curves(ax, result, metric, plt.rcParams["axes.prop_cycle"].by_key()["color"][0], None)
    _dress(ax, metric, options)
    ax.set_title(options.title or ("Hessian trace" if metric == "trace" else "sharpness and its threshold"))
    return ax


def _draw(results: Sequence[Any], labels: Sequence[str] | None, out: str | os.PathLike[str],
          options: PlotOptions) -> None:
    for r in results:
        _check(r)
    labels = list(labels) if labels is not None else [_label(r) for r in results]
    metric = _metric(options)
    with_trace = metric == "lambda_max" and any(r.has_trace for r in results)
    fig, axes = plt.subplots(1, 2 if with_trace else 1, figsize=(12 if with_trace else 7, 4.2),
                             constrained_layout=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (r, label) in enumerate(zip(results, labels)):
        legend = label if len(results) > 1 else None
        _curves(axes[0, 0], r, metric, colors[i % len(colors)], legend)
        if with_trace and r.has_trace:
            _curves(axes[0, 1], r, "trace", colors[i % len(colors)], legend)
    _dress(axes[0, 0], metric, options)
    if with_trace:
        _dress(axes[0, 1], "trace", PlotOptions(log=options.log))
        axes[0, 1].set_title("Hessian trace (Hutch++, ± stderr)")
    a = results[0].attrs
    axes[0, 0].set_title(options.title or f"top Hessian eigenvalue on {a.get('n_samples', '?')} fixed samples "
                         f"({a.get('optimizer', '?')})")
    save_figure(fig, out, dpi=options.dpi)


def plot(path: str | os.PathLike[str], *, out: str | os.PathLike[str], options: PlotOptions) -> None:
    """λmax and its threshold over steps (and the trace beside it, when measured)."""
    from landscape.analyses.curvature.result import Curvature

    _draw([Curvature.from_file(path)], None, out, options)


def compare(paths: Sequence[str | os.PathLike[str]], *, labels: Sequence[str] | None,
            out: str | os.PathLike[str], options: PlotOptions) -> None:
    """Overlay several curvature files, one colour per file, each with its own threshold dashed."""
    from landscape.analyses.curvature.result import Curvature

    if labels is not None and len(labels) != len(paths):
        raise LandscapeError(f"{len(labels)} labels for {len(paths)} files; give one label per file")
    _draw([Curvature.from_file(p) for p in paths], labels, out, options)
