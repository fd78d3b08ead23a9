"""Figures of input-space results: median curve and inter-quartile band per model (and per pair type).

The loss panel is drawn on a log scale when its curves span more than ``LOG_SPAN`` (same-class paths between real
samples sit near 0 and vanish on a linear one); the axis label says so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from landscape.core.figure import (
    LOG_SPAN,
    PlotOptions,
    colour,
    log_span,
    note,
    save_figure,
    styled,
    tidy_ticks,
)

if TYPE_CHECKING:
    from landscape.analyses.inputspace.result import InputSpace

_DEFAULT = PlotOptions()
_METRIC = {"loss": 0, "prob": 1, "probability": 1, "acc": 1, "accuracy": 1}

# panel title -> (x key, x label); per mode the panels are (y label, curves) pairs built by _series
_X = {"around": ("radius", "radius ‖Δx‖ along the direction"), "between": ("alpha", "α  ((1 − α)·x_i + α·x_j)"),
      "noise": ("sigma", "σ of the Gaussian input noise (input units)")}


def _series(attrs: dict, arrays: dict) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """Panels as ``(y label, [(group label, curves (n, N)), ...])``."""
    mode = attrs["mode"]
    if mode == "around":
        n = arrays["radius"].size
        return [("loss", [("", arrays["loss"].reshape(-1, n))]),
                ("true-class probability", [("", arrays["prob"].reshape(-1, n))])]
    if mode == "between":
        same = arrays["same_class"].astype(bool)
        groups = [(" same class", same), (" different class", ~same)]
        return [("loss (mixup target)", [(g, arrays["loss"][m]) for g, m in groups if m.any()]),
                ("probability of x_i's class", [(g, arrays["prob_i"][m]) for g, m in groups if m.any()])]
    return [("loss", [("", arrays["loss"])]), ("accuracy", [("", arrays["acc"])])]


def _band(ax, x: np.ndarray, curves: np.ndarray, label: str, color: str, linestyle: str = "-") -> np.ndarray:
    """The median curve and its inter-quartile band; returns what was drawn (3, len(x))."""
    q25, med, q75 = np.nanpercentile(curves, [25, 50, 75], axis=0)
    ax.plot(x, med, color=color, linestyle=linestyle, label=label)
    ax.fill_between(x, q25, q75, color=color, alpha=0.2, linewidth=0)
    return np.array([q25, med, q75])


def _label(attrs: dict, path: str) -> str:
    label = attrs.get("label")
    return str(label) if label not in (None, "null", "") else Path(path).stem


def _panel(ax: Any, loaded: Sequence[tuple[dict, dict]], names: Sequence[str], index: int,
           options: PlotOptions, *, legend: bool = True) -> None:
    """Panel ``index`` (0: loss; 1: probability, or accuracy for noise) of every result, one colour per result."""
    xkey, xlabel = _X[loaded[0][0]["mode"]]
    ylabel = ""
    drawn = []
    for k, ((attrs, arrays), name) in enumerate(zip(loaded, names)):
        ylabel, groups = _series(attrs, arrays)[index]
        for g, (glabel, curves) in enumerate(groups):
            drawn.append(_band(ax, arrays[xkey], curves, f"{name}{glabel}", colour(k), ("-", "--")[g % 2]).ravel())
    ax.set_xlabel(xlabel)
    if index == 0:
        values = np.concatenate(drawn) if drawn else np.zeros(0)
        span = log_span(values)
        if options.log:
            ax.set_yscale("log")
            ylabel += ", log scale"
        elif options.vmin is None and options.vmax is None and span > LOG_SPAN:
            ax.set_yscale("log")
            ylabel += ", log scale (automatic)"
            note(ax, f"log scale: the curves span {span:.2g}×", where="lower right")
        ax.set_ylim(options.vmin, options.vmax)
        finite = values[np.isfinite(values)]
        clipped = [f"{n}={v:g}" for n, v, out in (
            ("vmin", options.vmin, options.vmin is not None and finite.size and finite.min() < options.vmin),
            ("vmax", options.vmax, options.vmax is not None and finite.size and finite.max() > options.vmax)) if out]
        if clipped:
            note(ax, f"clipped at {', '.join(clipped)}")
    ax.set_ylabel(ylabel)
    tidy_ticks(ax)
    if legend:
        ax.legend(fontsize=8)


def _title(loaded: Sequence[tuple[dict, dict]], options: PlotOptions) -> str:
    attrs0 = loaded[0][0]
    mode = attrs0["mode"]
    detail = {"around": f"{attrs0.get('directions')} directions", "between": "pairs of real samples",
              "noise": f"{attrs0.get('draws')} noise draws"}[mode]
    return options.title or f"input space, {mode} ({detail}): median and inter-quartile band"


def _load(paths: Sequence[str]) -> list[tuple[dict, dict]]:
    from landscape.analyses.inputspace.schema import read_inputspace
    from landscape.errors import LandscapeError

    loaded = [read_inputspace(p) for p in paths]
    modes = {a["mode"] for a, _ in loaded}
    if len(modes) > 1:
        raise LandscapeError(f"cannot overlay input-space modes {', '.join(sorted(modes))}; compare one mode at a time")
    return loaded


@styled
def _draw(paths: Sequence[str], labels: Sequence[str] | None, out: str, options: PlotOptions) -> None:
    import matplotlib.pyplot as plt

    loaded = _load(paths)
    names = [labels[k] if labels else _label(attrs, path) for k, ((attrs, _), path) in enumerate(zip(loaded, paths))]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for index, ax in enumerate(axes):
        _panel(ax, loaded, names, index, options, legend=False)
    # One legend for both panels, below them: inside, it would cover the curves.
    handles, entries = axes[0].get_legend_handles_labels()
    fig.legend(handles, entries, loc="outside lower center", ncols=min(4, len(entries)), fontsize=8)
    fig.suptitle(_title(loaded, options))
    save_figure(fig, out, dpi=options.dpi)


@styled
def draw(result: InputSpace | str | os.PathLike[str], *, ax: Any = None, options: PlotOptions | None = None) -> Any:
    """One panel of ``landscape plot`` on ``ax`` (a new figure when None): ``options.metric`` ``"loss"`` (the
    default) or ``"prob"`` (true-class probability; accuracy for noise). Returns the Axes."""
    import matplotlib.pyplot as plt

    from landscape.analyses.inputspace.result import InputSpace
    from landscape.errors import LandscapeError

    options = options or _DEFAULT
    if options.metric not in _METRIC:
        raise LandscapeError(f"metric={options.metric!r}; use loss or prob (acc for noise)")
    r = result if isinstance(result, InputSpace) else InputSpace.from_file(result)
    attrs, arrays = r.attrs, r.arrays()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    _panel(ax, [(attrs, arrays)], [_label(attrs, r.path or "result")], _METRIC[options.metric], options)
    ax.set_title(_title([(attrs, arrays)], options), fontsize=9)
    return ax


def plot(path: str | os.PathLike[str], *, out: str, options: PlotOptions | None = None) -> None:
    """One result: loss and probability (accuracy for noise) over the grid, median and inter-quartile band."""
    options = options or _DEFAULT
    _draw([os.fspath(path)], None, out, options)


def compare(paths: Sequence[str | os.PathLike[str]], *, labels: Sequence[str] | None = None, out: str,
            options: PlotOptions | None = None) -> None:
    """Several results of one mode overlaid (e.g. ResNet vs FMMNet), one colour per file."""
    options = options or _DEFAULT
    _draw([os.fspath(p) for p in paths], labels, out, options)
