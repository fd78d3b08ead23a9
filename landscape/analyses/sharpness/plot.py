"""Figures of sharpness results: the measures (bars, or the rise against ρ and σ), the ascents' progress, the
invariance table, and several files side by side. Plots read results, never recompute."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from landscape.core.figure import PlotOptions, colour, save_figure

if TYPE_CHECKING:
    from landscape.analyses.sharpness.result import Sharpness

RISES = ("worst", "worst_adaptive", "average", "average_adaptive")
SIGMAS = ("pac_bayes", "pac_bayes_adaptive")


def _read(path: str | os.PathLike[str]) -> Sharpness:
    from landscape.analyses.sharpness.schema import read_sharpness

    return read_sharpness(path)


def _label(r: Sharpness, path: str | os.PathLike[str]) -> str:
    model = r.attrs.get("model")
    return model if model and model != "null" else os.path.basename(os.fspath(path))


def _radius(r: Sharpness, name: str, i: int = 0) -> str:
    return f"ρ={r.rho[i]:g}" if name.startswith("worst") else f"σ={r.sigma[i]:g}"


def draw(result: Sharpness, *, ax: plt.Axes | None = None, options: PlotOptions | None = None) -> plt.Axes:
    """The measures of ``result`` on ``ax`` (a new figure when None); returns the axes. One ρ and one σ: bars of
    the loss rise of each measure (error bar: the average case's standard error); several: the rise against the
    radius (ρ for the worst case, σ for the average case). PAC-Bayes σ goes in the title."""
    options = options or PlotOptions()
    r = result
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    rises = [n for n in RISES if n in r.measures]
    pacs = [n for n in SIGMAS if n in r.measures]
    if len(r.rho) > 1 or len(r.sigma) > 1:
        for i, name in enumerate(rises):
            m = r.measures[name]
            x = r.rho if name.startswith("worst") else r.sigma
            ax.plot(x, m["value"], marker="o", color=colour(i), label=name)
            if "stderr" in m:
                ax.fill_between(x, m["value"] - m["stderr"], m["value"] + m["stderr"], color=colour(i), alpha=0.2)
        ax.set_xlabel("radius (ρ: worst case, σ: average case)")
        ax.set_ylabel("loss rise L(w + ε) − L(w)")
        if options.log:
            ax.set_xscale("log")
            ax.set_yscale("symlog", linthresh=1e-6)
        if rises:
            ax.legend(fontsize=8)
    elif rises:
        values = [float(r.measures[n]["value"][0]) for n in rises]
        errors = [float(r.measures[n]["stderr"][0]) if "stderr" in r.measures[n] else 0.0 for n in rises]
        y = np.arange(len(rises))
        ax.barh(y, values, color=[colour(i) for i in y])
        has = [i for i, n in enumerate(rises) if n.startswith("average")]
        if has:
            ax.errorbar([values[i] for i in has], has, xerr=[errors[i] for i in has], fmt="none", ecolor="k",
                        capsize=4)
        ax.set_yticks(y, [f"{n} ({_radius(r, n)})" for n in rises], fontsize=8)
        ax.set_xlabel("loss rise L(w + ε) − L(w)")
        if options.log:
            ax.set_xscale("symlog", linthresh=1e-6)
    else:  # PAC-Bayes only: the σ found
        values = [float(r.measures[n]["sigma"]) for n in pacs]
        y = np.arange(len(pacs))
        ax.barh(y, values, color=[colour(i) for i in y])
        ax.set_yticks(y, pacs, fontsize=8)
        ax.set_xlabel(f"PAC-Bayes σ (mean loss rise ≤ {r.attrs.get('pac_target')})")
    title = options.title or f"sharpness: {r.attrs.get('model') or ''} (L(w) = {r.loss:.4g})"
    if pacs and rises:
        title += "\n" + ", ".join(f"{n} σ = {float(r.measures[n]['sigma']):.4g}" for n in pacs)
    ax.set_title(title, fontsize=9)
    return ax


def _draw_history(ax: plt.Axes, r: Sharpness) -> None:
    """The best rise found so far against the ascent step (mean over subsets): flat at the end = settled."""
    for i, name in enumerate(n for n in ("worst", "worst_adaptive") if n in r.measures):
        hist = np.asarray(r.measures[name]["history"], dtype=np.float64)  # (R, K, steps + 1)
        best = np.fmax.accumulate(np.nan_to_num(hist, nan=-np.inf), axis=-1).mean(axis=1)
        for j, rho in enumerate(r.rho):
            ax.plot(np.arange(best.shape[-1]), best[j], color=colour(i), alpha=1 - 0.6 * j / max(len(r.rho), 1),
                    label=f"{name} ρ={rho:g}")
    ax.set_xlabel("ascent step")
    ax.set_ylabel("best loss rise so far")
    ax.set_title("worst-case ascent (flat at the end: settled)", fontsize=9)
    ax.legend(fontsize=7)


def _draw_invariance(ax: plt.Axes, r: Sharpness) -> None:
    inv = r.invariance
    assert inv is not None
    change = np.maximum(inv.relative_change(), 1e-12)
    x = np.arange(len(inv.measures))
    width = 0.8 / max(len(inv.transforms), 1)
    for t, name in enumerate(inv.transforms):
        ax.bar(x + t * width, change[t], width, label=name, color=colour(t))
    ax.axhline(0.01, color="k", ls="--", lw=0.8, label="1%")
    ax.set_yscale("log")
    ax.set_xticks(x + width * (len(inv.transforms) - 1) / 2, inv.measures, rotation=30, fontsize=7, ha="right")
    ax.set_ylabel("relative change |Δ| / |value|")
    ax.set_title(f"invariance under rescaling by α = {inv.alpha:g}", fontsize=9)
    ax.legend(fontsize=7)


def plot(path: str | os.PathLike[str], *, out: str | os.PathLike[str], options: PlotOptions | None = None) -> None:
    """The measures; the worst-case ascents' progress when computed; the invariance table when checked."""
    options = options or PlotOptions()
    r = _read(path)
    extra = [p for p, on in ((_draw_history, any(n.startswith("worst") for n in r.measures)),
                             (_draw_invariance, r.invariance is not None)) if on]
    fig, axes = plt.subplots(1, 1 + len(extra), figsize=(6 * (1 + len(extra)), 4.5), squeeze=False)
    draw(r, ax=axes[0, 0], options=options)
    for ax, panel in zip(axes[0, 1:], extra):
        panel(ax, r)
    fig.tight_layout()
    save_figure(fig, out, dpi=options.dpi)


def compare(paths: Sequence[str | os.PathLike[str]], *, labels: Sequence[str] | None = None,
            out: str | os.PathLike[str], options: PlotOptions | None = None) -> None:
    """Files side by side: bars of each loss-rise measure (at each file's first ρ and σ) and of PAC-Bayes σ."""
    options = options or PlotOptions()
    results = [_read(p) for p in paths]
    labels = list(labels) if labels else [_label(r, p) for r, p in zip(results, paths)]
    rises = [n for n in RISES if any(n in r.measures for r in results)]
    pacs = [n for n in SIGMAS if any(n in r.measures for r in results)]
    panels = [(rises, "loss rise at the first ρ / σ"), (pacs, "PAC-Bayes σ (larger: flatter)")]
    panels = [p for p in panels if p[0]]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    width = 0.8 / len(results)
    for ax, (names, title) in zip(axes[0], panels):
        x = np.arange(len(names))
        for i, (r, lab) in enumerate(zip(results, labels)):
            vals, errs = [], []
            for n in names:
                m = r.measures.get(n)
                if m is None:
                    vals.append(np.nan)
                    errs.append(0.0)
                elif n in SIGMAS:
                    vals.append(float(m["sigma"]))
                    errs.append(0.0)
                else:
                    vals.append(float(m["value"][0]))
                    errs.append(float(m["stderr"][0]) if "stderr" in m else 0.0)
            ax.bar(x + i * width, vals, width, yerr=np.nan_to_num(errs), label=lab, color=colour(i), capsize=3)
        ax.set_xticks(x + width * (len(results) - 1) / 2, names, rotation=20, fontsize=8)
        ax.set_title(options.title or title, fontsize=9)
        if options.log:
            ax.set_yscale("symlog", linthresh=1e-6)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out, dpi=options.dpi)
