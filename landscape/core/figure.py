"""What every analysis's figures share: the presentation options, one palette and style, output naming and
format, atomic saving.

Each analysis's ``plot.py`` offers ``plot(path, *, out, options)`` and ``compare(paths, *, labels, out, options)``;
plots read the store and never recompute results. Which one draws a file is the registry's business
(``landscape.analyses.analysis_for_file``). Every figure uses :data:`PALETTE` (Okabe-Ito, colour-blind safe) for
its series and draws inside :func:`style`; an automatic choice (log scale, clipping, zoom) is written in the figure.
"""

from __future__ import annotations

import functools
import math
import operator
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, SupportsIndex, TypeVar

from landscape.core.fs import atomic_path, output_lock
from landscape.errors import LandscapeError

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision deficiencies and
# in greyscale order. Series k takes PALETTE[k % 8]; the yellow comes last (weak on white).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
ACCENT = PALETTE[1]  # what a figure marks on top of its data (a training path, an accuracy axis)
CMAP = "viridis"  # the sequential colour map of every 2D figure (perceptually uniform, colour-blind safe)
LOG_SPAN = 100.0  # a positive quantity spanning more than this factor is drawn on a log scale (and says so)
STYLE: dict[str, Any] = {
    "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
    "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
    "axes.spines.right": False, "image.cmap": CMAP, "legend.framealpha": 0.8, "savefig.facecolor": "white",
}

_F = TypeVar("_F", bound=Callable[..., Any])


def colour(k: SupportsIndex) -> str:
    """The colour of series ``k`` (the k-th model, file or module of a figure; a numpy integer too)."""
    return PALETTE[operator.index(k) % len(PALETTE)]


@contextmanager
def style() -> Iterator[None]:
    """The house style (fonts, grid, spines, :data:`PALETTE` as the colour cycle) for what is drawn inside."""
    import matplotlib
    from cycler import cycler

    rc: Any = {**STYLE, "axes.prop_cycle": cycler(color=PALETTE)}  # Any: the stubs list every key as a Literal
    with matplotlib.rc_context(rc):
        yield


def styled(draw: _F) -> _F:
    """Run ``draw`` (a ``plot``, ``compare`` or ``draw`` function) inside :func:`style`."""
    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with style():
            return draw(*args, **kwargs)

    return wrapper  # type: ignore[return-value]  # same signature, by functools.wraps


def note(ax: Any, text: str, *, where: str = "upper left") -> Any:
    """A small grey note inside ``ax`` saying what the figure chose (scale, clipping, zoom); returns the Text."""
    x, ha = (0.01, "left") if where.endswith("left") else (0.99, "right")
    y, va = (0.99, "top") if where.startswith("upper") else (0.01, "bottom")
    put = getattr(ax, "text2D", ax.text)  # 3D axes place screen text with text2D
    return put(x, y, text, transform=ax.transAxes, va=va, ha=ha, fontsize=7, color="0.3", zorder=5,
               bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1})


def tidy_ticks(ax: Any, *, nbins: int = 6) -> None:
    """At most ``nbins`` numeric ticks on each linear axis, so their labels never collide; categorical axes (fixed
    ticks) keep theirs."""
    from matplotlib.ticker import FixedLocator, MaxNLocator

    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale == "linear" and not isinstance(axis.get_major_locator(), FixedLocator):
            axis.set_major_locator(MaxNLocator(nbins=nbins))


def log_span(values: Any) -> float:
    """max/min of the finite values; nan when there are none or some are not positive (no log scale then)."""
    import numpy as np

    v: Any = np.ma.masked_invalid(np.ma.asarray(values, dtype=float)).compressed()
    lo = float(v.min()) if v.size else math.nan
    return float(v.max()) / lo if lo > 0 else math.nan


@dataclass(frozen=True)
class PlotOptions:
    """Presentation options shared by the ``plot`` and ``compare`` commands; each kind uses those that apply."""

    kind: str = "auto"
    metric: str = "loss"
    log: bool = False
    vmin: float | None = None
    vmax: float | None = None
    levels: int = 20
    title: str | None = None
    dpi: int = 150

    def __post_init__(self) -> None:
        for name in ("vmin", "vmax"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise LandscapeError(f"{name}={value} is not a finite number")
        if self.vmin is not None and self.vmax is not None and not self.vmin < self.vmax:
            raise LandscapeError(f"vmin={self.vmin:g} must be below vmax={self.vmax:g}")
        if self.levels < 2:
            raise LandscapeError(f"levels={self.levels} is too few; contours need at least 2")
        if self.dpi < 1:
            raise LandscapeError(f"dpi={self.dpi} must be at least 1")


def default_output(path: str | os.PathLike[str], suffix: str = ".png") -> str:
    """``run/foo.h5`` -> ``run/foo.png``."""
    root, _ = os.path.splitext(os.fspath(path))
    return root + suffix


def figure_format(out: str | os.PathLike[str]) -> str:
    """The matplotlib format named by ``out``'s extension; a one-line error when there is none."""
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = Path(out).suffix.lower().lstrip(".")
    if fmt not in FigureCanvasBase.get_supported_filetypes():
        what = f"'.{fmt}' is not a figure format" if fmt else "it has no extension"
        raise LandscapeError(f"cannot write {out}: {what}; use .png, .pdf or .svg")
    return fmt


def save_figure(fig: Any, out: str | os.PathLike[str], *, dpi: int, **savefig_kwargs: Any) -> Path:
    """Write ``fig`` to ``out`` atomically (format from the extension) and close it; one-line errors."""
    import matplotlib.pyplot as plt

    out = Path(out)
    try:
        fmt = figure_format(out)
        # One writer per output; the temporary file goes whatever savefig raises (a full disk, a file-size limit).
        with style(), output_lock(out), atomic_path(out) as tmp:
            try:
                fig.savefig(tmp, dpi=dpi, format=fmt, **savefig_kwargs)
            except OSError as exc:
                raise LandscapeError(f"cannot write {out}: {exc.strerror or exc}; free space or choose another "
                                     "out=") from None
            except ValueError as exc:  # matplotlib's mathtext refuses a label with unbalanced $ or bad TeX
                reason = " ".join(str(exc).split())[:200]
                raise LandscapeError(f"cannot draw {out}: {reason}; check title= and the labels stored in "
                                     "the file") from None
    finally:
        plt.close(fig)
    return out
