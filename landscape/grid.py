"""Grid axes written ``MIN:MAX:NUM`` and the flat point order of a 1D or 2D grid.

Element ``[i, j]`` of every stored array is the point ``(x_i, y_j)``; the flat index of a point is
``i * ny + j`` (C order), so a list of flat indices can be split across processes with strided slices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from landscape.errors import LandscapeError


@dataclass(frozen=True)
class Axis:
    """``num`` evenly spaced coordinates from ``lo`` to ``hi`` (both included; ``num=1`` gives ``[lo]``)."""

    lo: float
    hi: float
    num: int

    @property
    def coords(self) -> np.ndarray:
        return np.linspace(self.lo, self.hi, self.num, dtype=np.float64)

    @property
    def spec(self) -> str:
        """``MIN:MAX:NUM`` with the shortest exact spelling of each end (it identifies the grid on resume)."""
        return f"{_exact(self.lo)}:{_exact(self.hi)}:{self.num}"


def _exact(v: float) -> str:
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


def parse_axis(spec: str, *, name: str = "--x") -> Axis:
    """Parse ``MIN:MAX:NUM`` (e.g. ``-1:1:51``, ``0:0.5:11``, ``-2:-1:3``, ``0:0:1``)."""
    text = str(spec).strip()
    parts = text.split(":")
    hint = "write MIN:MAX:NUM, e.g. -1:1:51"
    if len(parts) != 3:
        raise LandscapeError(f"{name} '{spec}' is not MIN:MAX:NUM; {hint}")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise LandscapeError(f"{name} '{spec}': MIN and MAX must be numbers; {hint}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise LandscapeError(f"{name} '{spec}': MIN and MAX must be finite; {hint}")
    try:
        num = int(parts[2])
    except ValueError:
        raise LandscapeError(f"{name} '{spec}': NUM '{parts[2]}' must be a whole number of points; {hint}") from None
    if num < 1:
        raise LandscapeError(f"{name} '{spec}': NUM must be at least 1, got {num}")
    if lo > hi:
        raise LandscapeError(f"{name} '{spec}': MIN {lo:g} is above MAX {hi:g}; write {hi:g}:{lo:g}:{num}")
    if num > 1 and lo == hi:
        raise LandscapeError(f"{name} '{spec}': {num} points between equal ends {lo:g}; use NUM 1 or widen the range")
    return Axis(lo, hi, num)


@dataclass(frozen=True)
class Grid:
    """A 1D (``y is None``) or 2D grid of direction coefficients."""

    x: Axis
    y: Axis | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.x.num,) if self.y is None else (self.x.num, self.y.num)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def unravel(self, index: int) -> tuple[int, ...]:
        """Flat index -> array index (``(i,)`` or ``(i, j)``)."""
        return tuple(int(v) for v in np.unravel_index(index, self.shape))

    def coefficients(self, index: int) -> tuple[float, ...]:
        """Flat index -> ``(α,)`` or ``(α, β)``."""
        ij = self.unravel(index)
        if self.y is None:
            return (float(self.x.coords[ij[0]]),)
        return float(self.x.coords[ij[0]]), float(self.y.coords[ij[1]])


def shard(indices: list[int], *, rank: int, world_size: int) -> list[int]:
    """The strided slice of ``indices`` that process ``rank`` of ``world_size`` computes (balanced: far and near
    points interleave)."""
    if not 0 <= rank < world_size:
        raise LandscapeError(f"rank {rank} is outside 0..{world_size - 1}")
    return list(indices[rank::world_size])
