"""The one-call API for notebooks: ``landscape.surface(model, data, …)`` and friends, and ``landscape.load(path)``.

``data`` is an ``(inputs, targets)`` pair of tensors, a ``DataLoader`` (or any iterable of such pairs), or a dataset
name (``"digits"``, ``"cifar10"`` …). ``loss_fn(outputs, targets)`` returns one loss per sample, shape ``(B,)``.
Results live in memory first; ``.save(path)`` writes them, ``landscape.load(path)`` reads any result file back.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
from torch import nn

from landscape.errors import LandscapeError

if TYPE_CHECKING:
    from landscape.analyses.hessian.result import Hessian
    from landscape.analyses.surface.result import Surface

Data = tuple[torch.Tensor, torch.Tensor] | Iterable[tuple[torch.Tensor, torch.Tensor]] | str
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def as_tensors(data: Data, *, split: str = "train", n_samples: int | None = None, seed: int = 0,
               data_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor, str | None]:
    """``(inputs, targets, dataset name or None)`` from any accepted form of ``data``."""
    from landscape.core.data import load_dataset

    if isinstance(data, str):
        x, y = load_dataset(data, split=split, n=n_samples, seed=seed, data_dir=data_dir)
        return x, y, data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = cast(tuple[torch.Tensor, torch.Tensor], data)  # checked just above: two tensors
    else:
        try:
            batches = [(b[0], b[1]) for b in data]  # type: ignore[union-attr,index]
        except (TypeError, IndexError, KeyError):
            raise LandscapeError("data must be an (inputs, targets) pair of tensors, a DataLoader of such pairs, "
                                 f"or a dataset name; got {type(data).__name__}") from None
        if not batches or not all(isinstance(t, torch.Tensor) for b in batches for t in b):
            raise LandscapeError("data yielded no (inputs, targets) tensor pairs")
        x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise LandscapeError(f"inputs {tuple(x.shape)} and targets {tuple(y.shape)} must hold the same, non-zero "
                             "number of samples")
    if n_samples is not None:
        if not 1 <= n_samples <= len(y):
            raise LandscapeError(f"n_samples={n_samples} must be between 1 and the {len(y)} samples given")
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(int(seed)))[:n_samples]
        x, y = x[order], y[order]
    return x, y, None


def _device_of(model: nn.Module, device: str | torch.device | None) -> torch.device:
    p = next(iter(model.parameters()), None)
    here = p.device if p is not None else torch.device("cpu")
    if device is not None and torch.device(device) != here:
        raise LandscapeError(f"device={str(device)!r} but the model is on {here}; move it first with "
                             f"model.to({str(device)!r}) (the model is never moved behind your back)")
    return here


def surface(model: nn.Module, data: Data, *, x: str = "-1:1:21", y: str | None = None,
            direction: str = "random", norm: str | None = None, ignore: str = "biasbn", dir_type: str = "weights",
            target: nn.Module | None = None, trajectory: Iterable[nn.Module] | None = None,
            eigenvectors: str | None = None, seed: int = 0, split: str = "train", n_samples: int | None = None,
            batch_size: int | None = 128, bn: str = "eval", recal_data: Data | None = None,
            precision: str = "fp32", channels_last: bool = False, compile: bool = False,
            precision_target: float | None = None, min_samples: int = 4000, loss_fn: LossFn | None = None,
            out: str | os.PathLike[str] | None = None, overwrite: bool = False, device: str | None = None,
            threads: int | None = None, progress: bool = False) -> Surface:
    """Loss and accuracy of ``model`` on ``data`` over a 1D (``x``) or 2D (``x`` and ``y``) grid of directions.

    ``x``/``y`` are ``MIN:MAX:NUM`` specs. ``direction``: ``random`` (seeded, filter-normalised), ``target``
    (towards the weights of ``target``), ``pca`` (of ``trajectory``, a sequence of models along training) or
    ``eigen`` (from a Hessian file written with eigenvectors). Without ``out`` the surface is computed in memory;
    with ``out`` it is written point by point and resumed by a later call with the same model and settings (a file
    made from other weights or settings is refused, never returned stale). ``precision`` (``fp32``, ``tf32``,
    ``bf16``), ``channels_last`` and ``compile`` choose the engine's fast paths (docs/scale.md); ``batch_size=None``
    picks the largest batch that fits on a GPU.
    """
    from landscape.analyses.surface.compute import compute

    if threads is not None:
        from landscape.core.threads import set_threads

        set_threads(threads)
    dev = _device_of(model, device)
    inputs, targets, name = as_tensors(data, split=split, n_samples=n_samples, seed=seed)
    recal = None if recal_data is None else as_tensors(recal_data, seed=seed)[0]
    return compute(
        model, inputs, targets, dataset=name, split=split, xspec=x, yspec=y, direction=direction, norm=norm,
        ignore=ignore, dir_type=dir_type, target=target, trajectory=trajectory, eigenvectors=eigenvectors,
        seed=seed, batch_size=batch_size, bn=bn, recal_inputs=recal, precision_target=precision_target,
        min_samples=min_samples, loss_fn=loss_fn, out=out, overwrite=overwrite, device=dev, progress=progress,
        precision=precision, channels_last=channels_last, compile=compile)


def hessian(model: nn.Module, data: Data, *, top_k: int = 1, which: Literal["LA", "SA", "LM"] = "LA",
            tol: float = 1e-3, max_iter: int | None = None, trace: bool = False,
            trace_method: Literal["hutch++", "hutchinson"] = "hutch++", probes: int = 100, density: bool = False,
            lanczos_steps: int = 100, density_vectors: int = 1, per_layer: bool = False,
            layer_depth: int | None = None, per_block: bool = False,
            block_by: Literal["parameter", "module"] = "parameter", blocks: Sequence[str] | None = None,
            params: str | None = None, mode: Literal["eval", "train"] = "eval",
            hvp: Literal["reverse", "forward"] = "reverse", reorthogonalize: bool = True,
            split: str = "train", n_samples: int | None = None, batch_size: int = 128, seed: int = 0,
            eigenvectors: bool = False, out: str | os.PathLike[str] | None = None, overwrite: bool = False,
            device: str | None = None, threads: int | None = None, progress: bool = False) -> Hessian:
    """The loss Hessian of ``model`` on ``data``: the ``top_k`` extreme eigenvalues (``which``: LA largest, SA
    smallest, LM largest magnitude), and with ``trace``/``density``/``per_layer`` the trace ± stderr, the spectral
    density and per-layer blocks; ``per_block`` adds each block's density, λmax and trace and the Jensen–Shannon
    distances between block spectra (blocks: each parameter tensor, each module with ``block_by="module"``, or
    the name patterns in ``blocks``). Returns a frozen :class:`Hessian` (``.save``, ``.plot``); with ``out`` it is also
    written there (``overwrite`` to replace a file)."""
    from landscape.analyses.hessian.result import compute

    if threads is not None:
        from landscape.core.threads import set_threads

        set_threads(threads)
    _device_of(model, device)
    inputs, targets, name = as_tensors(data, split=split, n_samples=n_samples, seed=seed)
    p = next(iter(model.parameters()), None)
    if p is not None:
        inputs, targets = inputs.to(p.device), targets.to(p.device)
    result = compute(model, inputs, targets, top_k=top_k, which=which, tol=tol, max_iter=max_iter, trace=trace,
                     trace_method=trace_method, probes=probes, density=density, lanczos_steps=lanczos_steps,
                     density_vectors=density_vectors, per_layer=per_layer, layer_depth=layer_depth,
                     per_block=per_block, block_by=block_by, blocks=blocks, params=params, hvp=hvp,
                     reorthogonalize=reorthogonalize,
                     mode=mode, batch_size=batch_size, seed=seed, eigenvectors=eigenvectors, dataset=name,
                     split=split, progress=progress)
    return result if out is None else result.save(out, overwrite=overwrite)


def _one_call(name: str, function: str = "run", module: str = "result", *,
              public: str | None = None) -> Callable[..., Any]:
    """``landscape.<name>(…)``: ``function`` of ``landscape.analyses.<name>.<module>`` (``run`` of its result
    module by default), with that function's docstring and signature."""
    import functools
    import importlib

    path = f"landscape.analyses.{name}.{module}"

    def call(*args: Any, **options: Any) -> Any:
        return getattr(importlib.import_module(path), function)(*args, **options)

    try:
        call = functools.wraps(getattr(importlib.import_module(path), function))(call)
    except (ImportError, AttributeError):
        pass
    call.__name__ = call.__qualname__ = public or (name if function == "run" else function)
    return call


def load(path: str | os.PathLike[str]) -> Any:
    """Read any landscape result file back, as the result type of its analysis (chosen by the file's schema)."""
    from landscape.analyses import analysis_for_file

    analysis = analysis_for_file(path)
    if analysis.load is None:
        raise LandscapeError(f"{path} is a {analysis.name} result; reading it back as an object is not supported "
                             "yet; use landscape info / plot")
    return analysis.load(path)


class _CallableModule(types.ModuleType):
    """A module that is also the one-call function of its analysis: ``landscape.surface(model, data, …)`` works,
    and so does the older ``from landscape.surface import compute_surface``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__dict__["__landscape_call__"](*args, **kwargs)


def make_callable(module: types.ModuleType, fn: Callable[..., Any]) -> types.ModuleType:
    """Make ``module`` callable as ``fn`` (its other attributes unchanged); returns it."""
    import inspect

    module.__landscape_call__ = fn  # type: ignore[attr-defined]
    # inspect.signature and help() show the call, not the module's (*args, **kwargs).
    module.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    if fn.__doc__ and "Called as a function" not in (module.__doc__ or ""):
        module.__doc__ = f"{module.__doc__ or ''}\n\nCalled as a function, ``landscape.{fn.__name__}(…)``:\n\n{fn.__doc__}"
    module.__class__ = _CallableModule
    return module
