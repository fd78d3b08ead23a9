"""Figures of gradient predictiveness: loss variation, gradient change and effective β over training.

Three panels as in Santurkar et al. (2018), Figure 4: (a) the loss band ``min_η … max_η L(W − ηg)``,
(b) the gradient-predictiveness band ``min_η … max_η ‖∇L(W − ηg) − g‖``, (c) the effective β-smoothness line.
``compare`` overlays several files (e.g. ResNet vs FMMNet) in the same three panels. A training file is a time
series (lines and bands); a checkpoint file's rows are independent batches, drawn as points and ranges, never
joined.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from landscape.analyses.predictiveness import schema as store
from landscape.core.figure import PlotOptions, colour, save_figure, styled, tidy_ticks
from landscape.errors import LandscapeError

_PANELS = ("loss landscape", "gradient predictiveness", "effective β-smoothness")
_YLABELS = ("loss  L(W − ηg)", "‖∇L(W − ηg) − g‖₂", "max_η ‖∇L(W − ηg) − g‖ / ‖ηg‖")


# The three panels: what each draws (``PlotOptions.metric`` picks one for ``Predictiveness.plot``).
METRICS = ("loss", "grad_diff", "beta")


def _load(path: str | os.PathLike[str]) -> store.PredictivenessData:
    data = store.read(path)
    _check_rows(data, path)
    return data


def _check_rows(data: Any, where: str | os.PathLike[str]) -> None:
    if len(data.step) == 0:
        raise LandscapeError(f"{where} has no rows yet (no probe has run): probe during training or at a "
                             "checkpoint first")


def _label(path: str | os.PathLike[str], data: Any) -> str:
    model = data.attrs.get("model")
    if isinstance(model, str) and model not in ("", "null"):
        return model
    path = Path(path)
    # A training run stores DIR/predictiveness.h5, so the run folder names the curve best.
    return path.parent.name if path.stem == "predictiveness" and path.parent.name else path.stem


def _settings(data: Any) -> str:
    etas = data.eta
    return (f"η ∈ [{etas.min():g}, {etas.max():g}] ({len(etas)} steps), "
            f"BN {data.attrs.get('bn_mode', '?')} mode while probing")


def _batches(data: Any) -> bool:
    """Whether the rows are independent batches of one checkpoint (not a time series along training)."""
    return data.attrs.get("x_axis", "step") == "batch"


def _band(ax: plt.Axes, x: np.ndarray, values: np.ndarray, color: str, label: str | None, *,
          joined: bool = True) -> None:
    lo, hi = values.min(axis=1), values.max(axis=1)
    if not joined:  # independent batches: each its own range over η, caps at min and max
        ax.vlines(x, lo, hi, color=color, lw=2, alpha=0.7, label=label)  # type: ignore[arg-type]
        ax.plot(x, lo, "_", color=color, ms=8, mew=1.5)
        ax.plot(x, hi, "_", color=color, ms=8, mew=1.5)
    elif len(x) == 1:
        # None means no legend entry; matplotlib accepts it though its stubs say str
        ax.vlines(x, lo, hi, color=color, lw=6, alpha=0.5, label=label)  # type: ignore[arg-type]
    else:
        ax.fill_between(x, lo, hi, color=color, alpha=0.35, lw=0, label=label)
        ax.plot(x, lo, color=color, lw=0.6)
        ax.plot(x, hi, color=color, lw=0.6)


def _panel(ax: plt.Axes, data: Any, metric: str, color: str, label: str | None, *, shift: float = 0.0) -> None:
    """One panel's curve of ``data`` (a file's content or a ``Predictiveness``): a band over η, or β. ``shift``
    moves a checkpoint's points sideways, so that several files' batches stand side by side."""
    joined = not _batches(data)
    x = np.asarray(data.step, dtype=np.float64) + (0.0 if joined else shift)
    if metric == "beta":
        ax.plot(x, data.beta, color=color, marker="o" if len(x) <= 30 or not joined else None, ms=3 if joined else 5,
                linestyle="-" if joined else "none", label=label)
    else:
        _band(ax, x, getattr(data, metric), color, label, joined=joined)


def _dress(ax: plt.Axes, metric: str, xlabel: str, options: PlotOptions) -> None:
    i = METRICS.index(metric)
    ax.set_title(_PANELS[i])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_YLABELS[i])
    if options.log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    tidy_ticks(ax)
    if xlabel.startswith("batch"):
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))  # batch indices are whole numbers


def _xlabel(datasets: Sequence[Any]) -> str:
    names = {d.attrs.get("x_axis", "step") for d in datasets}
    return "batch (independent; not a time series)" if names == {"batch"} else "training step"


@styled
def draw(data: Any, *, ax: plt.Axes | None = None, options: PlotOptions | None = None) -> plt.Axes:
    """One panel of ``landscape plot`` for ``data`` (a ``Predictiveness`` or a file's content) on ``ax`` (a new
    figure when None); ``options.metric`` picks it: ``loss`` (band over η), ``grad_diff`` (band) or ``beta``."""
    options = options or PlotOptions()
    if options.metric not in METRICS:
        raise LandscapeError(f"metric={options.metric!r}: a predictiveness result draws 'loss', 'grad_diff' or "
                             "'beta'")
    _check_rows(data, getattr(data, "path", "") or "the result")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.8), constrained_layout=True)
    _panel(ax, data, options.metric, colour(0), None)
    _dress(ax, options.metric, _xlabel([data]), options)
    if options.title:
        ax.set_title(options.title)
    return ax


@styled
def _draw(paths: Sequence[str | os.PathLike[str]], labels: Sequence[str] | None, out: str | os.PathLike[str],
          options: PlotOptions) -> None:
    datasets = [_load(p) for p in paths]
    labels = list(labels) if labels is not None else [_label(p, d) for p, d in zip(paths, datasets)]
    settings = [_settings(d) for d in datasets]
    shared = len(set(settings)) == 1
    if not shared:  # β over other η grids or BN modes is another quantity: each curve carries its own settings
        labels = [f"{label} ({s})" for label, s in zip(labels, settings)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    width = min(0.6 / len(datasets), 0.15)  # the sideways step between files at one batch index
    for i, (data, label) in enumerate(zip(datasets, labels)):
        legend = label if len(datasets) > 1 else None
        for ax, metric in zip(axes, METRICS):
            _panel(ax, data, metric, colour(i), legend, shift=(i - (len(datasets) - 1) / 2) * width)
    xlabel = _xlabel(datasets)
    for ax, metric in zip(axes, METRICS):
        _dress(ax, metric, xlabel, options)
    if len(datasets) > 1:
        axes[0].legend(loc="best", fontsize="small")
    default_title = settings[0] if shared else "probe settings differ between the curves (see the legend)"
    fig.suptitle(options.title or default_title)
    save_figure(fig, out, dpi=options.dpi)


def plot(path: str | os.PathLike[str], *, out: str | os.PathLike[str], options: PlotOptions) -> None:
    """Three panels over steps (or batches, for a checkpoint file): loss band, gradient-change band, β."""
    _draw([path], None, out, options)


def compare(paths: Sequence[str | os.PathLike[str]], *, labels: Sequence[str] | None,
            out: str | os.PathLike[str], options: PlotOptions) -> None:
    """Overlay several predictiveness files in one figure, one colour per file (Santurkar et al., Fig. 4)."""
    if labels is not None and len(labels) != len(paths):
        raise LandscapeError(f"{len(labels)} labels for {len(paths)} files; give one label per file")
    _draw(paths, labels, out, options)
