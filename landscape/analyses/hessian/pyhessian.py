"""Cross-check backend: the same measurement through PyHessian 0.1 (GPL; optional, only called, never copied)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from landscape.analyses.hessian.operator import Batch, LossFn, _as_batches
from landscape.core.state import ModelState
from landscape.errors import LandscapeError

INSTALL_HINT = "PyHessian is not installed; install it with `pip install landscape-toolkit[pyhessian]`"


def available() -> bool:
    try:
        import pyhessian  # noqa: F401
    except ImportError:
        return False
    return True


def pyhessian_measure(model: nn.Module, data: Batch | Iterable[Batch], *, k: int = 1, tol: float = 1e-3,
                      max_iter: int = 100, trace_probes: int | None = None, loss_fn: LossFn | None = None,
                      seed: int = 0) -> dict[str, Any]:
    """Top-``k`` eigenvalues (power iteration) and, if asked, the Hutchinson trace, as PyHessian computes them.

    PyHessian draws from the global RNG, so it runs under a forked RNG seeded with ``seed``; it forces eval mode,
    and the model's per-module modes, ``requires_grad`` flags and ``.grad`` are restored afterwards.
    """
    try:
        import importlib

        from pyhessian import hessian as PyHessian
        # the module (the package re-exports the class); Any: its functions are patched below
        ph_module: Any = importlib.import_module("pyhessian.hessian")
    except ImportError:
        raise LandscapeError(INSTALL_HINT) from None
    batches = list(_as_batches(data))
    device = next(model.parameters()).device
    grads = [(p, p.grad) for p in model.parameters()]  # PyHessian's backward(create_graph=True) sets .grad
    out: dict[str, Any] = {}
    # PyHessian does not count its HVPs: count calls of its two HVP routines (one per whole-data HVP).
    calls = [0]
    single_hvp, multi_hvp = ph_module.hessian_vector_product, PyHessian.dataloader_hv_product

    def counted(fn):
        def wrapper(*args, **kwargs):
            calls[0] += 1
            return fn(*args, **kwargs)
        return wrapper

    ph_module.hessian_vector_product = counted(single_hvp)
    PyHessian.dataloader_hv_product = counted(multi_hvp)
    try:
        with ModelState(model, values=False), \
                torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), warnings.catch_warnings():
            # PyHessian calls backward(create_graph=True); the .grad it leaves is reset in `finally`.
            warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
            torch.manual_seed(seed)
            t0 = time.perf_counter()
            criterion = loss_fn or nn.functional.cross_entropy
            cuda = device.type == "cuda"
            if len(batches) == 1:
                h = PyHessian(model, criterion, data=batches[0], cuda=cuda)
            else:
                h = PyHessian(model, criterion, dataloader=batches, cuda=cuda)
            values, _ = h.eigenvalues(maxIter=max_iter, tol=tol, top_n=k)
            out["eigenvalues"] = np.asarray(values, dtype=np.float64)
            out["seconds_eigenvalues"] = time.perf_counter() - t0
            if trace_probes:
                t1 = time.perf_counter()
                samples = np.asarray(h.trace(maxIter=trace_probes, tol=tol), dtype=np.float64)
                out["trace"] = float(samples.mean())
                out["trace_stderr"] = float(samples.std(ddof=1) / np.sqrt(len(samples))) if len(samples) > 1 else 0.0
                out["seconds_trace"] = time.perf_counter() - t1
            out["seconds"] = time.perf_counter() - t0
            del h
    finally:
        ph_module.hessian_vector_product, PyHessian.dataloader_hv_product = single_hvp, multi_hvp
        out["n_hvp"] = calls[0]
        for p, g in grads:
            p.grad = g
    return out
