"""Directions in weight space for loss surfaces: random, target, PCA of a trajectory, Hessian eigenvectors.

Normalisation (Li et al. 2018) rescales a direction ``d`` against the weights ``θ`` tensor by tensor:
``filter`` makes every slice along dim 0 as long as the weights' slice, ``layer`` the whole tensor, ``weight`` takes
``d ⊙ θ``, ``none`` leaves ``d``. Tensors with ``dim ≤ 1`` (biases, BN γ/β, running statistics) are special: with
``ignore="biasbn"`` their direction is zero; with ``ignore="none"`` it equals the weight itself, as in the reference
tool, so both tools draw the same surface.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from landscape.core import params
from landscape.core.params import Direction
from landscape.errors import LandscapeError

Norm = Literal["filter", "layer", "weight", "none"]
Ignore = Literal["biasbn", "none"]
Kind = Literal["random", "target", "pca", "eigen"]
NORMS = ("filter", "layer", "weight", "none")
IGNORES = ("biasbn", "none")
_TINY = 1e-10  # keeps an all-zero slice of d from dividing by zero (the reference's choice)
_BLOCK_SHIFT = 22  # the trajectory PCA reads 2^22 float64 values (32 MiB) at a time


@dataclass(frozen=True)
class DirectionSet:
    """The directions of a surface, plus what produced them.

    ``path`` is the trajectory projected on the (x, y) plane, shape (T, 2) in the grid's coefficients, for PCA.
    """

    x: Direction
    y: Direction | None
    kind: str
    path: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


def normalize(direction: Direction, weights: Direction, *, norm: Norm = "filter", ignore: Ignore = "biasbn") -> Direction:
    """A new direction normalised against ``weights`` (see the module docstring)."""
    if norm not in NORMS:
        raise LandscapeError(f"norm '{norm}' is unknown; use one of {', '.join(NORMS)}")
    if ignore not in IGNORES:
        raise LandscapeError(f"ignore '{ignore}' is unknown; use biasbn or none")
    out: Direction = {}
    for k, d in direction.items():
        w = weights[k]
        if d.dim() <= 1:
            out[k] = torch.zeros_like(d) if ignore == "biasbn" else w.detach().clone().to(d.dtype)
        elif norm == "filter":
            scale = params.filter_norms(w) / (params.filter_norms(d) + _TINY)
            out[k] = d * scale.reshape(-1, *([1] * (d.dim() - 1)))
        elif norm == "layer":
            out[k] = d * (w.norm() / (d.norm() + _TINY))
        elif norm == "weight":
            out[k] = d * w
        else:
            out[k] = d.clone()
    return out


def random_directions(weights: Direction, *, count: int, seed: int) -> list[Direction]:
    """``count`` Gaussian directions, drawn tensor by tensor on a private CPU generator, then moved to the device
    (CPU and GPU runs see the same directions)."""
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    for _ in range(count):
        out.append({k: torch.randn(w.shape, generator=gen, dtype=torch.float64).to(w.device, w.dtype)
                    for k, w in weights.items()})
    return out


def target_direction(weights: Direction, target: Direction) -> Direction:
    """``θ_target − θ``: coefficient 0 is this model, 1 the target (never normalised, so 1 lands on the target)."""
    return params.sub(target, weights)


def _offset_rows(weights: Direction, trajectory: Sequence[Direction], key: str, start: int, stop: int,
                 zero: bool) -> torch.Tensor:
    """Entries ``[start, stop)`` of tensor ``key`` of every offset ``θ_t − θ``, one float64 row per checkpoint (the
    difference taken in the checkpoint's dtype, as :func:`params.sub` takes it)."""
    w = weights[key].reshape(-1)[start:stop]
    rows = torch.empty(len(trajectory), stop - start, dtype=torch.float64)
    for i, t in enumerate(trajectory):
        rows[i] = 0.0 if zero else (t[key].reshape(-1)[start:stop] - w.to(t[key].device, t[key].dtype)).double().cpu()
    return rows


def _check_same_tensors(weights: Direction, trajectory: Sequence[Direction]) -> None:
    """The keys and shapes of every checkpoint are those of ``weights`` (the messages of :func:`params.sub`)."""
    for t in trajectory:
        missing = [k for k in t if k not in weights] or [k for k in weights if k not in t]
        if missing:
            raise LandscapeError(f"tensor '{missing[0]}' is missing from the other model ({len(missing)} keys "
                                 "differ); are both checkpoints the same architecture?")
        for k, v in t.items():
            if v.shape != weights[k].shape:
                raise LandscapeError(f"tensor '{k}' has shape {tuple(v.shape)} here and {tuple(weights[k].shape)} "
                                     "in the other model; are both checkpoints the same architecture?")


def pca_directions(weights: Direction, trajectory: Sequence[Direction], *, count: int = 2,
                   ignore: Ignore = "biasbn") -> tuple[list[Direction], np.ndarray]:
    """The top ``count`` principal directions of the centred trajectory offsets ``θ_t − θ`` (unit length) and their
    explained-variance ratios, from the T×T Gram matrix in float64.

    Memory: no offset is ever held whole. Two passes over the checkpoints' tensors, a block of entries at a time
    (a (T, block) float64 matrix, 32 MiB): the first centres the block and adds its Gram matrix, the second adds
    the block's share of each direction. Beside the trajectory itself this holds the ``count`` float64 directions
    and one block, where centring every offset held about three more copies of the trajectory.

    With ``ignore="biasbn"`` the entries of tensors with ``dim ≤ 1`` are zeroed in every offset *before* the PCA, as
    loss-landscape's ``setup_PCA_directions`` does, so bias/BN movement neither steers the directions nor counts in
    the explained variance.
    """
    if ignore not in IGNORES:
        raise LandscapeError(f"ignore '{ignore}' is unknown; use biasbn or none")
    if len(trajectory) < count + 1:
        raise LandscapeError(f"PCA with {count} direction(s) needs at least {count + 1} trajectory checkpoints, "
                             f"found {len(trajectory)}; train with save_every=1 or use direction='random'")
    _check_same_tensors(weights, trajectory)
    n = len(trajectory)
    block = max(1, (1 << _BLOCK_SHIFT) // n)  # entries per block: n × block float64 values = 32 MiB

    def blocks() -> Iterator[tuple[str, int, int, torch.Tensor, torch.Tensor]]:
        """(key, start, stop, the offsets' rows, the centred rows) for every block of every tensor."""
        for k, w in weights.items():
            zero = ignore == "biasbn" and w.dim() <= 1
            for start in range(0, max(w.numel(), 1), block):
                stop = min(start + block, w.numel())
                rows = _offset_rows(weights, trajectory, k, start, stop, zero)
                yield k, start, stop, rows, rows - rows.mean(dim=0)

    gram = np.zeros((n, n))
    for *_, centred in blocks():
        gram += (centred @ centred.T).numpy()
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0.0, None), evecs[:, order]
    if evals[count - 1] <= 1e-12 * max(evals[0], 1e-300):
        left_out = " (bias/BN entries left out by ignore='biasbn')" if ignore == "biasbn" else ""
        raise LandscapeError(f"the trajectory spans fewer than {count} directions{left_out}; "
                             "are the checkpoints identical?")
    coeffs = torch.from_numpy(np.ascontiguousarray(evecs[:, :count].T))  # (count, n)
    raw = [{k: torch.zeros(w.numel(), dtype=torch.float64) for k, w in weights.items()} for _ in range(count)]
    sq, first = np.zeros(count), np.zeros(count)  # ‖d‖² and d · (θ_0 − θ), accumulated block by block
    for k, start, stop, rows, centred in blocks():
        part = coeffs @ centred  # (count, block): each direction's share of this block
        for c in range(count):
            raw[c][k][start:stop] = part[c]
        sq += (part * part).sum(dim=1).numpy()
        first += (part @ rows[0]).numpy()
    dirs = []
    for c in range(count):
        scale = 1.0 / float(np.sqrt(sq[c]))
        # Fix the sign: the offset of the first checkpoint (the start of training) gets a negative coefficient.
        if first[c] > 0:
            scale = -scale
        dirs.append({k: (v * scale).reshape(weights[k].shape).to(weights[k].device, weights[k].dtype)
                     for k, v in raw[c].items()})
    return dirs, evals[:count] / evals.sum()


def project(offsets: Iterable[Direction], basis: Sequence[Direction]) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coefficients of each offset in span(basis) (the basis need not be orthogonal, as normalised
    directions are not) and the relative distance of each offset from that span. ``offsets`` is read once, so a
    generator keeps one offset in memory at a time."""
    gram = np.array([[params.dot(a, b) for b in basis] for a in basis])
    coords, resid = [], []
    for o in offsets:
        rhs = np.array([params.dot(b, o) for b in basis])
        c = np.linalg.solve(gram, rhs)
        # The residual directly (not ‖o‖² − fit, which cancels catastrophically when o lies in the plane).
        r = {k: o[k].double() - sum(float(ci) * b[k].double() for ci, b in zip(c, basis)) for k in o}
        on = params.norm(o)
        coords.append(c)
        resid.append(params.norm(r) / on if on > 0 else 0.0)
    return np.array(coords), np.array(resid)


def eigen_directions(path: str | os.PathLike[str], weights: Direction, *, indices: Sequence[int] = (0, 1)
                     ) -> list[Direction]:
    """Hessian eigenvectors stored by ``landscape hessian`` (``eigenvectors/<i>/<key>``); tensors the file does not
    cover (e.g. BN statistics for ``dir_type="states"``) get zeros."""
    try:
        from landscape.analyses.hessian.schema import read_eigenvectors
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("landscape"):
            raise LandscapeError("eigen directions need the Hessian store, which this version lacks") from None
        raise
    vectors = read_eigenvectors(path)
    out = []
    for i in indices:
        if not 0 <= i < len(vectors):
            raise LandscapeError(f"eigenvector {i} asked for, but {path} holds {len(vectors)}; "
                                 f"use indices 0..{len(vectors) - 1}")
        vec = vectors[i]
        foreign = [k for k in vec if k not in weights]
        if foreign:
            raise LandscapeError(f"{path} has eigenvector entry '{foreign[0]}', which this model lacks; "
                                 "was it computed for another checkpoint?")
        out.append({k: (torch.as_tensor(np.asarray(vec[k])).to(w.device, w.dtype).reshape(w.shape)
                        if k in vec else torch.zeros_like(w)) for k, w in weights.items()})
    return out


def build_directions(kind: Kind, weights: Direction, *, ndim: int, seed: int = 0, norm: Norm = "filter",
                     ignore: Ignore = "biasbn", target: Direction | None = None,
                     trajectory: Sequence[Direction] | None = None, eigen_path: str | None = None) -> DirectionSet:
    """The x (and, for ``ndim=2``, y) directions of a surface.

    ``random``: seeded Gaussian, normalised. ``target``: x = θ_target − θ (raw), y random and normalised.
    ``pca``: top principal directions of ``trajectory`` (bias/BN entries left out before the PCA when
    ``ignore="biasbn"``, as in loss-landscape), normalised, with the trajectory projected on the plane.
    ``eigen``: Hessian eigenvectors 0 and 1 from ``eigen_path``; with ``norm="none"`` exactly as stored (unit
    eigenvectors, ``ignore`` not applied), otherwise normalised like the others.
    """
    if ndim not in (1, 2):
        raise LandscapeError(f"ndim must be 1 or 2, got {ndim}")
    info: dict[str, Any] = {}
    path = None
    if kind == "random":
        dirs = [normalize(d, weights, norm=norm, ignore=ignore) for d in random_directions(weights, count=ndim, seed=seed)]
    elif kind == "target":
        if target is None:
            raise LandscapeError("direction='target' needs target= (the weights to move towards)")
        dirs = [target_direction(weights, target)]
        if ndim == 2:
            (ry,) = random_directions(weights, count=1, seed=seed)
            dirs.append(normalize(ry, weights, norm=norm, ignore=ignore))
    elif kind == "pca":
        if trajectory is None:
            raise LandscapeError("direction='pca' needs trajectory= (the weights along training)")
        raw, ratio = pca_directions(weights, trajectory, count=ndim, ignore=ignore)
        dirs = [normalize(d, weights, norm=norm, ignore=ignore) for d in raw]
        coords, resid = project((params.sub(t, weights) for t in trajectory), dirs)
        path = coords if ndim == 2 else np.column_stack([coords[:, 0], np.zeros(len(coords))])
        info = {"pca_explained_variance_ratio": [float(r) for r in ratio],
                "pca_path_relative_residual_max": float(resid.max())}
    elif kind == "eigen":
        if eigen_path is None:
            raise LandscapeError("direction='eigen' needs eigenvectors= (a Hessian file saved with its "
                                 "eigenvectors)")
        raw = eigen_directions(eigen_path, weights, indices=range(ndim))
        # An eigenvector's bias and BN entries are part of it: zeroing them (ignore=biasbn) would bend it away
        # from the eigen-direction, so unnormalised eigenvectors are used whole.
        dirs = raw if norm == "none" else [normalize(d, weights, norm=norm, ignore=ignore) for d in raw]
    else:
        raise LandscapeError(f"direction kind '{kind}' is unknown; use random, target, pca or eigen")
    return DirectionSet(x=dirs[0], y=dirs[1] if ndim == 2 else None, kind=kind, path=path, info=info)


def load_trajectory(run_dir: str | os.PathLike[str], *, dir_type: params.DirType = "weights",
                    device: torch.device | str = "cpu", like: dict[str, Any] | None = None,
                    model: str | None = None, model_options: dict[str, Any] | None = None) -> list[Direction]:
    """The weights of every checkpoint of a training run folder, in training order.

    ``like`` (a checkpoint's metadata) requires every checkpoint to hold the same architecture and options.
    ``model``/``model_options`` are the caller's own, passed to :func:`~landscape.core.checkpoint.load_checkpoint`: a
    checkpoint that records a ``pkg.module:callable`` loads only when the caller names it (files never name code).
    """
    from landscape.core.checkpoint import architecture_difference, load_checkpoint
    from landscape.training import trajectory

    out = []
    for p in trajectory(run_dir):
        net, meta = load_checkpoint(p, model=model, model_options=model_options, map_location=device)
        if like is not None and (diff := architecture_difference(like, meta)):
            raise LandscapeError(f"{p} is not the same model as the centre checkpoint ({diff}); "
                                 "trajectory= must be the run that trained it")
        out.append(params.get_tensors(net, dir_type=dir_type))
    if not out:
        raise LandscapeError(f"no checkpoints found in {run_dir}; is it a folder written by landscape train?")
    return out
