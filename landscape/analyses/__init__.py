"""The registry: every analysis, by name. ``plot``, ``compare``, ``info``, ``study`` and the CLI read it and
keep no lists of their own; adding an analysis is one folder and one line here (docs/adding-an-analysis.md)."""

from __future__ import annotations

import os

from landscape.analyses import (
    attention,
    connectivity,
    curvature,
    hessian,
    inputspace,
    predictiveness,
    sharpness,
    surface,
)
from landscape.analyses._base import Analysis
from landscape.errors import LandscapeError

ANALYSES: dict[str, Analysis] = {
    "surface": surface.ANALYSIS,
    "hessian": hessian.ANALYSIS,
    "predictiveness": predictiveness.ANALYSIS,
    "inputspace": inputspace.ANALYSIS,
    "attention": attention.ANALYSIS,
    "connect": connectivity.ANALYSIS,
    "sharpness": sharpness.ANALYSIS,
    "curvature": curvature.ANALYSIS,
}


def analysis_for_schema(schema: str, *, path: str | os.PathLike[str] | None = None) -> Analysis:
    """The analysis whose files carry ``schema`` (any version of its kind)."""
    kind = schema.split("/")[0]
    for analysis in ANALYSES.values():
        if analysis.kind == kind:
            return analysis
    where = f"{os.fspath(path)} holds" if path is not None else "schema"
    known = ", ".join(a.kind for a in ANALYSES.values())
    raise LandscapeError(f"{where} '{schema}', which landscape cannot plot; known: {known}")


def analysis_for_file(path: str | os.PathLike[str]) -> Analysis:
    """The analysis that wrote the result file ``path`` (from its ``schema`` attribute)."""
    from landscape.core.store import read_schema

    return analysis_for_schema(read_schema(path), path=path)


__all__ = ["ANALYSES", "Analysis", "analysis_for_file", "analysis_for_schema"]
