"""Figures of attention-vs-importance results: a scatter per module; per-module correlations to compare models."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from landscape.core.figure import PlotOptions, save_figure

_DEFAULT = PlotOptions()


def _plt():
    import matplotlib.pyplot as plt

    return plt


def plot(path: str | os.PathLike[str], *, out: str, options: PlotOptions | None = None) -> None:
    """Scatter of importance against mean attention weight, one panel per module, correlations in the titles."""
    options = options or _DEFAULT
    from landscape.analyses.attention.schema import read_attention

    plt = _plt()
    attrs, modules = read_attention(path)
    cols = min(3, len(modules))
    rows = math.ceil(len(modules) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax, m in zip(axes.flat, modules):
        ax.scatter(m["mean_weight"], m["importance"], s=12, alpha=0.8)
        ax.set_title(f"{m['name']}\nρ={m['spearman']:.2f} (p={m['spearman_p']:.2g}), τ={m['kendall']:.2f}",
                     fontsize=9)
        ax.set_xlabel("mean attention weight")
        ax.set_ylabel(f"importance ({attrs['importance']})")
        ax.grid(alpha=0.3)
        if options.log:
            ax.set_yscale("symlog")
    for ax in list(axes.flat)[len(modules):]:
        ax.set_visible(False)
    within = f", within-module ρ={attrs['within_spearman']:.2f}" if "within_spearman" in attrs else ""
    fig.suptitle(options.title or f"{attrs.get('label', '')}: attention weight vs importance; pooled "
                 f"ρ={attrs['spearman']:.2f} (p={attrs['spearman_p']:.2g}), τ={attrs['kendall']:.2f}{within}")
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
