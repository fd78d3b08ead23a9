"""Figures of connectivity results: loss and accuracy along t (linear vs curve, before vs after alignment), the loss
plane through the endpoints and the bend with the curve drawn on it, and comparisons across files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np

from landscape.core.figure import PlotOptions, colour, save_figure

if TYPE_CHECKING:
    from landscape.analyses.connectivity.result import Connectivity

LABELS = {"linear": "linear", "linear_aligned": "linear, aligned", "curve": "curve"}
COLORS = {"linear": colour(0), "linear_aligned": colour(1), "curve": colour(2)}
STYLES = {"linear": "-", "linear_aligned": "--", "curve": ":"}


def _result(path: Connectivity | str | os.PathLike[str]) -> Connectivity:
    from landscape.analyses.connectivity.result import Connectivity

    return path if isinstance(path, Connectivity) else Connectivity.from_file(path)


def _label(r: Connectivity) -> str:
    model = r.attrs.get("model")
    return str(model) if model and model != "null" else (os.path.basename(r.path) or "result")


def _curve_name(r: Connectivity) -> str:
    return f"curve ({r.attrs.get('curve')})"


def draw(path: Connectivity | str | os.PathLike[str], *, ax: Any = None, options: PlotOptions | None = None,
         metric: str | None = None) -> Any:
    """Loss (or accuracy: ``options.metric="acc"``) along t for every path, train solid and test dashed, the
    barrier of each path in its label; returns the Axes."""
    options = options or PlotOptions()
    r = _result(path)
    metric = metric or ("acc" if options.metric.startswith("acc") else "loss")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for name, arrays in r.paths.items():
        for split, style in (("train", "-"), ("test", "--")):
            key = f"{split}_{metric}"
            if key not in arrays:
                continue
            label = _curve_name(r) if name == "curve" else LABELS.get(name, name)
            if metric == "loss" and split in r.barriers.get(name, {}):
                b = r.barriers[name][split]
                label += f", {split} (barrier {b['height']:.3g} ± {b['stderr']:.2g})"
            else:
                label += f", {split}"
            ax.plot(r.t, arrays[key], style, color=COLORS.get(name), label=label, marker=".")
    ax.set_xlabel("t  (0: model A, 1: model B)")
    ax.set_ylabel("loss" if metric == "loss" else "accuracy")
    if options.log and metric == "loss":
        ax.set_yscale("log")
    if options.vmin is not None or options.vmax is not None:
        ax.set_ylim(options.vmin, options.vmax)
    ax.set_title(options.title or f"connectivity: {_label(r)}", fontsize=9)
    ax.legend(fontsize=7)
    return ax


def draw_plane(path: Connectivity | str | os.PathLike[str], *, ax: Any = None,
               options: PlotOptions | None = None) -> Any:
    """Filled contours of the plane's loss with θ_A, θ_B, the bend and the curve marked; returns the Axes."""
    from matplotlib import colors

    options = options or PlotOptions()
    r = _result(path)
    if r.plane is None:
        from landscape.errors import LandscapeError

        raise LandscapeError(f"{r.path or 'this result'} has no plane; compute it with plane=N (--plane N)")
    p = r.plane
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    values = np.asarray(p["loss" if not options.metric.startswith("acc") else "acc"], dtype=np.float64)
    finite = values[np.isfinite(values)]
    lo = options.vmin if options.vmin is not None else float(finite.min())
    hi = options.vmax if options.vmax is not None else float(finite.max())
    hi = hi if hi > lo else lo + 1.0
    norm: colors.Normalize = colors.LogNorm(max(lo, 1e-12), hi) if options.log else colors.Normalize(lo, hi)
    levels = np.geomspace(max(lo, 1e-12), hi, options.levels) if options.log else np.linspace(lo, hi, options.levels)
    cs = ax.contourf(p["x"], p["y"], np.clip(values, lo, hi).T, levels=levels, norm=norm, cmap="viridis")
    plt.colorbar(cs, ax=ax, label=r.attrs.get("plane_split", "train") + (" accuracy" if options.metric.startswith(
        "acc") else " loss"))
    ax.plot(p["curve"][:, 0], p["curve"][:, 1], "w-", lw=1.5, label=_curve_name(r))
    ax.plot([0, 1], [0, 0], "w--", lw=1, label="linear")
    for (x, y), name in zip(p["points"], ("A", "B", "bend")):
        ax.plot(x, y, "o" if name != "bend" else "s", color="white", mec="black")
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), color="white", fontsize=8)
    ax.set_xlabel("along θ_B − θ_A")
    ax.set_ylabel("towards the bend (same scale)")
    ax.set_aspect("equal", adjustable="box")
    ax.set_title(options.title or "loss plane through A, B and the bend", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return ax


def plot(path: str | os.PathLike[str], *, out: str | os.PathLike[str], options: PlotOptions | None = None) -> None:
    """Loss and accuracy along t (and the plane, when stored)."""
    options = options or PlotOptions()
    r = _result(path)
    panels = 3 if r.plane is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5))
    draw(r, ax=axes[0], options=options, metric="loss")
    draw(r, ax=axes[1], options=PlotOptions(title=options.title, dpi=options.dpi), metric="acc")
    if r.plane is not None:
        draw_plane(r, ax=axes[2], options=PlotOptions(title=options.title, dpi=options.dpi, log=options.log,
                                                      levels=options.levels))
    fig.tight_layout()
    save_figure(fig, out, dpi=options.dpi)


def compare(paths: Sequence[str | os.PathLike[str]], *, labels: Sequence[str] | None = None,
            out: str | os.PathLike[str], options: PlotOptions | None = None) -> None:
    """Paths of several files overlaid (colour per file, line style per path; train split), and their loss
    barriers with standard errors."""
    options = options or PlotOptions()
    results = [_result(p) for p in paths]
    labels = list(labels) if labels else [_label(r) for r in results]
    metric = "acc" if options.metric.startswith("acc") else "loss"
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    bars: list[tuple[str, float, float, str]] = []
    for i, (r, lab) in enumerate(zip(results, labels)):
        for name, arrays in r.paths.items():
            split = "train" if f"train_{metric}" in arrays else next(iter(arrays)).split("_")[0]
            axes[0].plot(r.t, arrays[f"{split}_{metric}"], STYLES.get(name, "-"), color=colour(i),
                         label=f"{lab}: {LABELS.get(name, name)}")
            b = r.barriers.get(name, {}).get(split)
            if b is not None:
                bars.append((f"{lab}\n{LABELS.get(name, name)}", b["height"], b["stderr"], colour(i)))
    axes[0].set_xlabel("t")
    axes[0].set_ylabel(f"train {'loss' if metric == 'loss' else 'accuracy'}")
    if options.log and metric == "loss":
        axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    axes[0].set_title(options.title or "connectivity", fontsize=9)
    x = np.arange(len(bars))
    axes[1].bar(x, [b[1] for b in bars], yerr=[b[2] for b in bars], color=[b[3] for b in bars], capsize=4)
    axes[1].set_xticks(x, [b[0] for b in bars], fontsize=7)
    axes[1].set_title("train loss barrier (error bar: standard error)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out, dpi=options.dpi)
