"""Loss surfaces: ``f(α) = L(θ + α·dx)`` and ``f(α, β) = L(θ + α·dx + β·dy)`` over a grid, resumably.

The point loop :func:`compute_points` takes a flat list of point indices, so processes can share a grid by strided
slices (:func:`landscape.core.grid.shard`). Each point writes ``θ + α·dx + β·dy`` from the base weights (no drift),
optionally recalibrates BN statistics, and evaluates in inference mode over data materialised once on the device
in one fixed, seeded order, accumulating in float64 with every batch weighted by its size.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import torch
from torch import nn

from landscape.analyses.surface.directions import DirectionSet
from landscape.analyses.surface.engine import (
    Mover,
    auto_batch_size,
    check_precision,
    forward_of,
    layout_inputs,
    memory_layout,
    precision_scope,
)

if TYPE_CHECKING:
    from landscape.analyses.surface.result import Surface
from landscape.core import params
from landscape.core.budget import human_bytes, require_memory, warn_if_long
from landscape.core.evaluate import cross_entropy
from landscape.core.evaluate import evaluate as core_evaluate
from landscape.core.fs import output_lock
from landscape.core.grid import Grid
from landscape.core.params import Direction
from landscape.core.state import ModelState
from landscape.errors import LandscapeError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # per-sample losses, shape (B,)
BNMode = Literal["eval", "recalibrate"]



@dataclass(frozen=True)
class PointResult:
    """One evaluated point. ``stderr`` = s/√n of the per-sample losses (no finite-population correction)."""

    index: int
    loss: float
    acc: float
    stderr: float
    n: int
    seconds: float


@dataclass(frozen=True)
class SurfaceSettings:
    """What defines a surface; a file is resumed only if these agree (see ``store.surface.IDENTITY_KEYS``)."""

    checkpoint: str
    checkpoint_sha256: str
    model: str
    dataset: str
    split: str
    seed: int
    norm: str
    ignore: str
    dir_type: str
    direction: str
    xspec: str
    yspec: str | None = None
    bn: str = "eval"
    recalibration_samples: int = 0
    batch_size: int | None = 128  # None: chosen for the device (auto_batch_size), recorded as chosen
    precision_target: float | None = None
    min_samples: int = 4000
    loss: str = "cross_entropy"
    target: str | None = None
    target_sha256: str | None = None
    trajectory: str | None = None
    eigenvectors: str | None = None
    precision: str = "fp32"


@dataclass(frozen=True)
class SurfaceResult:
    """Outcome of :func:`compute_surface` (this run's share of the work)."""

    path: str
    shape: tuple[int, ...]
    n_points: int
    n_computed: int
    n_forward: int
    seconds: float
    seed: int


def _bn_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, inputs: torch.Tensor, *, batch_size: int) -> int:
    """Recompute BN running statistics from ``inputs``: a size-weighted average over batches, with only the BN
    layers in train mode (dropout stays off). Returns the number of samples forwarded."""
    bns = _bn_modules(model)
    if not bns:
        return 0
    momenta = [m.momentum for m in bns]
    try:
        for m in bns:
            m.reset_running_stats()
            m.train()
        seen = 0
        for start in range(0, len(inputs), batch_size):
            xb = inputs[start:start + batch_size]
            for m in bns:  # running = running + nb/(seen+nb)·(batch − running): a size-weighted mean
                m.momentum = len(xb) / (seen + len(xb))
            model(xb)
            seen += len(xb)
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
            m.eval()
    return len(inputs)


def evaluate(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, batch_size: int,
             loss_fn: LossFn = cross_entropy, precision_target: float | None = None,
             min_samples: int = 4000) -> tuple[float, float, float, int]:
    """``(loss, acc, stderr, n)``: :func:`landscape.core.evaluate.evaluate` in the old tuple form (kept for its
    callers; the engine calls the core evaluator itself)."""
    r = core_evaluate(model, inputs, targets, batch_size=batch_size, loss_fn=loss_fn,
                      precision_target=precision_target, min_samples=min_samples)
    return r.loss, r.acc, r.stderr, r.n


def compute_points(model: nn.Module, indices: Iterable[int], *, grid: Grid, base: Direction,
                   directions: Sequence[Direction], inputs: torch.Tensor, targets: torch.Tensor, batch_size: int,
                   loss_fn: LossFn = cross_entropy, bn: BNMode = "eval", recal_inputs: torch.Tensor | None = None,
                   precision_target: float | None = None, min_samples: int = 4000, precision: str = "fp32",
                   channels_last: bool = False, compile: bool = False) -> Generator[PointResult, None, None]:
    """Evaluate the grid points ``indices`` (flat, see :class:`Grid`) one by one, in eval mode; the model is restored
    (weights, buffers, per-module train/eval modes, by :class:`~landscape.core.state.ModelState`, and the memory
    layout) when the iterator ends or is closed.

    The weights move in place (``torch._foreach_*``, from the base every time); the data stay on the device; the
    only host synchronisation is the point's result. ``precision``, ``channels_last`` and ``compile`` are the fast
    paths of :mod:`landscape.analyses.surface.engine`.
    """
    if bn == "recalibrate" and recal_inputs is None:
        raise LandscapeError("bn='recalibrate' needs recalibration inputs")
    device = inputs.device
    check_precision(precision, device)
    xs = layout_inputs(inputs, channels_last=channels_last)
    recal = None if recal_inputs is None else layout_inputs(recal_inputs, channels_last=channels_last)
    score = loss_fn if precision != "bf16" else _in_float32(loss_fn)
    with ModelState(model, mode="eval"), memory_layout(model, channels_last=channels_last):
        mover = Mover(params.live_tensors(model, base.keys()), base, directions)
        forward = forward_of(model, compile=compile)
        for index in indices:
            t0 = time.perf_counter()
            mover.move(grid.coefficients(index))
            with precision_scope(precision, device):
                if bn == "recalibrate" and recal is not None:  # always given then (checked above)
                    recalibrate_bn(model, recal, batch_size=batch_size)  # eager: BN in train mode, once
                r = core_evaluate(forward, xs, targets, batch_size=batch_size, loss_fn=score,
                                  precision_target=precision_target, min_samples=min_samples)
            if inputs.is_cuda:
                torch.cuda.synchronize(device)
            yield PointResult(int(index), r.loss, r.acc, r.stderr, r.n, time.perf_counter() - t0)


def _in_float32(loss_fn: LossFn) -> LossFn:
    """The loss on float32 outputs: bf16 logits are scored in float32 (then stored in float64)."""
    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return loss_fn(outputs.float(), targets)
    return loss


def ordered_data(inputs: torch.Tensor, targets: torch.Tensor, *, seed: int, device: torch.device | str
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation data on ``device`` once, in the fixed seeded order every point uses."""
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(int(seed)))
    return inputs[order].to(device).contiguous(), targets[order].to(device).contiguous()


# Bytes of memory per grid point: a file holds five float64/int64 values and a done flag a point (41 bytes); it is
# built in memory when created (twice that while the buffer grows) and read back whole by info, plot and a resume,
# which also lists the points still to do (8 bytes each).
BYTES_PER_POINT = 2 * (5 * 8 + 1) + 8


def _check_options(*, bn: str, dir_type: str, precision_target: float | None) -> None:
    if bn == "recalibrate" and dir_type == "states":
        raise LandscapeError("bn='recalibrate' recomputes the BN statistics that dir_type='states' perturbs; "
                             "choose one of them")
    if precision_target is not None and not precision_target > 0:
        raise LandscapeError(f"precision_target={precision_target} must be positive, e.g. 0.01")


def check_grid_fits(grid: Grid, *, available: int | None = None) -> None:
    """Refuse, up front and with the estimate, a grid whose arrays cannot be held in memory."""
    shape = "×".join(str(n) for n in grid.shape)
    require_memory(float(grid.size) * BYTES_PER_POINT, available=available,
                   what=f"a {shape} grid ({grid.size:,} points, {human_bytes(BYTES_PER_POINT)} each)",
                   fix="use fewer points (NUM in MIN:MAX:NUM)")


def compute_surface(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, out: str | os.PathLike[str],
                    grid: Grid, settings: SurfaceSettings, directions: Callable[[], DirectionSet],
                    loss_fn: LossFn = cross_entropy, recal_inputs: torch.Tensor | None = None,
                    device: torch.device | str | None = None, overwrite: bool = False, progress: bool = True,
                    callback: Callable[[PointResult], None] | None = None,
                    attrs: dict[str, Any] | None = None, channels_last: bool = False, compile: bool = False,
                    chunk: int = 1) -> SurfaceResult:
    """Compute (or resume) the surface stored in ``out``, on the model's device; under torchrun, shared by every
    process (:mod:`landscape.core.distributed`).

    The output lock on ``out`` is held for the whole run (a second run is refused, naming this one). A grid that
    cannot be held is refused before any work; after the first point, a warning gives the time the rest will take
    when that is over a day (the first point's measured time × the points left). A failed write stops the run with
    one line, keeping the finished points.

    ``directions`` is called only when a new file is made; a resumed run uses the directions stored in the file,
    after :func:`landscape.analyses.surface.schema.check_settings` has confirmed the settings agree.
    ``settings.batch_size=None`` chooses the batch for the device (:func:`engine.auto_batch_size`; a resumed file
    keeps its own).

    Several processes (torchrun): rank ``r`` of ``W`` evaluates the points ``todo[r::W]`` (interleaved, so near and
    far points spread evenly); rank 0 alone holds the lock, reads what is done, writes every point and tells the
    others the plan (points to do, directions, batch). After each ``chunk`` points per rank, the finished points go
    to rank 0 and are written, so a crash loses only unfinished ones. Every point sees the same data, order, batch
    and weights on any rank, so on CPU the arrays are bit-identical to a one-process run. An error on one rank
    ends every rank with that rank's message (:class:`landscape.core.distributed.PeerError`). ``callback`` runs on
    rank 0 for every point.
    """
    from tqdm.auto import tqdm

    from landscape.core import distributed

    s = settings
    _check_options(bn=s.bn, dir_type=s.dir_type, precision_target=s.precision_target)
    if (grid.y is None) != (s.yspec is None):
        raise LandscapeError("settings.yspec and the grid disagree on 1D versus 2D")
    if chunk < 1:
        raise LandscapeError(f"chunk={chunk} must be at least 1")
    check_grid_fits(grid)
    t_start = time.perf_counter()
    here = next(model.parameters()).device  # the data go where the model is
    if device is not None and torch.device(device) != here:
        raise LandscapeError(f"device={str(device)!r} but the model is on {here}; move the model first")
    check_precision(s.precision, here)
    w = distributed.init(here)
    # Provenance (``attrs``: weights hash, model options, threads, versions …) first; the settings override it.
    attrs = {**(attrs or {}), **asdict(s), "n_samples": len(inputs), "device": str(here), "processes": w.size,
             "channels_last": channels_last, "compile": compile}
    base = params.get_tensors(model, dir_type=s.dir_type)  # type: ignore[arg-type]
    xs, ys = ordered_data(inputs, targets, seed=s.seed, device=here)
    recal = None if recal_inputs is None else recal_inputs.to(here)
    n_forward = 0
    writer: Any = None  # rank 0's store.Writer
    with contextlib.ExitStack() as stack:
        plan: dict[str, Any] | None = None
        with distributed.agree():  # an error here (lock held, settings differ, …) ends every rank with one line
            batch = s.batch_size
            if batch is None:  # the largest batch every rank can hold (the same on all: results depend on it)
                batch = min(distributed.all_gather(auto_batch_size(model, xs, precision=s.precision,
                                                                   channels_last=channels_last)))
            if w.main:
                plan, writer = _open_output(out, stack, attrs=attrs, settings=s, grid=grid, batch=batch,
                                            auto=s.batch_size is None, overwrite=overwrite, base=base,
                                            directions=directions)
        plan = distributed.broadcast(plan)
        assert plan is not None, "rank 0 made the plan"
        todo: list[int] = plan["todo"]
        dirs = [params.from_numpy(plan["directions"][a], like=base) for a in ("x", "y") if a in plan["directions"]]
        bar = stack.enter_context(tqdm(total=grid.size, initial=grid.size - len(todo), desc="surface", unit="pt",
                                       disable=not (progress and w.main) or None, dynamic_ncols=True))
        points = compute_points(model, todo[w.rank::w.size], grid=grid, base=base, directions=dirs, inputs=xs,
                                targets=ys, batch_size=plan["batch_size"], loss_fn=loss_fn,
                                bn=s.bn,  # type: ignore[arg-type]
                                recal_inputs=recal, precision_target=s.precision_target,
                                min_samples=s.min_samples, precision=s.precision, channels_last=channels_last,
                                compile=compile)
        stack.callback(points.close)
        n_recal = 0 if recal is None else len(recal)

        def record(r: PointResult) -> None:  # rank 0: store one finished point
            nonlocal n_forward
            writer.write(grid.unravel(r.index), loss=r.loss, acc=r.acc, stderr=r.stderr, n=r.n, seconds=r.seconds)
            if n_forward == 0:  # the time estimate: the first point, measured, times the points left per process
                warn_if_long(r.seconds * len(todo) / w.size, what=f"the surface {out} ({len(todo)} points)")
            n_forward += r.n + n_recal
            bar.update(1)
            if callback is not None:
                callback(r)

        if w.size == 1:
            for r in points:
                record(r)
        else:
            share = -(-len(todo) // w.size)
            for _ in range(-(-share // chunk)):  # the same number of rounds on every rank
                _exchange(points, chunk=chunk, record=record, rank=w.rank)
            with distributed.agree():  # rank 0 finishes the file (fsync, `complete`); a failure reaches all
                stack.close()
            n_forward = distributed.broadcast(n_forward)
    return SurfaceResult(os.fspath(out), grid.shape, grid.size, len(todo), n_forward,
                         time.perf_counter() - t_start, s.seed)


def _open_output(out: str | os.PathLike[str], stack: contextlib.ExitStack, *, attrs: dict[str, Any],
                 settings: SurfaceSettings, grid: Grid, batch: int, auto: bool, overwrite: bool, base: Direction,
                 directions: Callable[[], DirectionSet]) -> tuple[dict[str, Any], Any]:
    """Rank 0: take the lock, create or check-and-resume ``out``, open its writer; returns the plan (points to do,
    directions as arrays, batch size) and the writer."""
    from landscape.analyses.surface import schema as store

    # One writer per output: the lock is taken before the existence check and held to the end, so a second run
    # (with or without overwrite) is refused with one line instead of replacing or filling this run's file.
    stack.enter_context(output_lock(out))
    resume = os.path.exists(out) and not overwrite
    if resume:
        if auto:  # a resumed file keeps the batch it was made with (its points depend on it)
            stored_batch = store.read(out).attrs.get("batch_size")
            batch = stored_batch if isinstance(stored_batch, int) else batch
        attrs["batch_size"] = batch
        store.check_settings(out, attrs)
        stored = store.read(out)  # validated: a damaged file is one line
        if stored.loss.shape != grid.shape or not np.array_equal(stored.x, grid.x.coords) or (
                grid.y is not None and (stored.y is None or not np.array_equal(stored.y, grid.y.coords))):
            raise LandscapeError(f"{out} is damaged: its coordinates do not match xspec/yspec; pass "
                                 "overwrite=True to start afresh")
        found = store.read_directions(out)
        missing = [k for a in found for k in base if k not in found[a]]
        if missing:
            raise LandscapeError(f"{out} is damaged: its directions lack '{missing[0]}'; pass overwrite=True")
        arrays: dict[str, dict[str, np.ndarray]] = {a: {k: found[a][k] for k in base} for a in found}
    else:
        attrs["batch_size"] = batch
        ds = directions()
        arrays = {a: params.to_numpy(d) for a, d in zip(("x", "y"), [ds.x] if ds.y is None else [ds.x, ds.y])}
        attrs.update({k: v for k, v in ds.info.items()})
        store.create(out, attrs=attrs, x=grid.x.coords, y=None if grid.y is None else grid.y.coords,
                     split=settings.split, directions=arrays, trajectory=ds.path)
    writer = stack.enter_context(store.Writer(out, split=settings.split))
    # Points flagged done whose values a failed write lost were unmarked by the writer: computed again.
    todo = [int(i) for i in np.flatnonzero(~writer.done.reshape(-1))]
    return {"todo": todo, "directions": arrays, "batch_size": batch}, writer


def _exchange(points: Iterator[PointResult], *, chunk: int, record: Callable[[PointResult], None], rank: int
              ) -> None:
    """One round: every rank evaluates up to ``chunk`` of its points and sends them to rank 0, which writes them;
    then rank 0 tells every rank whether all went well. Any failure ends every rank (:class:`PeerError`)."""
    from landscape.core import distributed

    done: list[PointResult] = []
    error: str | None = None
    own: Exception | None = None
    try:
        done = list(itertools.islice(points, chunk))
    except Exception as exc:  # told to every rank below; Ctrl-C and exits go straight out (torchrun ends the rest)
        error, own = distributed.describe(exc, rank=rank), exc
    reports = distributed.gather((done, error))
    status = None
    if reports is not None:  # rank 0
        status = next((e for _, e in reports if e is not None), None)
        try:
            for results, _ in reports if status is None else ():
                for r in results:
                    record(r)
        except Exception as exc:
            status, own = distributed.describe(exc, rank=0), exc
    status = distributed.broadcast(status)
    if status is not None:
        if own is not None and not isinstance(own, LandscapeError):
            raise own  # this rank's own bug: its traceback stays visible here
        raise distributed.PeerError(status)


def flatness(x: np.ndarray, y: np.ndarray | None, loss: np.ndarray, *, fractions: Sequence[float] = (0.1, 0.25, 0.5, 1.0)
             ) -> dict[str, Any]:
    """Flatness around the centre (coefficients 0): loss rise (mean and max) on circles of radius r, with r a
    fraction of the largest radius inside the grid, and the curvature of a quadratic least-squares fit to the
    points nearest the centre (1D: second derivative; 2D: Hessian eigenvalues in grid coordinates)."""
    from scipy.interpolate import RegularGridInterpolator

    axes = [x] if y is None else [x, y]
    # The centre must be a grid point: an interpolated "centre loss" between two points is not the checkpoint's.
    # np.linspace can give ±1e-16 where 0 is meant: within 1e-9 of the axis span counts as the centre.
    zero = [np.flatnonzero(np.abs(a) <= 1e-9 * max(np.ptp(a), 1e-300)) for a in axes]
    if any(z.size == 0 for z in zero):
        return {"note": "the grid has no point at the centre (coefficient 0); choose MIN:MAX:NUM with 0 on the "
                        "grid (e.g. an odd NUM for a symmetric range) for a flatness summary"}
    vals = np.where(np.isfinite(loss), loss, np.nan)
    interp = (lambda pts: np.interp(pts[:, 0], x, vals)) if y is None else RegularGridInterpolator(
        (x, y), vals, bounds_error=False)
    centre = float(vals[tuple(int(z[0]) for z in zero)])
    rmax = min(min(-a[0], a[-1]) for a in axes)
    out: dict[str, Any] = {"centre_loss": centre, "radii": [], "rise_mean": [], "rise_max": []}
    angles = np.array([0.0, np.pi]) if y is None else np.linspace(0, 2 * np.pi, 64, endpoint=False)
    for frac in fractions if rmax > 0 else ():
        r = frac * rmax
        pts = np.column_stack([r * np.cos(angles)] + ([] if y is None else [r * np.sin(angles)]))
        rise = interp(pts) - centre
        finite = rise[np.isfinite(rise)]  # points next to a diverged one interpolate to NaN: left out
        out["radii"].append(r)
        out["rise_mean"].append(float(finite.mean()) if finite.size else float("nan"))
        out["rise_max"].append(float(finite.max()) if finite.size else float("nan"))
    # Quadratic fit on the k nearest finite points: enough to pin the model, close enough to be local.
    grids = np.meshgrid(*axes, indexing="ij")
    coords = np.column_stack([g.reshape(-1) for g in grids])
    v = vals.reshape(-1)
    ok = np.isfinite(v)
    coords, v = coords[ok], v[ok]
    k = 5 if y is None else 21
    if len(v) < (3 if y is None else 6):
        return out
    near = np.argsort(np.linalg.norm(coords, axis=1), kind="stable")[:k]
    c, f = coords[near], v[near]
    if y is None:
        design = np.column_stack([np.ones(len(c)), c[:, 0], 0.5 * c[:, 0] ** 2])
        sol = np.linalg.lstsq(design, f, rcond=None)[0]
        out["curvature"] = [float(sol[2])]
    else:
        a, b = c[:, 0], c[:, 1]
        design = np.column_stack([np.ones(len(c)), a, b, 0.5 * a * a, a * b, 0.5 * b * b])
        sol = np.linalg.lstsq(design, f, rcond=None)[0]
        hess = np.array([[sol[3], sol[4]], [sol[4], sol[5]]])
        out["curvature"] = [float(e) for e in np.linalg.eigvalsh(hess)]
    out["fit_radius"] = float(np.linalg.norm(c, axis=1).max())
    return out


def _loss_name(loss_fn: LossFn | None) -> str:
    if loss_fn is None or loss_fn is cross_entropy:
        return "cross_entropy"
    return f"{getattr(loss_fn, '__module__', '?')}.{getattr(loss_fn, '__qualname__', type(loss_fn).__name__)}"


def compute(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, xspec: str, yspec: str | None = None,
            direction: str = "random", norm: str | None = None, ignore: str = "biasbn", dir_type: str = "weights",
            target: nn.Module | None = None, trajectory: Iterable[nn.Module] | None = None,
            eigenvectors: str | None = None, seed: int = 0, dataset: str | None = None, split: str = "train",
            batch_size: int | None = 128, bn: str = "eval", recal_inputs: torch.Tensor | None = None,
            precision_target: float | None = None, min_samples: int = 4000, loss_fn: LossFn | None = None,
            out: str | os.PathLike[str] | None = None, overwrite: bool = False,
            device: torch.device | str | None = None, progress: bool = False, precision: str = "fp32",
            channels_last: bool = False, compile: bool = False) -> Surface:
    """A surface of an in-memory ``model`` (see :func:`landscape.surface`): computed in memory, or into ``out``
    point by point and resumably (under torchrun, shared by the processes). The model is identified by the hash of
    its tensors, so a file made from other weights or settings is refused, never returned stale.

    ``precision`` (``fp32``, ``tf32``, ``bf16``), ``channels_last`` and ``compile`` choose the fast paths of
    :mod:`landscape.analyses.surface.engine`; ``batch_size=None`` picks one for the device."""
    from landscape.analyses.surface import schema
    from landscape.analyses.surface.directions import build_directions
    from landscape.analyses.surface.result import Surface
    from landscape.core.grid import parse_axis
    from landscape.core.provenance import provenance, weights_sha256

    grid = Grid(parse_axis(xspec, name="x"), None if yspec is None else parse_axis(yspec, name="y"))
    check_grid_fits(grid)
    needs = {"target": ("target", target), "pca": ("trajectory", trajectory), "eigen": ("eigenvectors", eigenvectors)}
    if direction not in ("random", *needs):
        raise LandscapeError(f"direction={direction!r}; use random, target, pca or eigen")
    for kind, (arg, value) in needs.items():
        if kind == direction and value is None:
            raise LandscapeError(f"direction={kind!r} needs {arg}=")
        if kind != direction and value is not None:
            raise LandscapeError(f"{arg}= applies to direction={kind!r} only (this call has direction={direction!r})")
    here = next(model.parameters()).device
    if device is not None and torch.device(device) != here:
        raise LandscapeError(f"device={str(device)!r} but the model is on {here}; move the model first")
    norm = norm or ("none" if direction == "eigen" else "filter")
    loss = loss_fn or cross_entropy
    trajectory = None if trajectory is None else list(trajectory)
    prov = provenance(model, dataset=dataset, split=split, n_samples=len(inputs), seed=seed)
    s = SurfaceSettings(
        checkpoint="", checkpoint_sha256=prov.weights_sha256, model=str(prov.model), dataset=dataset or "tensors",
        split=split, seed=seed, norm=norm, ignore=ignore, dir_type=dir_type, direction=direction, xspec=grid.x.spec,
        yspec=None if grid.y is None else grid.y.spec, bn=bn,
        recalibration_samples=0 if recal_inputs is None else len(recal_inputs), batch_size=batch_size,
        precision_target=precision_target, min_samples=min_samples, loss=_loss_name(loss_fn), precision=precision,
        target_sha256=None if target is None else weights_sha256(target),
        trajectory=None if trajectory is None else f"{len(trajectory)} models, first "
                                                      f"{weights_sha256(trajectory[0])[:16]}",
        eigenvectors=None if eigenvectors is None else os.path.abspath(eigenvectors))

    def make_directions() -> DirectionSet:
        dt = cast(params.DirType, dir_type)  # a str argument, passed on unchecked as before
        return build_directions(
            direction, params.get_tensors(model, dir_type=dt), ndim=1 if grid.y is None else 2,  # type: ignore[arg-type]
            seed=seed, norm=norm, ignore=ignore,  # type: ignore[arg-type]
            target=None if target is None else params.get_tensors(target, dir_type=dt),
            trajectory=None if trajectory is None else [params.get_tensors(m, dir_type=dt) for m in trajectory],
            eigen_path=eigenvectors)

    if out is not None:
        compute_surface(model, inputs, targets, out=out, grid=grid, settings=s, directions=make_directions,
                        loss_fn=loss, recal_inputs=recal_inputs, overwrite=overwrite, progress=progress,
                        attrs=prov.attrs(), channels_last=channels_last, compile=compile)
        return Surface.from_file(out)
    _check_options(bn=bn, dir_type=dir_type, precision_target=precision_target)
    ds = make_directions()
    dirs = [ds.x] if ds.y is None else [ds.x, ds.y]
    base = params.get_tensors(model, dir_type=dir_type)  # type: ignore[arg-type]
    xs, ys = ordered_data(inputs, targets, seed=seed, device=here)
    recal = None if recal_inputs is None else recal_inputs.to(here)
    if batch_size is None:
        batch_size = auto_batch_size(model, xs, precision=precision, channels_last=channels_last)
        s = replace(s, batch_size=batch_size)
    arrays = {k: np.full(grid.shape, np.nan) for k in ("loss", "acc", "stderr", "seconds")}
    n_eval = np.full(grid.shape, -1, dtype=np.int64)
    points = compute_points(model, range(grid.size), grid=grid, base=base, directions=dirs, inputs=xs,
                            targets=ys, batch_size=batch_size, loss_fn=loss, bn=bn,  # type: ignore[arg-type]
                            recal_inputs=recal, precision_target=precision_target, min_samples=min_samples,
                            precision=precision, channels_last=channels_last, compile=compile)
    from tqdm.auto import tqdm

    with tqdm(total=grid.size, desc="surface", unit="pt", disable=not progress or None) as bar:
        for r in points:
            at = grid.unravel(r.index)
            for key, val in (("loss", r.loss), ("acc", r.acc), ("stderr", r.stderr), ("seconds", r.seconds)):
                arrays[key][at] = val
            n_eval[at] = r.n
            bar.update(1)
    attrs = {**prov.attrs(), **asdict(s), "n_samples": len(inputs), "device": str(here), "processes": 1,
             "channels_last": channels_last, "compile": compile, **ds.info,
             "schema": schema.SCHEMA, "complete": True, "compute_seconds": float(np.nansum(arrays["seconds"]))}
    return Surface(path="", attrs=attrs, x=grid.x.coords, y=None if grid.y is None else grid.y.coords,
                   loss=arrays["loss"], acc=arrays["acc"], stderr=arrays["stderr"], n_evaluated=n_eval,
                   done=np.ones(grid.shape, dtype=bool), trajectory=ds.path, seconds=arrays["seconds"],
                   directions={a: params.to_numpy(d) for a, d in zip("xy", dirs)})
