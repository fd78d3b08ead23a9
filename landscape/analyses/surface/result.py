"""``Surface``: a loss surface in memory — arrays shaped by the grid, the directions, settings and provenance."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from landscape.analyses.surface.schema import SurfaceData


@dataclass(frozen=True)
class Surface(SurfaceData):
    """A surface: ``loss``, ``acc``, ``stderr``, ``n_evaluated`` and ``done`` shaped ``(nx,)`` or ``(nx, ny)`` with
    ``[i, j]`` the point ``(x[i], y[j])``; ``directions`` maps ``"x"``/``"y"`` to ``{tensor name: array}``;
    ``attrs`` holds the settings and the provenance (weights SHA-256, model, data, seed, device, threads, …).

    ``path`` is the file it was read from or written to, ``""`` for a surface that lives only in memory.
    """

    directions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def split(self) -> str:
        return str(self.attrs.get("split", "train"))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Surface:
        """Read a surface file (any progress) with its directions."""
        from landscape.analyses.surface import schema

        data = schema.read(path)
        base = {f.name: getattr(data, f.name) for f in fields(SurfaceData)}
        return cls(**base, directions=schema.read_directions(path))

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Surface:
        """Write this surface to ``path`` (layout ``landscape.surface/1``); returns it as read back from there."""
        from landscape.analyses.surface import schema
        from landscape.core.fs import output_lock
        from landscape.errors import LandscapeError

        with output_lock(path):
            if os.path.exists(path) and not overwrite:
                raise LandscapeError(f"{path} exists; pass overwrite=True to replace it or choose another path")
            schema.create(path, attrs={k: v for k, v in self.attrs.items() if k not in ("complete", "schema")},
                          x=self.x, y=self.y, split=self.split, directions=self.directions,
                          trajectory=self.trajectory)
            seconds = self.seconds if self.seconds is not None else np.zeros(self.loss.shape)
            with schema.Writer(path, split=self.split) as writer:
                for index in zip(*np.nonzero(self.done)):
                    writer.write(tuple(int(i) for i in index), loss=float(self.loss[index]),
                                 acc=float(self.acc[index]), stderr=float(self.stderr[index]),
                                 n=int(self.n_evaluated[index]), seconds=float(seconds[index]))
        return Surface.from_file(path)

    def plot(self, ax: Any = None, **options: Any) -> Any:
        """Draw on a matplotlib ``Axes`` (a new figure when ``ax`` is None; a 3D Axes for ``kind="surface3d"``).

        ``options`` are those of ``landscape plot``: ``kind``, ``metric``, ``log``, ``vmin``, ``vmax``, ``levels``,
        ``title``. Returns the Axes.
        """
        from landscape.analyses.surface.plot import draw
        from landscape.core.figure import PlotOptions

        return draw(self, ax=ax, options=PlotOptions(**options))

    def flatness(self) -> dict[str, Any]:
        """Loss rise around the centre and the curvature of a local quadratic fit (see ``landscape info``)."""
        from landscape.analyses.surface.compute import flatness

        return flatness(self.x, self.y, np.where(self.done, self.loss, np.nan))


def load(path: str | os.PathLike[str]) -> Surface:
    """A surface file as a :class:`Surface` (``landscape.load`` dispatches here for ``landscape.surface`` files)."""
    return Surface.from_file(path)
