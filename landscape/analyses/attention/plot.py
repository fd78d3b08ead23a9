"""Figures of attention-vs-importance results: a scatter per module; per-module correlations to compare models.

Comparisons draw each Spearman ρ as a point with its 95% interval (Fisher z with the Spearman standard error
√(1.06/(n − 3)), Fieller et al. 1957; n the module's channels), never as bars.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from landscape.core.figure import PlotOptions, colour, save_figure, styled, tidy_ticks

if TYPE_CHECKING:
    from landscape.analyses.attention.result import Attention

_DEFAULT = PlotOptions()


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _pooled_title(result: Attention) -> str:
    a, w = result.pooled, result.pooled_within
    within = f", within-module ρ={w.spearman:.2f}" if not math.isnan(w.spearman) else ""
    return (f"{result.attrs.get('label') or ''}: attention weight vs importance; pooled ρ={a.spearman:.2f} "
            f"(p={a.spearman_p:.2g}), τ={a.kendall:.2f}{within}")


def rho_interval(rho: float, n: int) -> tuple[float, float]:
    """The 95% interval of a Spearman ρ over ``n`` pairs (Fisher z, SE √(1.06/(n − 3))); NaNs when n ≤ 3."""
    if n <= 3 or not math.isfinite(rho):
        return math.nan, math.nan
    z = math.atanh(min(max(rho, -0.999999), 0.999999))
    half = 1.959964 * math.sqrt(1.06 / (n - 3))
    return math.tanh(z - half), math.tanh(z + half)


def _rho_points(ax: Any, x: np.ndarray, rho: Sequence[float], n: Sequence[int], *, color: str, label: str | None,
                marker: str = "o", filled: bool = True) -> None:
    """Each ρ at ``x`` with its 95% interval as an error bar."""
    values = np.asarray(rho, dtype=float)
    ci = np.array([rho_interval(r, k) for r, k in zip(values, n)]).reshape(-1, 2)
    err = np.nan_to_num(np.abs(np.vstack([values - ci[:, 0], ci[:, 1] - values])))
    ax.errorbar(x, values, yerr=err, fmt=marker, color=color, capsize=3, ms=5, label=label,
                mfc=color if filled else "white")


@styled
def draw(result: Attention | str | os.PathLike[str], *, ax: Any = None, module: int | str | None = None,
         options: PlotOptions | None = None) -> Any:
    """Importance against mean attention weight on ``ax`` (a new figure when None); returns the Axes.

    ``module`` (position or name): that module's points, its correlations in the title (one panel of ``plot``);
    None: every module in its own colour (its ρ in the legend), the pooled correlations in the title.
    """
    from landscape.analyses.attention.result import Attention

    options = options or _DEFAULT
    r = result if isinstance(result, Attention) else Attention.from_file(result)
    if ax is None:
        _, ax = _plt().subplots(figsize=(5.5, 4.2))
    if module is None:
        for k, m in enumerate(r.modules):
            ax.scatter(m.mean_weight, m.importance, s=12, alpha=0.8, color=colour(k),
                       label=f"{m.name} (ρ={m.correlation.spearman:.2f})")
        ax.legend(fontsize=7)
        title = _pooled_title(r)
    else:
        m = r.module(module)
        ax.scatter(m.mean_weight, m.importance, s=12, alpha=0.8, color=colour(0))
        c = m.correlation
        title = f"{m.name}\nρ={c.spearman:.2f} (p={c.spearman_p:.2g}), τ={c.kendall:.2f}"
    ax.set_title(options.title or title, fontsize=9)
    ax.set_xlabel("mean attention weight")
    ax.set_ylabel(f"importance ({r.importance})")
    ax.grid(alpha=0.3)
    if options.log:
        ax.set_yscale("symlog")
    tidy_ticks(ax, nbins=5)
    return ax


@styled
def plot(path: str | os.PathLike[str], *, out: str, options: PlotOptions | None = None) -> None:
    """Scatter of importance against mean attention weight, one panel per module (``draw`` with ``module``),
    correlations in the titles."""
    from landscape.analyses.attention.result import Attention

    options = options or _DEFAULT
    plt = _plt()
    r = Attention.from_file(path)
    cols = min(3, len(r.modules))
    rows = math.ceil(len(r.modules) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False, layout="constrained")
    panel = replace(options, title=None)  # the title names the figure; each panel keeps its module's
    for k, ax in enumerate(list(axes.flat)[:len(r.modules)]):
        draw(r, ax=ax, module=k, options=panel)
    for ax in list(axes.flat)[len(r.modules):]:
        ax.set_visible(False)
    fig.suptitle(options.title or _pooled_title(r))
    save_figure(fig, out, dpi=options.dpi)


@styled
def compare(paths: Sequence[str | os.PathLike[str]], *, labels: Sequence[str] | None = None, out: str,
            options: PlotOptions | None = None) -> None:
    """Spearman ρ per module (points with 95% intervals, one colour per file, side by side) and the pooled ρ."""
    options = options or _DEFAULT
    from landscape.analyses.attention.schema import read_attention

    plt = _plt()
    loaded = [read_attention(p) for p in paths]
    names = [labels[k] if labels else str(a.get("label") or Path(os.fspath(p)).stem)
             for k, ((a, _), p) in enumerate(zip(loaded, paths))]
    width = min(0.7 / len(loaded), 0.2)  # the sideways step between files at one module
    fig, (ax, ax_pool) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 1]},
                                      layout="constrained")
    for k, ((_, modules), name) in enumerate(zip(loaded, names)):
        shift = (k - (len(loaded) - 1) / 2) * width
        _rho_points(ax, np.arange(len(modules)) + shift, [m["spearman"] for m in modules],
                    [len(m["importance"]) for m in modules], color=colour(k), label=name)
    longest = max((mods for _, mods in loaded), key=len)
    ax.set_xticks(np.arange(len(longest)), [m["name"] for m in longest], rotation=20 if len(longest) > 3 else 0,
                  ha="right" if len(longest) > 3 else "center", fontsize=8 if len(longest) <= 12 else 6)
    ax.set_xlim(-0.5, len(longest) - 0.5)
    ax.set_xlabel("attention module (forward order)")
    ax.set_ylabel("Spearman ρ (weight vs importance)")
    ax.set_ylim(-1.05, 1.05)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.legend(fontsize=8)
    ax.grid(False, axis="x")
    ax.set_title("per module (error bars: 95% interval, Fisher z)")
    for k, (a, modules) in enumerate(loaded):
        n = sum(len(m["importance"]) for m in modules)
        _rho_points(ax_pool, np.array([k - 0.15]), [a["spearman"]], [n], color=colour(k),
                    label="raw values" if k == 0 else None)
        _rho_points(ax_pool, np.array([k + 0.15]), [a.get("within_spearman", np.nan)], [n], color=colour(k),
                    label="within-module ranks" if k == 0 else None, marker="s", filled=False)
    ax_pool.set_xticks(range(len(loaded)), names, rotation=30 if len(loaded) > 2 else 0,
                       ha="right" if len(loaded) > 2 else "center", fontsize=8)
    ax_pool.set_xlim(-0.5, len(loaded) - 0.5)
    ax_pool.set_ylim(-1.05, 1.05)
    ax_pool.set_ylabel("Spearman ρ")
    ax_pool.set_title("pooled over all channels")
    ax_pool.legend(fontsize=7)
    ax_pool.grid(False, axis="x")
    ax_pool.axhline(0, color="black", linewidth=0.8)
    fig.suptitle(options.title or "attention weight vs importance")
    save_figure(fig, out, dpi=options.dpi)
