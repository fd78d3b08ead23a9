"""``InputSpace``: an input-space result in memory (paths around or between real samples, or noise robustness)
with ``.save(path)`` and ``.plot(ax)``; ``compute``, which needs no file; and ``run``, the engine behind
``landscape.inputspace(model, data, …)``."""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from landscape.errors import LandscapeError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from landscape.analyses.inputspace.compute import CurveStats
    from landscape.api import Data

Mode = Literal["around", "between", "noise"]
Grid = str | Sequence[float] | np.ndarray

_DEFAULT_RADIUS = "0:10:21"
_DEFAULT_SIGMA = "0:1:11"
_GRID = {"around": "radius", "between": "alpha", "noise": "sigma"}


@dataclass(frozen=True)
class InputSpace:
    """One input-space result; the arrays are read-only and those of another mode are ``None``.

    S samples, K directions, P pairs, D draws, N grid points (the layout of ``landscape.inputspace/1``):

    - around: ``radius`` (N,), ``loss``/``prob``/``pred`` (S, K, N), ``target``, ``grad_norm``, ``jacobian_norm``
      (S,) and the curve statistics (S, K);
    - between: ``alpha`` (N,), ``pair_index``/``pair_target`` (P, 2), ``same_class``, ``distance`` (P,),
      ``loss``/``loss_i``/``loss_j``/``prob_i``/``prob_j``/``pred`` (P, N), ``jacobian_norm`` (P, 2), the curve
      statistics and ``chord_deviation`` (P,);
    - noise: ``sigma`` (N,), ``loss``/``acc`` (D, N).

    ``attrs`` holds the settings, ``n_forward``, ``seconds`` and the provenance record; ``path`` is the file it was
    read from or written to, ``""`` in memory.
    """

    mode: Mode
    attrs: dict[str, Any]
    loss: np.ndarray
    radius: np.ndarray | None = None
    alpha: np.ndarray | None = None
    sigma: np.ndarray | None = None
    prob: np.ndarray | None = None
    pred: np.ndarray | None = None
    target: np.ndarray | None = None
    grad_norm: np.ndarray | None = None
    jacobian_norm: np.ndarray | None = None
    pair_index: np.ndarray | None = None
    pair_target: np.ndarray | None = None
    same_class: np.ndarray | None = None
    distance: np.ndarray | None = None
    loss_i: np.ndarray | None = None
    loss_j: np.ndarray | None = None
    prob_i: np.ndarray | None = None
    prob_j: np.ndarray | None = None
    acc: np.ndarray | None = None
    total_variation: np.ndarray | None = None
    max_second_diff: np.ndarray | None = None
    lipschitz: np.ndarray | None = None
    flips: np.ndarray | None = None
    chord_deviation: np.ndarray | None = None
    path: str = ""

    @property
    def grid(self) -> np.ndarray:
        """The grid of the curves: ``radius``, ``alpha`` or ``sigma`` by mode."""
        value = getattr(self, _GRID[self.mode])
        assert value is not None  # every mode stores its grid
        return value

    @property
    def stats(self) -> CurveStats | None:
        """The curves' smoothness statistics (``None`` for noise, which has none)."""
        from landscape.analyses.inputspace.compute import CurveStats

        if self.mode == "noise":
            return None
        return CurveStats(total_variation=self.total_variation, max_second_diff=self.max_second_diff,  # type: ignore[arg-type]
                          lipschitz=self.lipschitz, flips=self.flips)  # type: ignore[arg-type]

    def arrays(self) -> dict[str, np.ndarray]:
        """The stored datasets of this mode by name (what ``read_inputspace`` returns beside the attributes)."""
        from landscape.analyses.inputspace.schema import REQUIRED

        return {k: getattr(self, k) for k in REQUIRED[self.mode]}

    @classmethod
    def from_arrays(cls, mode: str, arrays: dict[str, Any], attrs: dict[str, Any], path: str = "") -> InputSpace:
        """Build from the stored layout (read-only copies of the arrays)."""
        from landscape.analyses.inputspace.schema import REQUIRED

        if mode not in REQUIRED:
            raise LandscapeError(f"mode={mode!r}; use one of {', '.join(REQUIRED)}")
        known = {f.name for f in fields(cls)}
        values = {k: _readonly(arrays[k]) for k in REQUIRED[mode] if k in known}
        return cls(mode=mode, attrs=dict(attrs), path=path, **values)  # type: ignore[arg-type]

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> InputSpace:
        """Read an input-space file (schema ``landscape.inputspace/1``)."""
        from landscape.analyses.inputspace.schema import read_inputspace

        attrs, arrays = read_inputspace(path)
        return cls.from_arrays(attrs["mode"], arrays, attrs, path=os.fspath(path))

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> InputSpace:
        """Write to ``path`` (layout ``landscape.inputspace/1``, atomically); returns the result read back."""
        from landscape.analyses.inputspace.schema import write_inputspace
        from landscape.core.fs import output_lock

        with output_lock(path):
            if os.path.exists(path) and not overwrite:
                raise LandscapeError(f"{os.fspath(path)} exists; pass overwrite=True to replace it or choose "
                                     "another path")
            attrs = {k: v for k, v in self.attrs.items() if k not in ("schema", "library_version")}
            write_inputspace(path, mode=self.mode, arrays=self.arrays(), attrs=attrs)
        return InputSpace.from_file(path)

    def plot(self, ax: Any = None, **options: Any) -> Any:
        """Median curve and inter-quartile band over the curves, on ``ax`` (a new figure when None); returns it.

        ``metric="loss"`` (default) draws the loss panel of ``landscape plot``, ``metric="prob"`` the other one
        (true-class probability; accuracy for noise). Other options: ``log``, ``vmin``, ``vmax``, ``title``.
        """
        from landscape.analyses.inputspace.plot import draw
        from landscape.core.figure import PlotOptions

        return draw(self, ax=ax, options=PlotOptions(**options))


def load(path: str | os.PathLike[str]) -> InputSpace:
    """An input-space file as an :class:`InputSpace` (``landscape.load`` dispatches here)."""
    return InputSpace.from_file(path)


def _readonly(value: Any) -> np.ndarray:
    a = np.array(value)  # a copy: freezing it never touches the caller's array
    a.flags.writeable = False
    return a


def _grid(value: Grid, name: str, *, minimum: int) -> np.ndarray:
    """A grid given as ``MIN:MAX:NUM`` or as a sequence of values: at least ``minimum`` finite values."""
    from landscape.core.grid import parse_axis

    if isinstance(value, str):
        arr = np.asarray(parse_axis(value, name=name).coords, dtype=np.float64)
    else:
        try:
            arr = np.asarray(value, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise LandscapeError(f"{name}={value!r} is neither MIN:MAX:NUM nor a sequence of numbers") from None
    if arr.size < minimum or not np.all(np.isfinite(arr)):
        shown = arr.tolist() if arr.size <= 8 else f"{arr.size} values"
        raise LandscapeError(f"{name}={shown} needs at least {minimum} finite value{'s' if minimum > 1 else ''}; "
                             f"e.g. {_DEFAULT_RADIUS if name == 'radius' else _DEFAULT_SIGMA}")
    return arr


def compute(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, mode: Mode = "around",
            directions: Literal["random", "gradient"] | None = None, n_directions: int | None = None,
            radius: Grid | None = None, steps: int | None = None, sigma: Grid | None = None,
            pairs: int | None = None, draws: int | None = None, batch_size: int = 256, seed: int = 0,
            dataset: str | None = None, split: str | None = None, data_dir: str | None = None,
            subset: bool | None = None, checkpoint_meta: dict[str, Any] | None = None,
            progress: bool | None = False) -> InputSpace:
    """The input-space landscape of ``model`` (a classifier returning logits) at ``(inputs, targets)``.

    ``mode="around"``: loss, true-class probability and prediction along ``x + r·d`` for every sample, at every
    radius of ``radius`` (default ``0:10:21``), along ``directions`` (``random``: ``n_directions`` unit directions
    per sample, seeded; ``gradient``: the input gradient of the sample's loss). ``"between"``: along
    ``(1 − α)·x_i + α·x_j`` for ``pairs`` seeded pairs (half same-class), ``steps`` points. ``"noise"``: mean loss
    and accuracy under ``x + σ·ε`` for every σ of ``sigma`` (default ``0:1:11``), over ``draws`` seeded draws.
    Options of another mode are refused. Runs in eval mode; the model is left as found. ``dataset``, ``split``,
    ``data_dir``, ``subset`` and ``checkpoint_meta`` (from ``load_checkpoint``) only go into the provenance.
    """
    from landscape.analyses.inputspace import compute as C
    from landscape.core.grid import MAX_NUM
    from landscape.core.provenance import provenance

    given = {"directions": directions, "n_directions": n_directions, "radius": radius, "steps": steps,
             "pairs": pairs, "sigma": sigma, "draws": draws}
    only = {"directions": "around", "n_directions": "around", "radius": "around", "steps": "between",
            "pairs": "between", "sigma": "noise", "draws": "noise"}
    if mode not in _GRID:
        raise LandscapeError(f"mode={mode!r}; use around, between or noise")
    for name, value in given.items():
        if value is not None and only[name] != mode:
            raise LandscapeError(f"{name}= applies to mode='{only[name]}' only, not mode='{mode}'")
    t0 = time.perf_counter()
    result: C.AroundResult | C.BetweenResult | C.NoiseResult
    if mode == "around":
        directions = directions or "random"
        if directions == "gradient" and n_directions not in (None, 1):
            raise LandscapeError("directions='gradient' has one direction per sample; drop n_directions=")
        radii = _grid(_DEFAULT_RADIUS if radius is None else radius, "radius", minimum=2)
        result = C.paths_around(model, inputs, targets, radii=radii, directions=directions,
                                n_directions=n_directions or 1, seed=seed, batch_size=batch_size, progress=progress)
        loss, axis_name, axis = np.asarray(result.loss), "r", radii
    elif mode == "between":
        steps = 21 if steps is None else steps
        if steps < 2:
            raise LandscapeError(f"steps={steps} must be at least 2 (the segment's two ends)")
        if steps > MAX_NUM:
            raise LandscapeError(f"steps={steps:,} is too many points for one segment; at most {MAX_NUM:,}")
        alphas = np.linspace(0.0, 1.0, steps)
        result = C.paths_between(model, inputs, targets, alphas=alphas, pairs=100 if pairs is None else pairs,
                                 seed=seed, batch_size=batch_size, progress=progress)
        loss, axis_name, axis = np.asarray(result.loss), "α", alphas
    else:
        sigmas = _grid(_DEFAULT_SIGMA if sigma is None else sigma, "sigma", minimum=1)
        if np.any(sigmas < 0):
            raise LandscapeError(f"sigma={sigmas.tolist() if sigmas.size <= 8 else '…'} must be ≥ 0 (noise "
                                 "standard deviations); e.g. 0:1:11")
        result = C.noise_robustness(model, inputs, targets, sigmas=sigmas, draws=5 if draws is None else draws,
                                    seed=seed, batch_size=batch_size, progress=progress)
        loss, axis_name, axis = np.asarray(result.loss_mean), "σ", sigmas
    # Losses that overflow far from the data are a finding (kept, with a warning); none finite is a broken model.
    bad = ~np.isfinite(loss)
    if bad.all():
        raise LandscapeError("every loss came out NaN/inf: the model's outputs are not finite on these inputs; "
                             "check the model's weights and the data")
    if bad.any():
        first = float(axis[int(np.argmax(bad.reshape(-1, bad.shape[-1]).any(axis=0)))])
        warnings.warn(f"{int(bad.sum())} of {bad.size} losses are not finite (NaN/inf), the first at "
                      f"{axis_name}={first:g}: the model's outputs overflow there; they are kept as they are",
                      stacklevel=2)
    meta = dict(checkpoint_meta or {})
    record = provenance(model, checkpoint_meta=meta, dataset=dataset, data_dir=data_dir, split=split,
                        n_samples=len(targets), subset=subset, seed=seed)
    attrs: dict[str, Any] = {**record.attrs(), **C.result_attrs(result), "batch_size": batch_size,
                             # pair_index / sample indices refer to the samples given, in their order
                             "n_samples": len(targets), "subset": subset, "label": record.model}
    if meta.get("path"):
        attrs["checkpoint"] = os.path.abspath(meta["path"])
    attrs["seconds"] = time.perf_counter() - t0
    return InputSpace.from_arrays(mode, C.to_arrays(result), attrs)


def run(model: nn.Module, data: Data, *, mode: Mode = "around",
        directions: Literal["random", "gradient"] | None = None, n_directions: int | None = None,
        radius: Grid | None = None, steps: int | None = None, sigma: Grid | None = None,
        n_samples: int | None = None, pairs: int | None = None, draws: int | None = None, split: str = "test",
        batch_size: int = 256, seed: int = 0, out: str | os.PathLike[str] | None = None, overwrite: bool = False,
        device: str | None = None, threads: int | None = None, progress: bool = False) -> InputSpace:
    """The input-space landscape of ``model`` on ``data`` (see :func:`compute` for the modes and their options).

    ``data``: an ``(inputs, targets)`` pair, a ``DataLoader`` or a dataset name (then ``split``, test by default:
    input-space analyses look at the function on unseen inputs). ``n_samples``: a seeded subset of that many
    samples (default all; for between, the pool the pairs come from). Grids (``radius``, ``sigma``) are
    ``MIN:MAX:NUM`` specs or sequences. With ``out`` the result is also written there (``overwrite`` to replace a
    file). The model is never moved (``device`` must be where it is) and is left as found.
    """
    from landscape.api import _device_of, as_tensors
    from landscape.core.fs import output_lock

    if threads is not None:
        from landscape.core.threads import set_threads

        set_threads(threads)
    _device_of(model, device)
    with contextlib.ExitStack() as stack:
        if out is not None:  # one writer per output from this check until the file is written
            stack.enter_context(output_lock(out))
            if os.path.exists(out) and not overwrite:
                raise LandscapeError(f"{os.fspath(out)} exists; pass overwrite=True to replace it or choose "
                                     "another path")
        inputs, targets, name = as_tensors(data, split=split, n_samples=n_samples, seed=seed)
        result = compute(model, inputs, targets, mode=mode, directions=directions, n_directions=n_directions,
                         radius=radius, steps=steps, sigma=sigma, pairs=pairs, draws=draws, batch_size=batch_size,
                         seed=seed, dataset=name, split=split if name is not None else None,
                         subset=n_samples is not None, progress=progress)
        return result if out is None else result.save(out, overwrite=overwrite)
