"""Figures of loss surfaces: 1D curves, 2D contour / filled contour / heatmap / 3D surface, and comparisons.

Unfinished and diverged points are masked (never drawn as values). The PCA trajectory stored with a surface is
drawn on 2D figures, zoomed to when it is much smaller than the grid. The scale is chosen from the data unless
given (a loss spanning more than ``LOG_SPAN`` is drawn on a log scale; contour lines crowd into the basin when a
linear spacing would hide it), and the figure says what it chose or clipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colors
from matplotlib.ticker import MaxNLocator

from landscape.analyses.surface.schema import SurfaceData, read
from landscape.core.figure import (
    ACCENT,
    CMAP,
    LOG_SPAN,
    PlotOptions,
    colour,
    figure_format,
    log_span,
    note,
    save_figure,
    styled,
    tidy_ticks,
)
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


@dataclass(frozen=True)
class _Scale:
    """The colour scale shared by every panel, its contour levels, and the words that say how it was chosen."""

    norm: colors.Normalize
    levels: np.ndarray
    says: str  # "" when nothing was chosen for the reader (a plain linear scale over the whole range)


def _scale(values: Sequence[np.ma.MaskedArray], options: PlotOptions, kind: str = "contourf") -> _Scale:
    """vmin=/vmax= (clipped: said), log=True, else from the data: log when a loss spans more than LOG_SPAN, contour
    lines log-spaced above the minimum when a linear spacing would leave the basin inside its first step."""
    finite = np.concatenate([v.compressed() for v in values]) if values else np.array([])
    n = max(options.levels, 2)
    lo = options.vmin if options.vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = options.vmax if options.vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if options.log:
        lo = max(lo, float(finite[finite > 0].min()) if (finite > 0).any() else 1e-12)
        hi = max(hi, lo * 10 if hi <= lo else hi)
        return _Scale(colors.LogNorm(lo, hi), np.geomspace(lo, hi, n), "log scale")
    if hi <= lo:
        hi = lo + 1.0
    clipped = [f"{name}={limit:g}" for name, limit, out in (
        ("vmin", options.vmin, finite.size and options.vmin is not None and finite.min() < options.vmin),
        ("vmax", options.vmax, finite.size and options.vmax is not None and finite.max() > options.vmax)) if out]
    if clipped:
        return _Scale(colors.Normalize(lo, hi), np.linspace(lo, hi, n), f"clipped at {', '.join(clipped)}")
    automatic = options.vmin is None and options.vmax is None and options.metric == "loss"
    span = log_span(finite)
    if automatic and span > LOG_SPAN:
        return _Scale(colors.LogNorm(lo, hi), np.geomspace(lo, hi, n),
                      f"log scale, automatic: the loss spans {span:.2g}×")
    step = (hi - lo) / (n - 1)
    basin = float(np.mean(finite < lo + step)) if finite.size else 0.0
    if automatic and kind == "contour" and basin > max(0.2, 3 / (n - 1)):
        # A flat basin with steep walls: most of the plane lies below the first linear level. Levels log-spaced
        # in the height above the minimum resolve it; a boundary norm gives each line its own colour.
        rise = finite - lo
        first = max(float(np.percentile(rise[rise > 0], 5)) if (rise > 0).any() else step, (hi - lo) * 1e-6)
        levels = np.unique(np.concatenate([[lo], lo + np.geomspace(min(first, (hi - lo) / n), hi - lo, n - 1)]))
        return _Scale(colors.BoundaryNorm(levels, 256), levels, "levels log-spaced above the minimum")
    return _Scale(colors.Normalize(lo, hi), np.linspace(lo, hi, n), "")


def _label(data: SurfaceData, options: PlotOptions) -> str:
    split = data.attrs.get("split", "train")
    return f"{split} {'loss' if options.metric == 'loss' else 'accuracy'}"


def _axis_label(data: SurfaceData, axis: int) -> str:
    """``α (random direction x)``, ``β (PC2, 12.0 % of the path's variance)``…: the coefficient and the direction
    it scales."""
    kind = data.attrs.get("direction")
    xy = "xy"[axis]
    if kind == "pca":
        what = f"PC{axis + 1}"
        ratio = data.attrs.get("pca_explained_variance_ratio")
        try:
            ratio = json.loads(ratio) if isinstance(ratio, str) else ratio
            what += f", {100 * float(np.asarray(ratio, dtype=float).reshape(-1)[axis]):.1f} % of the path's variance"
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


def _window(data: SurfaceData) -> tuple[float, float, float, float] | None:
    """The training path ± a margin, when it covers under a quarter of the grid's area (else None: the grid)."""
    if data.trajectory is None or data.y is None or not len(data.trajectory):
        return None
    path = np.asarray(data.trajectory, dtype=float)[:, :2]
    (x_lo, y_lo), (x_hi, y_hi) = path.min(axis=0), path.max(axis=0)
    grid = (data.x[-1] - data.x[0], data.y[-1] - data.y[0])
    pad = max(0.25 * max(x_hi - x_lo, y_hi - y_lo), 0.05 * max(grid))
    # At least 4 grid steps across each axis: a coarser window would show the interpolation, not the surface.
    x_pad = max(pad, (4 * grid[0] / max(len(data.x) - 1, 1) - (x_hi - x_lo)) / 2)
    y_pad = max(pad, (4 * grid[1] / max(len(data.y) - 1, 1) - (y_hi - y_lo)) / 2)
    x0, x1 = max(data.x[0], x_lo - x_pad), min(data.x[-1], x_hi + x_pad)
    y0, y1 = max(data.y[0], y_lo - y_pad), min(data.y[-1], y_hi + y_pad)
    if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) >= 0.25 * grid[0] * grid[1]:
        return None
    return x0, x1, y0, y1


def _visible(data: SurfaceData, v: np.ma.MaskedArray) -> np.ma.MaskedArray:
    """``v`` with the points outside the zoom window masked: the colour scale is the scale of what is seen."""
    window = _window(data)
    if window is None or data.y is None:
        return v
    x0, x1, y0, y1 = window
    X, Y = np.meshgrid(data.x, data.y, indexing="ij")
    inside = (X >= x0) & (X <= x1) & (Y >= y0) & (Y <= y1)
    return np.ma.masked_array(v, mask=np.ma.getmaskarray(v) | ~inside)


def _draw2d(ax: plt.Axes, data: SurfaceData, v: np.ma.MaskedArray, kind: str, scale: _Scale,
            options: PlotOptions) -> Any:
    assert data.y is not None
    norm = scale.norm
    X, Y = np.meshgrid(data.x, data.y, indexing="ij")  # [i, j] is the point (x_i, y_j)
    lo, hi = float(scale.levels[0]), float(scale.levels[-1])
    clipped = np.ma.masked_array(np.clip(v.filled(np.nan), lo, hi), mask=v.mask)
    mappable: Any = None
    if v.count() == 0:
        text = getattr(ax, "text2D", ax.text)  # 3D axes place screen text with text2D
        text(0.5, 0.5, "no finished points", ha="center", va="center", transform=ax.transAxes)
    elif kind == "heatmap":
        mappable = ax.pcolormesh(data.x, data.y, v.T, norm=norm, shading="nearest", cmap=CMAP)
    elif kind == "surface3d":
        z = clipped.filled(np.nan)
        ax3d: Any = ax  # an Axes3D (draw checks the projection)
        mappable = ax3d.plot_surface(X, Y, z, cmap=CMAP, norm=norm, linewidth=0, antialiased=True)
        ax3d.set_zlim(lo, hi)
        if isinstance(norm, colors.LogNorm):  # mplot3d has no log z axis: the colours carry the log scale
            ax3d.zaxis.set_major_formatter("{x:.3g}")
        ax3d.set_zlabel(_label(data, options) + (" (linear z axis)" if isinstance(norm, colors.LogNorm) else ""),
                        labelpad=6)
        ax3d.set_box_aspect(None, zoom=0.85)  # room for the z label inside the figure
        for axis in (ax3d.xaxis, ax3d.yaxis, ax3d.zaxis):
            axis.set_major_locator(MaxNLocator(nbins=5))  # mplot3d's default ticks collide at this size
    elif v.count() >= 4 and np.ptp(v.compressed()) > 0:
        if kind == "contourf":
            mappable = ax.contourf(X, Y, clipped, levels=scale.levels, norm=norm, cmap=CMAP, extend="neither")
        else:
            mappable = ax.contour(X, Y, v, levels=scale.levels, norm=norm, cmap=CMAP, linewidths=0.9)
            ax.clabel(mappable, inline=True, fontsize=6, fmt="%.3g")
    else:
        ax.text(0.5, 0.5, "too few distinct values to contour", ha="center", va="center",
                transform=ax.transAxes)
    if data.trajectory is not None:
        path = data.trajectory
        # On a 3D surface the path is drawn on the floor of the box (the surface may hide part of it: mplot3d has
        # no depth test between artists).
        floor: dict[str, Any] = {"zs": lo, "zdir": "z"} if kind == "surface3d" else {}
        ax.plot(path[:, 0], path[:, 1], "-o", color=ACCENT, markersize=2.5, linewidth=1, label="trajectory",
                **floor)
        ax.plot(path[:1, 0], path[:1, 1], "s", color=ACCENT, markersize=5, label="first checkpoint", **floor)
        ax.legend(loc="upper right", fontsize=7)
    ax.set_xlabel(_axis_label(data, 0))
    ax.set_ylabel(_axis_label(data, 1))
    if kind != "surface3d":
        ax.grid(False)  # grid lines would read as contours
        window = _window(data)
        if window is not None:
            ax.set_xlim(window[0], window[1])
            ax.set_ylim(window[2], window[3])
            note(ax, f"zoomed to the path; the grid spans α {data.x[0]:g}..{data.x[-1]:g}, "
                     f"β {data.y[0]:g}..{data.y[-1]:g}", where="lower left")
        elif data.x[0] < data.x[-1] and data.y[0] < data.y[-1]:
            ax.set_xlim(data.x[0], data.x[-1])
            ax.set_ylim(data.y[0], data.y[-1])
        tidy_ticks(ax)
    return mappable


def _new_axes(fig: plt.Figure, ncols: int, kind: str) -> list[plt.Axes]:
    proj = "3d" if kind == "surface3d" else None
    return [fig.add_subplot(1, ncols, i + 1, projection=proj) for i in range(ncols)]


def _title(data: SurfaceData) -> str:
    a = data.attrs
    return f"{a.get('model', '?')} · {a.get('direction', '?')} directions · {a.get('dataset', '?')}"


def _colour_label(data: SurfaceData, options: PlotOptions, scale: _Scale) -> str:
    return _label(data, options) + (f" ({scale.says})" if scale.says else "")


def _line(ax: plt.Axes, data: SurfaceData, options: PlotOptions, *, label: str | None, color: Any = None,
          with_acc: bool = True) -> None:
    v = _values(data, options)
    line = ax.plot(data.x, v.filled(np.nan), "-", marker="." if len(data.x) <= 60 else None, label=label,
                   color=color or colour(0))[0]
    if options.metric == "loss":
        se = np.where(v.mask, np.nan, data.stderr)
        if np.isfinite(se).any() and np.nanmax(se) > 0:
            ax.fill_between(data.x, v.filled(np.nan) - se, v.filled(np.nan) + se, color=line.get_color(), alpha=0.25,
                            linewidth=0)
    if data.trajectory is not None:
        # The 1D PCA path is a set of coordinates on the x axis: a rug along the bottom, the first checkpoint square.
        path = data.trajectory[:, 0]
        rug = ax.get_xaxis_transform()
        ax.plot(path, np.full(len(path), 0.03), "|", color="0.15", markersize=10, transform=rug,
                label="trajectory" if label is None else None)
        ax.plot(path[:1], [0.03], "s", color="0.15", markersize=4, transform=rug)
        if label is None:
            ax.legend(loc="upper center", fontsize=7)
    ax.set_xlabel(_axis_label(data, 0))
    acc = np.where(data.done & np.isfinite(data.acc), data.acc, np.nan)
    if with_acc and options.metric == "loss" and np.isfinite(acc).any():
        ax2 = ax.twinx()
        ax2.plot(data.x, acc, "--", color=colour(1), label="accuracy")
        ax2.set_ylabel(f"{data.attrs.get('split', 'train')} accuracy (dashed)", color=colour(1))
        ax2.set_ylim(0, 1.02)
        ax2.spines["right"].set_visible(True)
        ax2.grid(False)


def _dress_line(ax: plt.Axes, datas: Sequence[SurfaceData], options: PlotOptions) -> None:
    """The y scale and limits of 1D curves, saying in the figure what was chosen or clipped."""
    values = [_values(d, options) for d in datas]
    scale = _scale(values, options)
    log = isinstance(scale.norm, colors.LogNorm)
    if log:
        ax.set_yscale("log")
    ax.set_ylim(options.vmin, options.vmax)
    ax.set_ylabel(_label(datas[0], options) + (f" ({scale.says})" if log else ""))
    if scale.says and not log:
        note(ax, scale.says, where="upper left")
    tidy_ticks(ax)


@styled
def draw(source: str | os.PathLike[str] | SurfaceData, *, ax: plt.Axes | None = None,
         options: PlotOptions = _DEFAULT) -> plt.Axes:
    """Draw one surface (a file, or a surface in memory) onto ``ax`` (a new figure when None) and return the axes;
    2D kinds add a colour bar to ``ax.figure``, and ``surface3d`` needs an ``Axes3D`` (``projection="3d"``)."""
    data = source if isinstance(source, SurfaceData) else read(source)
    kind = _kind(data, options.kind)
    if ax is None:
        fig = plt.figure(figsize=(6.4, 4.8), layout="constrained")
        (ax,) = _new_axes(fig, 1, "line" if kind == "line" else kind)
    elif (kind == "surface3d") != (getattr(ax, "name", "") == "3d"):
        raise LandscapeError(f"kind '{kind}' needs {'a 3D' if kind == 'surface3d' else 'a 2D'} axes; pass "
                             "ax=None for a new figure")
    if kind == "line":
        _line(ax, data, options, label=None)
        _dress_line(ax, [data], options)
    else:
        v = _values(data, options)
        scale = _scale([_visible(data, v)], options, kind)
        mappable = _draw2d(ax, data, v, kind, scale, options)
        if mappable is not None:
            ax.figure.colorbar(plt.cm.ScalarMappable(norm=scale.norm, cmap=CMAP), ax=ax,
                               label=_colour_label(data, options, scale), shrink=0.8)
    ax.set_title(options.title or _title(data), fontsize=10)
    return ax


@styled
def draw_compare(paths: Sequence[str | os.PathLike[str]], *, labels: Sequence[str] | None = None,
                 options: PlotOptions = _DEFAULT) -> plt.Figure:
    """A new figure: 1D curves overlaid, or 2D surfaces side by side on one shared colour scale."""
    datas = [read(p) for p in paths]
    if len({d.ndim for d in datas}) > 1:
        raise LandscapeError("compare needs surfaces of one dimension; got both 1D and 2D files")
    names = list(labels) if labels else [f"{d.attrs.get('model', '?')} ({os.path.basename(d.path)})" for d in datas]
    kind = _kind(datas[0], options.kind, compare=True)
    if kind == "line":
        fig = plt.figure(figsize=(6.4, 4.8), layout="constrained")
        ax = fig.add_subplot(1, 1, 1)
        for k, (d, name) in enumerate(zip(datas, names)):
            _line(ax, d, options, label=name, with_acc=False, color=colour(k))
        _dress_line(ax, datas, options)
        ax.legend(fontsize=8)
        ax.set_title(options.title or "loss along one direction", fontsize=10)
        return fig
    values = [_values(d, options) for d in datas]
    scale = _scale([_visible(d, v) for d, v in zip(datas, values)], options, kind)
    fig = plt.figure(figsize=(4.6 * len(datas) + 1.2, 4.4), layout="constrained")
    axes = _new_axes(fig, len(datas), kind)
    mappable = None
    for ax, d, v, name in zip(axes, datas, values, names):
        m = _draw2d(ax, d, v, kind, scale, options)
        mappable = mappable or m
        ax.set_title(name, fontsize=10)
    if mappable is not None:
        fig.colorbar(plt.cm.ScalarMappable(norm=scale.norm, cmap=CMAP), ax=axes,
                     label=_colour_label(datas[0], options, scale) + ", shared", shrink=0.8)
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
