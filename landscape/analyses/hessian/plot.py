"""Figures of Hessian results: spectral density with the top eigenvalues, and comparisons across models.

The density is drawn above 1e-6 of its peak only: the Gaussian smoothing leaves a numerical floor (~1e-10 of the
peak) far from every eigenvalue, which drawn would read as a flat spectrum. Comparisons draw points with error bars.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from landscape.analyses.hessian.schema import read_hessian
from landscape.core.figure import ACCENT, PlotOptions, colour, note, save_figure, styled, tidy_ticks

FLOOR = 1e-6  # densities are drawn above this fraction of their peak (below it: the smoothing's numerical floor)
EIGEN_LABEL = "top eigenvalues (Lanczos)"


def _label(result: dict, path: str | os.PathLike[str]) -> str:
    model = result["attrs"].get("model")
    return model if model and model != "null" else os.path.basename(os.fspath(path))


def _shown(values: np.ndarray) -> np.ndarray:
    """The density above FLOOR of its peak; NaN (a gap) below."""
    values = np.asarray(values, dtype=float)
    return np.where(values > values.max() * FLOOR, values, np.nan)


def _draw_density(ax: plt.Axes, result: dict, label: str | None, options: PlotOptions, color: Any) -> float:
    """One result's density and its top eigenvalues (dashed); returns the density's peak (0 when none)."""
    d = result.get("density")
    peak = 0.0
    if d is not None:
        peak = float(np.max(d["values"]))
        ax.semilogy(d["grid"], _shown(d["values"]), label=label or "spectral density (SLQ)", color=color)
    if "eigenvalues" in result:
        for i, ev in enumerate(result["eigenvalues"]):
            ax.axvline(ev, color=color if label is not None else ACCENT, ls="--", lw=0.8,
                       label=EIGEN_LABEL if label is None and i == 0 else None)
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("spectral density (log scale)" if d is not None else "")
    if options.vmin is not None or options.vmax is not None:
        ax.set_xlim(options.vmin, options.vmax)
    return peak


def _density_limits(ax: plt.Axes, peak: float) -> None:
    """The y range of the drawn densities (FLOOR·peak … 3·peak), said in the figure."""
    if peak > 0:
        ax.set_ylim(peak * FLOOR, peak * 3)
        note(ax, f"drawn above {FLOOR:g} of the peak\n(below: the smoothing's floor)", where="upper left")


def _draw_spectrum(ax: plt.Axes, r: dict, path: str | os.PathLike[str], options: PlotOptions) -> None:
    _density_limits(ax, _draw_density(ax, r, None, options, colour(0)))
    title = options.title or f"Hessian spectrum: {_label(r, path)}"
    if "trace" in r:
        title += f" (trace {r['trace']:.4g} ± {r['trace_stderr']:.2g})"
    ax.set_title(title, fontsize=9)
    if "eigenvalues" in r or "density" in r:
        ax.legend(fontsize=8, loc="upper right")


@styled
def draw(path: str | os.PathLike[str] | dict, *, ax: plt.Axes | None = None, options: PlotOptions | None = None
         ) -> plt.Axes:
    """Draw the spectral density (log scale) with the top eigenvalues marked onto ``ax`` (a new figure when
    None); returns the axes. ``path`` may also be a result in memory, as ``read_hessian`` would return it."""
    options = options or PlotOptions()
    r = path if isinstance(path, dict) else read_hessian(path)
    path = "" if isinstance(path, dict) else path
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    _draw_spectrum(ax, r, path, options)
    return ax


@styled
def plot(path: str | os.PathLike[str], *, out: str | os.PathLike[str], options: PlotOptions | None = None) -> None:
    """Spectral density (log scale) with the top eigenvalues marked; bars per layer, and the block densities with
    the heatmap of their Jensen-Shannon distances, when stored."""
    options = options or PlotOptions()
    r = read_hessian(path)
    panels = 2 if "per_layer" in r else 1
    # Block densities overlaid, and their JS distance matrix; the whole-H panel only when it has something to show.
    spectrum = "per_block" not in r or any(key in r for key in ("density", "eigenvalues", "per_layer"))
    panels += (2 if "per_block" in r else 0) - (0 if spectrum else 1)
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False, layout="constrained")
    if spectrum:
        _draw_spectrum(axes[0, 0], r, path, options)
    if "per_layer" in r:
        names = list(r["per_layer"])
        top = [float(np.atleast_1d(r["per_layer"][n]["eigenvalues"])[0]) for n in names]
        ax = axes[0, 1]
        ax.barh(range(len(names)), top, color=colour(0))
        ax.set_yticks(range(len(names)), names, fontsize=6 if len(names) <= 30 else 4)
        ax.set_xlabel("top eigenvalue λmax of the layer's block")
        ax.grid(axis="y", visible=False)
        if options.log:
            ax.set_xscale("symlog")
        tidy_ticks(ax)
    if "per_block" in r:
        _draw_blocks(axes[0, -2], axes[0, -1], r["per_block"], options)
    save_figure(fig, out, dpi=options.dpi)


def _draw_blocks(ax_density: plt.Axes, ax_js: plt.Axes, pb: dict, options: PlotOptions) -> None:
    """Block densities (log scale) on their common grid, and the heatmap of their pairwise JS distances."""
    names = list(pb["blocks"])
    grid = pb["grid"]
    peak = 0.0
    for i, name in enumerate(names):
        values = pb["blocks"][name]["values"]
        peak = max(peak, float(np.max(values)))
        ax_density.semilogy(grid, _shown(values), lw=0.8, color=colour(i),
                            label=name if i < 12 else None)  # a legend of more than 12 blocks is unreadable
    _density_limits(ax_density, peak)
    ax_density.set_xlabel("eigenvalue λ")
    ax_density.set_ylabel("spectral density (log scale)")
    ax_density.set_title(f"block spectral densities ({len(names)} blocks, σ {pb['sigma']:.3g})", fontsize=9)
    if options.vmin is not None or options.vmax is not None:
        ax_density.set_xlim(options.vmin, options.vmax)
    ax_density.legend(fontsize=6, loc="upper right")
    image = ax_js.imshow(pb["js_distance"], vmin=0.0, vmax=1.0, cmap="viridis")
    ax_js.grid(False)
    ticks = range(len(names))
    size = 6 if len(names) <= 20 else 4
    ax_js.set_xticks(ticks, names, rotation=90, fontsize=size)
    ax_js.set_yticks(ticks, names, fontsize=size)
    mean = pb["js_mean"]
    ax_js.set_title("Jensen-Shannon distance between block densities"
                    + (f" (mean {mean:.3f})" if np.isfinite(mean) else ""), fontsize=9)
    ax_js.figure.colorbar(image, ax=ax_js, fraction=0.046, pad=0.04, label="JS distance (base 2, 0..1)")


def _points(ax: plt.Axes, labels: Sequence[str], values: Sequence[float], errors: Sequence[float], *,
            ylabel: str, options: PlotOptions) -> None:
    """One point per file with its error bar, in the file's colour; a missing value is said, not drawn."""
    for i, (value, err) in enumerate(zip(values, errors)):
        if np.isfinite(value):
            ax.errorbar([i], [value], yerr=[err] if np.isfinite(err) and err > 0 else None, fmt="o",
                        color=colour(i), capsize=4, ms=6)
        else:
            ax.annotate("not stored", (i, 0.5), xycoords=("data", "axes fraction"), ha="center", fontsize=7,
                        color="0.4")
    ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 2 else 0, ha="right" if len(labels) > 2
                  else "center")
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.grid(axis="x", visible=False)
    ax.set_ylabel(ylabel)
    if options.log and all(v > 0 for v in values if np.isfinite(v)):
        ax.set_yscale("log")
    tidy_ticks(ax)


@styled
def compare(paths: Sequence[str | os.PathLike[str]], *, labels: Sequence[str] | None = None,
            out: str | os.PathLike[str], options: PlotOptions | None = None) -> None:
    """Densities overlaid, and points with error bars of the top eigenvalue (residual) and the trace (95 %)."""
    from matplotlib.lines import Line2D

    options = options or PlotOptions()
    results = [read_hessian(p) for p in paths]
    labels = list(labels) if labels else [_label(r, p) for r, p in zip(results, paths)]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained", gridspec_kw={"width_ratios": [2, 1, 1]})
    peak = max(_draw_density(axes[0], r, lab, options, colour(i)) for i, (r, lab) in enumerate(zip(results, labels)))
    handles = [Line2D([], [], color=colour(i), label=lab) for i, (r, lab) in enumerate(zip(results, labels))
               if "density" in r or "eigenvalues" in r]
    if any("eigenvalues" in r for r in results):
        handles.append(Line2D([], [], color="0.3", ls="--", lw=0.8, label=EIGEN_LABEL))
    if any("density" in r for r in results):
        _density_limits(axes[0], peak)
    else:  # no file holds a density (computed without --density)
        axes[0].text(0.5, 0.5, "no density stored\n(run landscape hessian --density)", ha="center", va="center",
                     transform=axes[0].transAxes)
    if handles:
        axes[0].legend(handles=handles, fontsize=8, loc="upper right")
    axes[0].set_title(options.title or "Hessian spectral density", fontsize=9)
    top = [float(r["eigenvalues"][0]) if "eigenvalues" in r else np.nan for r in results]
    res = [float(r["residuals"][0]) if "residuals" in r else np.nan for r in results]
    _points(axes[1], labels, top, res, ylabel="top eigenvalue λmax", options=options)
    axes[1].set_title("top eigenvalue\n(error bar: residual ‖Hv − λv‖)", fontsize=9)
    tr = [float(r.get("trace", np.nan)) for r in results]
    se = [1.96 * float(r.get("trace_stderr", np.nan)) for r in results]
    _points(axes[2], labels, tr, se, ylabel="trace of H", options=options)
    axes[2].set_title("trace\n(error bar: ±1.96 standard errors, 95 %)", fontsize=9)
    save_figure(fig, out, dpi=options.dpi)
