"""``Hessian``: a Hessian-spectrum result in memory (eigenvalues, trace, density, per-layer blocks) with
``.save(path)`` and ``.plot(ax)``, and ``compute``, the engine behind ``landscape.hessian(model, data, …)``."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from landscape.errors import LandscapeError


@dataclass(frozen=True)
class Hessian:
    """What was measured (``None`` where not asked for) and ``attrs``: the settings, ``n_hvp``, ``seconds`` and the
    provenance record. ``path`` is the file it was read from or written to, ``""`` in memory."""

    attrs: dict[str, Any]
    eigenvalues: np.ndarray | None = None
    residuals: np.ndarray | None = None
    trace: float | None = None
    trace_stderr: float | None = None
    density: dict[str, np.ndarray] | None = None
    per_layer: dict[str, dict[str, Any]] | None = None
    per_block: dict[str, Any] | None = None  # block heterogeneity: densities, λmax, trace, JS distances (blocks.py)
    eigenvectors: tuple[dict[str, np.ndarray], ...] | None = field(default=None, repr=False)
    path: str = ""

    def _stored(self) -> dict[str, Any]:
        """The layout ``read_hessian`` returns (what the figures read)."""
        out: dict[str, Any] = {"attrs": dict(self.attrs)}
        for key in ("eigenvalues", "residuals", "trace", "trace_stderr", "density", "per_layer", "per_block"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Hessian:
        """Read a Hessian file (its eigenvectors too, when stored)."""
        from landscape.analyses.hessian.schema import read_eigenvectors, read_hessian

        r = read_hessian(path)
        vecs = tuple(read_eigenvectors(path)) if r.get("n_eigenvectors") else None
        return cls(attrs=r["attrs"], eigenvalues=r.get("eigenvalues"), residuals=r.get("residuals"),
                   trace=r.get("trace"), trace_stderr=r.get("trace_stderr"), density=r.get("density"),
                   per_layer=r.get("per_layer"), per_block=r.get("per_block"), eigenvectors=vecs,
                   path=os.fspath(path))

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Hessian:
        """Write to ``path`` (layout ``landscape.hessian/1``, atomically); returns the result read back."""
        from landscape.analyses.hessian.schema import write_hessian
        from landscape.core.fs import output_lock

        with output_lock(path):
            if os.path.exists(path) and not overwrite:
                raise LandscapeError(f"{path} exists; pass overwrite=True to replace it or choose another path")
            attrs = {k: v for k, v in self.attrs.items() if k not in ("schema", "library_version")}
            write_hessian(path, attrs=attrs, eigenvalues=self.eigenvalues, residuals=self.residuals,
                          trace=self.trace, trace_stderr=self.trace_stderr, density=self.density,
                          eigenvectors=self.eigenvectors, per_layer=self.per_layer, per_block=self.per_block)
        return Hessian.from_file(path)

    def plot(self, ax: Any = None, **options: Any) -> Any:
        """The spectral density (log scale) with the top eigenvalues marked, on ``ax`` (new figure when None)."""
        from landscape.analyses.hessian.plot import draw
        from landscape.core.figure import PlotOptions

        return draw(self._stored(), ax=ax, options=PlotOptions(**options))


def load(path: str | os.PathLike[str]) -> Hessian:
    """A Hessian file as a :class:`Hessian` (``landscape.load`` dispatches here)."""
    return Hessian.from_file(path)


def compute(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, top_k: int = 1,
            which: Literal["LA", "SA", "LM"] = "LA", tol: float = 1e-3, max_iter: int | None = None,
            trace: bool = False, trace_method: Literal["hutch++", "hutchinson"] = "hutch++", probes: int = 100,
            density: bool = False, lanczos_steps: int = 100, density_vectors: int = 1, per_layer: bool = False,
            layer_depth: int | None = None, params: str | None = None, mode: Literal["eval", "train"] = "eval",
            batch_size: int = 128, seed: int = 0, eigenvectors: bool = False, dataset: str | None = None,
            split: str | None = None, progress: bool = False, per_block: bool = False,
            block_by: Literal["parameter", "module"] = "parameter", blocks: Sequence[str] | None = None,
            hvp: Literal["reverse", "forward"] = "reverse", reorthogonalize: bool = True) -> Hessian:
    """Measure the loss Hessian of ``model`` on ``(inputs, targets)`` (mean cross-entropy over the samples): the
    ``top_k`` extreme eigenvalues (Lanczos), and on request the trace (Hutch++/Hutchinson), the spectral density
    (SLQ) and per-layer blocks. The model is left as found.

    ``per_block=True`` adds block heterogeneity (``blocks.per_block``): blocks are parameter tensors
    (``block_by="parameter"``), modules (``"module"``) or the glob patterns ``blocks`` (the unmatched parameters form
    a block ``"other"``), each with its SLQ density (``lanczos_steps``, ``density_vectors``), top eigenvalue and
    trace (``probes``, ``trace_method``), and the pairwise Jensen–Shannon distances of the densities."""
    from landscape.core.provenance import provenance

    if not (top_k or trace or density or per_layer or per_block):
        raise LandscapeError("nothing to measure: ask for top_k ≥ 1, trace=True, density=True, per_layer=True or "
                             "per_block=True")
    if (blocks or block_by != "parameter") and not per_block:
        raise LandscapeError("blocks= and block_by= apply to per_block=True only")
    if eigenvectors and not top_k:
        raise LandscapeError("eigenvectors=True needs top_k ≥ 1")
    batches = [(inputs[i:i + batch_size], targets[i:i + batch_size]) for i in range(0, len(inputs), batch_size)]
    t0 = time.perf_counter()
    out, n_hvp, _ = measure(model, batches, top_k=top_k, which=which, tol=tol, max_iter=max_iter, trace=trace,
                            trace_method=trace_method, probes=probes, density=density, lanczos_steps=lanczos_steps,
                            density_vectors=density_vectors, per_layer=per_layer, layer_depth=layer_depth,
                            per_block=per_block, block_by=block_by, blocks=blocks, params=params, mode=mode,
                            seed=seed, eigenvectors=eigenvectors, hvp=hvp, reorthogonalize=reorthogonalize,
                            progress=progress)
    record = provenance(model, dataset=dataset, split=split, n_samples=len(inputs), seed=seed)
    attrs = {**record.attrs(), "batch_size": batch_size, "mode": mode, "backend": "landscape", "which": which,
             "k": top_k, "tol": tol, "probes": probes if trace or per_layer else None,
             "trace_method": trace_method if trace else None, "lanczos_steps": lanczos_steps if density else None,
             "density_vectors": density_vectors if density else None, "params": params, "n_hvp": n_hvp,
             "hvp": hvp, "density_reorthogonalize": reorthogonalize if density else None,
             "seconds": time.perf_counter() - t0}
    return Hessian(attrs=attrs, **out)


def measure(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], *, top_k: int,
            which: Literal["LA", "SA", "LM"], tol: float, max_iter: int | None, trace: bool,
            trace_method: Literal["hutch++", "hutchinson"], probes: int, density: bool, lanczos_steps: int,
            density_vectors: int, per_layer: bool, layer_depth: int | None, per_block: bool,
            block_by: Literal["parameter", "module"], blocks: Sequence[str] | None, params: str | None,
            mode: Literal["eval", "train"], seed: int, eigenvectors: bool, hvp: Literal["reverse", "forward"],
            reorthogonalize: bool, progress: bool) -> tuple[dict[str, Any], int, int]:
    """What ``compute`` and ``landscape hessian`` measure, on given batches (under torchrun, this process's shard):
    the stored arrays (the ``Hessian`` fields), the HVP count, and how many eigenpairs missed ``tol``."""
    from landscape.analyses.hessian import compute as H
    from landscape.analyses.hessian.perlayer import per_layer as per_layer_fn

    common: dict[str, Any] = {"train_mode": mode == "train", "seed": seed, "params": params, "hvp": hvp}
    out: dict[str, Any] = {}
    n_hvp = unconverged = 0
    if top_k:
        eig = H.eigenvalues(model, batches, k=top_k, which=which, tol=tol, max_iter=max_iter,
                            return_eigenvectors=eigenvectors, progress=progress, **common)
        out.update(eigenvalues=eig.eigenvalues, residuals=eig.residuals, eigenvectors=eig.eigenvectors)
        n_hvp += eig.n_hvp
        unconverged = int((~eig.converged).sum())
    if trace:
        tr = H.trace(model, batches, n_probes=probes, method=trace_method, progress=progress, **common)
        out.update(trace=tr.estimate, trace_stderr=tr.stderr)
        n_hvp += tr.n_hvp
    if density:
        d = H.density(model, batches, n_steps=lanczos_steps, n_vectors=density_vectors, progress=progress,
                      reorthogonalize=reorthogonalize, **common)
        out["density"] = {"grid": d.grid, "values": d.density, "nodes": d.nodes, "weights": d.weights}
        n_hvp += d.n_hvp
    if per_layer:
        pl = per_layer_fn(model, batches, k=1, tol=tol, n_probes=probes, method=trace_method, depth=layer_depth,
                          params=params, train_mode=mode == "train", seed=seed, progress=progress)
        out["per_layer"] = {lc.name: {"eigenvalues": lc.eigenvalues, "residuals": lc.residuals, "trace": lc.trace,
                                      "trace_stderr": lc.trace_stderr} for lc in pl.layers}
        n_hvp += pl.n_hvp
    if per_block:
        from landscape.analyses.hessian.blocks import per_block as per_block_fn

        pb = per_block_fn(model, batches, block_by=block_by, blocks=blocks, tol=tol, n_probes=probes,
                          method=trace_method, lanczos_steps=lanczos_steps, density_vectors=density_vectors,
                          params=params, train_mode=mode == "train", seed=seed, progress=progress)
        out["per_block"] = pb.stored()
        n_hvp += pb.n_hvp
    return out, n_hvp, unconverged
