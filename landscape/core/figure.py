"""What every analysis's figures share: the presentation options, output naming and format, atomic saving.

Each analysis's ``plot.py`` offers ``plot(path, *, out, options)`` and ``compare(paths, *, labels, out, options)``;
plots read the store and never recompute results. Which one draws a file is the registry's business
(``landscape.analyses.analysis_for_file``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landscape.core.fs import atomic_path, output_lock
from landscape.errors import LandscapeError


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
        with output_lock(out), atomic_path(out) as tmp:
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
