"""Figures of attention-vs-importance results: a scatter per module; per-module correlations to compare models."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from landscape.core.figure import PlotOptions, save_figure

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
            ax.scatter(m.mean_weight, m.importance, s=12, alpha=0.8, color=f"C{k % 10}",
                       label=f"{m.name} (ρ={m.correlation.spearman:.2f})")
        ax.legend(fontsize=7)
        title = _pooled_title(r)
    else:
        m = r.module(module)
        ax.scatter(m.mean_weight, m.importance, s=12, alpha=0.8)
        c = m.correlation
        title = f"{m.name}\nρ={c.spearman:.2f} (p={c.spearman_p:.2g}), τ={c.kendall:.2f}"
    ax.set_title(options.title or title, fontsize=9)
    ax.set_xlabel("mean attention weight")
    ax.set_ylabel(f"importance ({r.importance})")
    ax.grid(alpha=0.3)
    if options.log:
        ax.set_yscale("symlog")
    return ax


def plot(path: str | os.PathLike[str], *, out: str, options: PlotOptions | None = None) -> None:
    """Scatter of importance against mean attention weight, one panel per module (``draw`` with ``module``),
    correlations in the titles."""
    from landscape.analyses.attention.result import Attention

    options = options or _DEFAULT
    plt = _plt()
    r = Attention.from_file(path)
    cols = min(3, len(r.modules))
    rows = math.ceil(len(r.modules) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    panel = replace(options, title=None)  # the title names the figure; each panel keeps its module's
    for k, ax in enumerate(list(axes.flat)[:len(r.modules)]):
        draw(r, ax=ax, module=k, options=panel)
    for ax in list(axes.flat)[len(r.modules):]:
        ax.set_visible(False)
    fig.suptitle(options.title or _pooled_title(r))
    fig.tight_layout()
    save_figure(fig, out, dpi=options.dpi)


def compare(paths: Sequence[str | os.PathLike[str]], *, labels: Sequence[str] | None = None, out: str,
            options: PlotOptions | None = None) -> None:
    """Spearman ρ per module (grouped bars, one colour per file) and the pooled ρ, side by side."""
    options = options or _DEFAULT
    from landscape.analyses.attention.schema import read_attention

    plt = _plt()
    loaded = [read_attention(p) for p in paths]
    names = [labels[k] if labels else str(a.get("label") or Path(os.fspath(p)).stem)
             for k, ((a, _), p) in enumerate(zip(loaded, paths))]
    width = 0.8 / len(loaded)
    fig, (ax, ax_pool) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 1]})
    for k, ((_, modules), name) in enumerate(zip(loaded, names)):
        rho = np.array([m["spearman"] for m in modules], dtype=float)
        ax.bar(np.arange(rho.size) + k * width, rho, width, label=name)
    longest = max((mods for _, mods in loaded), key=len)
    ax.set_xticks(np.arange(len(longest)) + 0.4 - width / 2, [m["name"] for m in longest], rotation=20,
                  ha="right", fontsize=8)
    ax.set_xlabel("attention module (forward order)")
    ax.set_ylabel("Spearman ρ (weight vs importance)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    ax_pool.bar(np.arange(len(loaded)) - 0.2, [a["spearman"] for a, _ in loaded], 0.4,
                color=[f"C{k}" for k in range(len(loaded))], label="raw values")
    ax_pool.bar(np.arange(len(loaded)) + 0.2, [a.get("within_spearman", np.nan) for a, _ in loaded], 0.4,
                color=[f"C{k}" for k in range(len(loaded))], hatch="//", alpha=0.6, label="within-module ranks")
    ax_pool.set_xticks(range(len(loaded)), names, rotation=30, ha="right", fontsize=8)
    ax_pool.set_title("pooled over all channels")
    ax_pool.legend(fontsize=7)
    ax_pool.axhline(0, color="black", linewidth=0.8)
    fig.suptitle(options.title or "attention weight vs importance")
    fig.tight_layout()
    save_figure(fig, out, dpi=options.dpi)
