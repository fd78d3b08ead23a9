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


# Limits of a grid axis. A coefficient beyond 1e30 overflows float32 arithmetic for any normalised direction (the
# largest float32 is 3.4e38), so larger ends are typos; a step below 1e-12 of the largest end is under any model's
# float resolution (and near float64's, where linspace would repeat coordinates); more than 10^7 points on one axis
# is months of work and more memory than a surface can hold.
MAX_COEFFICIENT = 1e30
MIN_RELATIVE_STEP = 1e-12
MAX_NUM = 10**7


def parse_axis(spec: str, *, name: str = "x") -> Axis:
    """Parse ``MIN:MAX:NUM`` (e.g. ``-1:1:51``, ``0:0.5:11``, ``-2:-1:3``, ``0:0:1``).

    Anything else is a one-line :class:`LandscapeError` naming the argument ``name`` (``x='0:1' is not …``; a
    flag such as ``--x`` when a command parses its own option). A parsed axis has finite ends, at most
    :data:`MAX_NUM` points and strictly increasing coordinates.
    """
    text = str(spec).strip()
    parts = text.split(":")
    hint = "write MIN:MAX:NUM, e.g. -1:1:51"
    shown = " ".join(text.split())  # one line, whatever the spec holds
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    what = f"{name} '{shown}'" if name.startswith("-") else f"{name}='{shown}'"
    if len(parts) != 3:
        raise LandscapeError(f"{what} is not MIN:MAX:NUM; {hint}")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise LandscapeError(f"{what}: MIN and MAX must be numbers; {hint}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise LandscapeError(f"{what}: MIN and MAX must be finite; {hint}")
    if max(abs(lo), abs(hi)) > MAX_COEFFICIENT:
        raise LandscapeError(f"{what}: coefficients beyond ±{MAX_COEFFICIENT:g} overflow the weights; "
                             "choose a smaller range")
    count = parts[2].strip()
    if len(count) > 12:  # int() of a long digit string is slow and its value is refused below anyway
        raise LandscapeError(f"{what}: NUM must be at most {MAX_NUM:,} points")
    try:
        num = int(count)
    except ValueError:
        raise LandscapeError(f"{what}: NUM '{' '.join(count.split())[:20]}' must be a whole number of points; {hint}") from None
    if num < 1:
        raise LandscapeError(f"{what}: NUM must be at least 1, got {num}")
    if num > MAX_NUM:
        raise LandscapeError(f"{what}: NUM {num:,} is too many points for one axis; at most {MAX_NUM:,}")
    if lo > hi:
        raise LandscapeError(f"{what}: MIN {lo:g} is above MAX {hi:g}; write {hi:g}:{lo:g}:{num}")
    if num > 1 and lo == hi:
        raise LandscapeError(f"{what}: {num} points between equal ends {lo:g}; use NUM 1 or widen the range")
    if num > 1 and (hi - lo) / (num - 1) < MIN_RELATIVE_STEP * max(1.0, abs(lo), abs(hi)):
        raise LandscapeError(f"{what}: {num} points between {lo:g} and {hi:g} are closer than the weights "
                             "can resolve; use fewer points or widen the range")
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
