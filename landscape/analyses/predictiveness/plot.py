"""Figures of gradient predictiveness: loss variation, gradient change and effective β over training.

Three panels as in Santurkar et al. (2018), Figure 4: (a) the loss band ``min_η … max_η L(W − ηg)``,
(b) the gradient-predictiveness band ``min_η … max_η ‖∇L(W − ηg) − g‖``, (c) the effective β-smoothness line.
``compare`` overlays several files (e.g. ResNet vs FMMNet) in the same three panels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from landscape.analyses.predictiveness import schema as store
from landscape.core.figure import PlotOptions, save_figure
from landscape.errors import LandscapeError

_PANELS = ("loss landscape", "gradient predictiveness", "effective β-smoothness")
_YLABELS = ("loss  L(W − ηg)", "‖∇L(W − ηg) − g‖₂", "max_η ‖∇L(W − ηg) − g‖ / ‖ηg‖")


def _load(path: str | os.PathLike[str]) -> store.PredictivenessData:
    data = store.read(path)
    if len(data.step) == 0:
        raise LandscapeError(f"{path} has no rows yet (no probe has run); train with --probe-every or run "
                             "'landscape predictiveness' first")
    return data


def _label(path: str | os.PathLike[str], data: store.PredictivenessData) -> str:
    model = data.attrs.get("model")
    if isinstance(model, str) and model not in ("", "null"):
        return model
    path = Path(path)
    # A training run stores DIR/predictiveness.h5, so the run folder names the curve best.
    return path.parent.name if path.stem == "predictiveness" and path.parent.name else path.stem


def _settings(data: store.PredictivenessData) -> str:
    etas = data.eta
    return (f"η ∈ [{etas.min():g}, {etas.max():g}] ({len(etas)} steps), "
            f"BN {data.attrs.get('bn_mode', '?')} mode while probing")


def _band(ax: plt.Axes, x: np.ndarray, values: np.ndarray, color: str, label: str | None) -> None:
    lo, hi = values.min(axis=1), values.max(axis=1)
    if len(x) == 1:
        # None means no legend entry; matplotlib accepts it though its stubs say str
        ax.vlines(x, lo, hi, color=color, lw=6, alpha=0.5, label=label)  # type: ignore[arg-type]
    else:
        ax.fill_between(x, lo, hi, color=color, alpha=0.35, lw=0, label=label)
        ax.plot(x, lo, color=color, lw=0.6)
        ax.plot(x, hi, color=color, lw=0.6)


def _draw(paths: Sequence[str | os.PathLike[str]], labels: Sequence[str] | None, out: str | os.PathLike[str],
          options: PlotOptions) -> None:
    datasets = [_load(p) for p in paths]
    labels = list(labels) if labels is not None else [_label(p, d) for p, d in zip(paths, datasets)]
    settings = [_settings(d) for d in datasets]
    shared = len(set(settings)) == 1
    if not shared:  # β over other η grids or BN modes is another quantity: each curve carries its own settings
        labels = [f"{label} ({s})" for label, s in zip(labels, settings)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    axis_names = {d.attrs.get("x_axis", "step") for d in datasets}
    for i, (data, label) in enumerate(zip(datasets, labels)):
        color = colors[i % len(colors)]
        x = data.step.astype(np.float64)
        legend = label if len(datasets) > 1 else None
        _band(axes[0], x, data.loss, color, legend)
        _band(axes[1], x, data.grad_diff, color, legend)
        axes[2].plot(x, data.beta, color=color, marker="o" if len(x) <= 30 else None, ms=3, label=legend)
    xlabel = "batch" if axis_names == {"batch"} else "training step"
    for ax, title, ylabel in zip(axes, _PANELS, _YLABELS):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if options.log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
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
