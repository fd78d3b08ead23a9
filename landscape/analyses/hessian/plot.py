"""Figures of Hessian results: spectral density with the top eigenvalues, and comparisons across models."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from landscape.analyses.hessian.schema import read_hessian
from landscape.core.figure import PlotOptions, save_figure


def _label(result: dict, path: str | os.PathLike[str]) -> str:
    model = result["attrs"].get("model")
    return model if model and model != "null" else os.path.basename(os.fspath(path))


def _draw_density(ax: plt.Axes, result: dict, label: str | None, options: PlotOptions, color: Any) -> None:
    d = result.get("density")
    if d is not None:
        floor = max(float(d["values"].max()) * 1e-12, 1e-300)
        line = ax.semilogy(d["grid"], np.maximum(d["values"], floor), label=label, color=color)[0]
        color = line.get_color()
    if "eigenvalues" in result:
        for i, ev in enumerate(result["eigenvalues"]):
            ax.axvline(ev, color=color or "C3", ls="--", lw=0.8,
                       label=("top eigenvalues" if label is None else None) if i == 0 else None)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log)" if d is not None else "")
    if options.vmin is not None or options.vmax is not None:
        ax.set_xlim(options.vmin, options.vmax)


def _draw_spectrum(ax: plt.Axes, r: dict, path: str | os.PathLike[str], options: PlotOptions) -> None:
    _draw_density(ax, r, None, options, None)
    title = options.title or f"Hessian spectrum: {_label(r, path)}"
    if "trace" in r:
        title += f" (trace {r['trace']:.4g} ± {r['trace_stderr']:.2g})"
    ax.set_title(title, fontsize=9)
    if "eigenvalues" in r or "density" in r:
        ax.legend(fontsize=8)


def draw(path: str | os.PathLike[str] | dict, *, ax: plt.Axes | None = None, options: PlotOptions | None = None
         ) -> plt.Axes:
    """Draw the spectral density (log scale) with the top eigenvalues marked onto ``ax`` (a new figure when
    None); returns the axes. ``path`` may also be a result in memory, as ``read_hessian`` would return it."""
    options = options or PlotOptions()
    r = path if isinstance(path, dict) else read_hessian(path)
    path = "" if isinstance(path, dict) else path
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    _draw_spectrum(ax, r, path, options)
    return ax


def plot(path: str | os.PathLike[str], *, out: str | os.PathLike[str], options: PlotOptions | None = None) -> None:
    """Spectral density (log scale) with the top eigenvalues marked; bars per layer, and the block densities with
    the heatmap of their Jensen-Shannon distances, when stored."""
    options = options or PlotOptions()
    r = read_hessian(path)
    panels = 2 if "per_layer" in r else 1
    # Block densities overlaid, and their JS distance matrix; the whole-H panel only when it has something to show.
    spectrum = "per_block" not in r or any(key in r for key in ("density", "eigenvalues", "per_layer"))
    panels += (2 if "per_block" in r else 0) - (0 if spectrum else 1)
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    if spectrum:
        _draw_spectrum(axes[0, 0], r, path, options)
    if "per_layer" in r:
        names = list(r["per_layer"])
        top = [float(np.atleast_1d(r["per_layer"][n]["eigenvalues"])[0]) for n in names]
        ax = axes[0, 1]
        ax.barh(range(len(names)), top)
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.set_xlabel("top eigenvalue of the layer's block")
        if options.log:
            ax.set_xscale("symlog")
    if "per_block" in r:
        _draw_blocks(axes[0, -2], axes[0, -1], r["per_block"], options)
    fig.tight_layout()
    save_figure(fig, out, dpi=options.dpi)


def _draw_blocks(ax_density: plt.Axes, ax_js: plt.Axes, pb: dict, options: PlotOptions) -> None:
    """Block densities (log scale) on their common grid, and the heatmap of their pairwise JS distances."""
    names = list(pb["blocks"])
    grid = pb["grid"]
    for i, name in enumerate(names):
        values = pb["blocks"][name]["values"]
        floor = max(float(values.max()) * 1e-12, 1e-300)
        ax_density.semilogy(grid, np.maximum(values, floor), lw=0.8, color=f"C{i % 10}",
                            label=name if i < 12 else None)  # a legend of more than 12 blocks is unreadable
    ax_density.set_xlabel("eigenvalue")
    ax_density.set_ylabel("density (log)")
    ax_density.set_title(f"block spectral densities ({len(names)} blocks, σ {pb['sigma']:.3g})", fontsize=9)
    if options.vmin is not None or options.vmax is not None:
        ax_density.set_xlim(options.vmin, options.vmax)
    ax_density.legend(fontsize=6)
    image = ax_js.imshow(pb["js_distance"], vmin=0.0, vmax=1.0, cmap="viridis")
    ticks = range(len(names))
    size = 6 if len(names) <= 20 else 4
    ax_js.set_xticks(ticks, names, rotation=90, fontsize=size)
    ax_js.set_yticks(ticks, names, fontsize=size)
    mean = pb["js_mean"]
    ax_js.set_title("Jensen-Shannon distance between block densities"
                    + (f" (mean {mean:.3f})" if np.isfinite(mean) else ""), fontsize=9)
    ax_js.figure.colorbar(image, ax=ax_js, fraction=0.046, pad=0.04)


def compare(paths: Sequence[str | os.PathLike[str]], *, labels: Sequence[str] | None = None,
            out: str | os.PathLike[str], options: PlotOptions | None = None) -> None:
    """Densities overlaid, plus bars of the top eigenvalue and the trace (with its standard error)."""
    options = options or PlotOptions()
    results = [read_hessian(p) for p in paths]
    labels = list(labels) if labels else [_label(r, p) for r, p in zip(results, paths)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for i, (r, lab) in enumerate(zip(results, labels)):
        _draw_density(axes[0], r, lab, options, f"C{i}")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=8)
    else:  # no file holds a density (computed without --density)
        axes[0].text(0.5, 0.5, "no density stored\n(run landscape hessian --density)", ha="center", va="center",
                     transform=axes[0].transAxes)
    axes[0].set_title(options.title or "Hessian spectral density", fontsize=9)
    x = np.arange(len(results))
    top = [float(r["eigenvalues"][0]) if "eigenvalues" in r else np.nan for r in results]
    res = [float(r["residuals"][0]) if "residuals" in r else 0.0 for r in results]
    axes[1].bar(x, top, yerr=np.nan_to_num(res), color=[f"C{i}" for i in x], capsize=4)
    axes[1].set_title("top eigenvalue (error bar: residual ‖Hv − λv‖)", fontsize=9)
    tr = [r.get("trace", np.nan) for r in results]
    se = [r.get("trace_stderr", 0.0) for r in results]
    axes[2].bar(x, tr, yerr=np.nan_to_num(se), color=[f"C{i}" for i in x], capsize=4)
    axes[2].set_title("trace (error bar: standard error)", fontsize=9)
    for ax in axes[1:]:
        ax.set_xticks(x, labels, rotation=20, fontsize=8)
        if options.log:
            ax.set_yscale("log")
    fig.tight_layout()
    save_figure(fig, out, dpi=options.dpi)
