"""Figures of loss surfaces: 1D curves, 2D contour / filled contour / heatmap / 3D surface, and comparisons.

Unfinished and diverged points are masked (never drawn as values). The PCA trajectory stored with a surface is
drawn on 2D figures.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colors

from landscape.analyses.surface.schema import SurfaceData, read
from landscape.core.figure import PlotOptions, figure_format, save_figure
from landscape.errors import LandscapeError

KINDS_2D = ("contour", "contourf", "heatmap", "surface3d")
_DEFAULT = PlotOptions()


def _values(data: SurfaceData, options: PlotOptions) -> np.ma.MaskedArray:
    """The metric with unfinished, diverged and (for --log) non-positive points masked."""
    v = data.loss if options.metric == "loss" else data.acc
    mask = ~data.done | ~np.isfinite(v)
    if options.log:
        mask |= ~(v > 0)
    return np.ma.masked_array(np.where(mask, np.nan, v), mask=mask)


def _kind(data: SurfaceData, kind: str, *, compare: bool = False) -> str:
    if kind == "auto":
        return "line" if data.ndim == 1 else ("contourf" if compare else "contour")
    if data.ndim == 1 and kind != "line":
        raise LandscapeError(f"{data.path} is a 1D surface; kind={kind!r} needs a 2D one (use kind='line')")
    if data.ndim == 2 and kind == "line":
        raise LandscapeError(f"{data.path} is a 2D surface; kind='line' needs a 1D one (use kind='contour', "
                             "'contourf', 'heatmap' or 'surface3d')")
    return kind


def _norm(values: Sequence[np.ma.MaskedArray], options: PlotOptions) -> colors.Normalize:
    """One colour scale for all panels: --vmin/--vmax, else the finite range of every panel together."""
    finite = np.concatenate([v.compressed() for v in values]) if values else np.array([])
    lo = options.vmin if options.vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = options.vmax if options.vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if options.log:
        lo = max(lo, float(finite[finite > 0].min()) if (finite > 0).any() else 1e-12)
        hi = max(hi, lo * 10 if hi <= lo else hi)
        return colors.LogNorm(lo, hi)
    if hi <= lo:
        hi = lo + 1.0
    return colors.Normalize(lo, hi)


def _levels(norm: colors.Normalize, n: int) -> np.ndarray:
    lo, hi = float(norm.vmin), float(norm.vmax)  # type: ignore[arg-type]  # _norm always sets both
    return np.geomspace(lo, hi, n) if isinstance(norm, colors.LogNorm) else np.linspace(lo, hi, n)


def _label(data: SurfaceData, options: PlotOptions) -> str:
    split = data.attrs.get("split", "train")
    return f"{split} {'loss' if options.metric == 'loss' else 'accuracy'}"


def _axis_label(data: SurfaceData, axis: int) -> str:
    """``α (random direction x)``, ``β (PC2, 12% of variance)``…: the coefficient and the direction it scales."""
    kind = data.attrs.get("direction")
    xy = "xy"[axis]
    if kind == "pca":
        what = f"PC{axis + 1}"
        ratio = data.attrs.get("pca_explained_variance_ratio")
        try:
            ratio = json.loads(ratio) if isinstance(ratio, str) else ratio
            what += f", {100 * float(np.asarray(ratio, dtype=float).reshape(-1)[axis]):.0f}% of variance"
        except (TypeError, ValueError, IndexError):  # not recorded: the component alone names the direction
            pass
    elif kind == "eigen":
        what = f"Hessian eigenvector {axis + 1}"
    elif kind == "target" and axis == 0:
        what = "towards the target, θ_target − θ"
    elif kind in ("random", "target"):
        what = f"random direction {xy}"
    else:
        what = f"{xy} direction"
    return f"{'αβ'[axis]} ({what})"


def _draw2d(ax: plt.Axes, data: SurfaceData, v: np.ma.MaskedArray, kind: str,
            norm: colors.Normalize, options: PlotOptions) -> Any:
    assert data.y is not None
    X, Y = np.meshgrid(data.x, data.y, indexing="ij")  # [i, j] is the point (x_i, y_j)
    clipped = np.ma.masked_array(np.clip(v.filled(np.nan), norm.vmin, norm.vmax), mask=v.mask)
    mappable: Any = None
    if v.count() == 0:
        text = getattr(ax, "text2D", ax.text)  # 3D axes place screen text with text2D
        text(0.5, 0.5, "no finished points", ha="center", va="center", transform=ax.transAxes)
    elif kind == "heatmap":
        mappable = ax.pcolormesh(data.x, data.y, v.T, norm=norm, shading="nearest", cmap="viridis")
    elif kind == "surface3d":
        z = clipped.filled(np.nan)
        ax3d: Any = ax  # an Axes3D (draw checks the projection)
        mappable = ax3d.plot_surface(X, Y, z, cmap="viridis", norm=norm, linewidth=0, antialiased=True)
        ax3d.set_zlim(norm.vmin, norm.vmax)
        ax3d.set_zlabel(_label(data, options))
    elif v.count() >= 4 and np.ptp(v.compressed()) > 0:
        levels = _levels(norm, max(options.levels, 2))
        if kind == "contourf":
            mappable = ax.contourf(X, Y, clipped, levels=levels, norm=norm, cmap="viridis", extend="neither")
        else:
            mappable = ax.contour(X, Y, v, levels=levels, norm=norm, cmap="viridis", linewidths=0.9)
            ax.clabel(mappable, inline=True, fontsize=6, fmt="%.3g")
    else:
        ax.text(0.5, 0.5, "too few distinct values to contour", ha="center", va="center",
                transform=ax.transAxes)
    if data.trajectory is not None:
        path = data.trajectory
        # On a 3D surface the path is drawn on the floor of the box (the surface may hide part of it: mplot3d has
        # no depth test between artists).
        floor: dict[str, Any] = {"zs": norm.vmin, "zdir": "z"} if kind == "surface3d" else {}
        ax.plot(path[:, 0], path[:, 1], "-o", color="crimson", markersize=2.5, linewidth=1, label="trajectory",
                **floor)
        ax.plot(path[:1, 0], path[:1, 1], "s", color="crimson", markersize=5, **floor)
        ax.legend(loc="upper right", fontsize=7)
    ax.set_xlabel(_axis_label(data, 0))
    ax.set_ylabel(_axis_label(data, 1))
    if kind != "surface3d" and data.x[0] < data.x[-1] and data.y[0] < data.y[-1]:
        ax.set_xlim(data.x[0], data.x[-1])
        ax.set_ylim(data.y[0], data.y[-1])
    return mappable


def _new_axes(fig: plt.Figure, ncols: int, kind: str) -> list[plt.Axes]:
    proj = "3d" if kind == "surface3d" else None
    return [fig.add_subplot(1, ncols, i + 1, projection=proj) for i in range(ncols)]


def _title(data: SurfaceData) -> str:
    a = data.attrs
    return f"{a.get('model', '?')} · {a.get('direction', '?')} directions · {a.get('dataset', '?')}"


def _line(ax: plt.Axes, data: SurfaceData, options: PlotOptions, *, label: str | None, color=None,
          with_acc: bool = True) -> None:
    v = _values(data, options)
    line = ax.plot(data.x, v.filled(np.nan), "-", marker="." if len(data.x) <= 60 else None, label=label,
                   color=color)[0]
    if options.metric == "loss":
        se = np.where(v.mask, np.nan, data.stderr)
        if np.isfinite(se).any() and np.nanmax(se) > 0:
            ax.fill_between(data.x, v.filled(np.nan) - se, v.filled(np.nan) + se, color=line.get_color(), alpha=0.25,
                            linewidth=0)
    if data.trajectory is not None:
        # The 1D PCA path is a set of coordinates on the x axis: a rug along the bottom, the first checkpoint square.
        path = data.trajectory[:, 0]
        rug = ax.get_xaxis_transform()
        ax.plot(path, np.full(len(path), 0.03), "|", color="crimson", markersize=10, transform=rug,
                label="trajectory" if label is None else None)
        ax.plot(path[:1], [0.03], "s", color="crimson", markersize=4, transform=rug)
        if label is None:
            ax.legend(loc="upper center", fontsize=7)
    if options.log:
        ax.set_yscale("log")
    ax.set_ylim(options.vmin, options.vmax)
    ax.set_xlabel(_axis_label(data, 0))
    ax.set_ylabel(_label(data, options))
    acc = np.where(data.done & np.isfinite(data.acc), data.acc, np.nan)
    if with_acc and options.metric == "loss" and np.isfinite(acc).any():
        ax2 = ax.twinx()
        ax2.plot(data.x, acc, "--", color="tab:orange", label="accuracy")
        ax2.set_ylabel(f"{data.attrs.get('split', 'train')} accuracy", color="tab:orange")
        ax2.set_ylim(0, 1.02)


def draw(source: str | os.PathLike[str] | SurfaceData, *, ax: plt.Axes | None = None,
         options: PlotOptions = _DEFAULT) -> plt.Axes:
    """Draw one surface (a file, or a surface in memory) onto ``ax`` (a new figure when None) and return the axes;
    2D kinds add a colour bar to ``ax.figure``, and ``surface3d`` needs an ``Axes3D`` (``projection="3d"``)."""
    data = source if isinstance(source, SurfaceData) else read(source)
    kind = _kind(data, options.kind)
    if ax is None:
        fig = plt.figure(figsize=(6.4, 4.8))
        (ax,) = _new_axes(fig, 1, "line" if kind == "line" else kind)
    elif (kind == "surface3d") != (getattr(ax, "name", "") == "3d"):
        raise LandscapeError(f"kind '{kind}' needs {'a 3D' if kind == 'surface3d' else 'a 2D'} axes; pass "
                             "ax=None for a new figure")
    if kind == "line":
        _line(ax, data, options, label=None)
    else:
        v = _values(data, options)
        mappable = _draw2d(ax, data, v, kind, _norm([v], options), options)
        if mappable is not None:
            ax.figure.colorbar(plt.cm.ScalarMappable(norm=mappable.norm, cmap="viridis"), ax=ax,
                               label=_label(data, options), shrink=0.8)
    ax.set_title(options.title or _title(data), fontsize=10)
    return ax


def draw_compare(paths: Sequence[str | os.PathLike[str]], *, labels: Sequence[str] | None = None,
                 options: PlotOptions = _DEFAULT) -> plt.Figure:
    """A new figure: 1D curves overlaid, or 2D surfaces side by side on one shared colour scale."""
    datas = [read(p) for p in paths]
    if len({d.ndim for d in datas}) > 1:
        raise LandscapeError("compare needs surfaces of one dimension; got both 1D and 2D files")
    names = list(labels) if labels else [f"{d.attrs.get('model', '?')} ({os.path.basename(d.path)})" for d in datas]
    kind = _kind(datas[0], options.kind, compare=True)
    if kind == "line":
        fig = plt.figure(figsize=(6.4, 4.8))
        ax = fig.add_subplot(1, 1, 1)
        for d, name in zip(datas, names):
            _line(ax, d, options, label=name, with_acc=False)
        ax.legend(fontsize=8)
        ax.set_title(options.title or "loss along one direction", fontsize=10)
        return fig
    values = [_values(d, options) for d in datas]
    norm = _norm(values, options)
    fig = plt.figure(figsize=(4.6 * len(datas) + 1.2, 4.4), layout="constrained")
    axes = _new_axes(fig, len(datas), kind)
    mappable = None
    for ax, d, v, name in zip(axes, datas, values, names):
        m = _draw2d(ax, d, v, kind, norm, options)
        mappable = mappable or m
        ax.set_title(name, fontsize=10)
    if mappable is not None:
        fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=axes, label=_label(datas[0], options),
                     shrink=0.8)
    if options.title:
        fig.suptitle(options.title)
    return fig


def plot(path: str | os.PathLike[str], *, out: str | os.PathLike[str], options: PlotOptions = _DEFAULT) -> None:
    """Draw one surface file into ``out`` (.png, .pdf or .svg)."""
    figure_format(out)  # before any drawing
    ax = draw(path, options=options)
    save_figure(ax.figure, out, dpi=options.dpi, bbox_inches="tight")


def compare(paths: Sequence[str | os.PathLike[str]], *, labels: Sequence[str] | None = None,
            out: str | os.PathLike[str], options: PlotOptions = _DEFAULT) -> None:
    """Overlay 1D curves, or draw 2D surfaces side by side on one shared colour scale."""
    figure_format(out)  # before any drawing
    save_figure(draw_compare(paths, labels=labels, options=options), out, dpi=options.dpi, bbox_inches="tight")
