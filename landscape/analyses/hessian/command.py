"""``landscape hessian``: top eigenvalues, trace, spectral density and per-layer curvature of the loss Hessian."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from typing import Literal

import click

from landscape.core.options import (
    checkpoint_dataset,
    claim_output,
    data_options,
    device_option,
    model_option,
    output_name,
    overwrite_option,
    parse_key_values,
    seed_option,
)


@click.command(name="hessian")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--top-k", "top_k", type=click.IntRange(min=0), default=1, show_default=True,
              help="Number of extreme eigenvalues (0: none).")
@click.option("--which", type=click.Choice(["LA", "SA", "LM"]), default="LA", show_default=True,
              help="LA largest, SA smallest (negative curvature), LM largest magnitude.")
@click.option("--tol", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
              help="Stop when every ‖Hv − λv‖ ≤ tol·|λ| (eigenvalue error is about tol² relative).")
@click.option("--max-iter", type=click.IntRange(min=1), default=None, help="Cap on HVPs for the eigenvalues.")
@click.option("--trace", is_flag=True, help="Estimate tr(H).")
@click.option("--trace-method", type=click.Choice(["hutch++", "hutchinson"]), default="hutch++",
              show_default=True, help="Hutch++ (lower variance) or plain Hutchinson; Rademacher probes.")
@click.option("--probes", type=click.IntRange(min=4), default=100, show_default=True,
              help="HVPs spent on each trace estimate (whole model, or each layer).")
@click.option("--density", is_flag=True, help="Spectral density by stochastic Lanczos quadrature.")
@click.option("--lanczos-steps", type=click.IntRange(min=2), default=100, show_default=True,
              help="Lanczos steps (HVPs) per start vector for --density.")
@click.option("--density-vectors", type=click.IntRange(min=1), default=1, show_default=True,
              help="Random start vectors averaged by --density.")
@click.option("--reorthogonalize/--no-reorthogonalize", "reorthogonalize", default=True, show_default=True,
              help="--density: keep the Lanczos basis (4 bytes × --lanczos-steps per parameter) for full "
                   "re-orthogonalisation, or only three vectors (ghost copies of outliers share their weight).")
@click.option("--per-layer", is_flag=True, help="Top eigenvalue and trace of each layer's own Hessian block.")
@click.option("--layer-depth", type=click.IntRange(min=1), default=None,
              help="With --per-layer: group parameters by the first N parts of their names (e.g. 2 = blocks).")
@click.option("--per-block", is_flag=True,
              help="Block heterogeneity: each block's SLQ density, top eigenvalue and trace, and the Jensen-Shannon "
                   "distances between the block densities.")
@click.option("--block-by", type=click.Choice(["parameter", "module"]), default="parameter", show_default=True,
              help="With --per-block: one block per parameter tensor, or per module owning parameters.")
@click.option("--blocks", multiple=True, metavar="PATTERN",
              help="With --per-block: a block of the parameters matching the glob PATTERN (repeatable, e.g. "
                   "--blocks '*.attention.*' --blocks 'stages.0.*'); the rest form one block 'other'.")
@click.option("--params", default=None, metavar="PATTERN",
              help="Restrict H to parameters matching glob patterns (comma-separated), e.g. 'layer3.*,fc'.")
@data_options
@seed_option
@click.option("--mode", type=click.Choice(["eval", "train"]), default="eval", show_default=True,
              help="Model mode for the loss (train: BN batch statistics; fixed dropout masks).")
@click.option("--save-eigenvectors", "eigenvectors", is_flag=True,
              help="Store the eigenvectors (for surface --dir eigen).")
@click.option("--hvp", type=click.Choice(["reverse", "forward"]), default="reverse", show_default=True,
              help="Hessian-vector product: double backprop (graph cached for one batch) or forward-over-reverse.")
@click.option("--backend", type=click.Choice(["landscape", "pyhessian"]), default="landscape", show_default=True,
              help="pyhessian: cross-check through PyHessian 0.1 (top eigenvalues and trace only).")
@device_option
@model_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output HDF5 (default: next to CHECKPOINT, e.g. final.hessian.h5).")
@overwrite_option()
@click.option("--quiet", is_flag=True, help="No progress bars.")
def hessian(checkpoint: str, top_k: int, which: Literal["LA", "SA", "LM"], tol: float, max_iter: int | None,
            trace: bool, trace_method: Literal["hutch++", "hutchinson"], probes: int, density: bool,
            lanczos_steps: int, density_vectors: int, reorthogonalize: bool,
            per_layer: bool, layer_depth: int | None, per_block: bool, block_by: Literal["parameter", "module"],
            blocks: tuple[str, ...], params: str | None, dataset: str | None,
            data_dir: str | None, split: str, n_samples: int | None, batch_size: int, seed: int, mode: Literal["eval", "train"],
            eigenvectors: bool, hvp: Literal["reverse", "forward"], backend: str, device: str,
            model_name: str | None,
            model_options: tuple[str, ...], out: str | None, overwrite: bool, quiet: bool) -> None:
    """Curvature of the loss at CHECKPOINT: Hessian eigenvalues, trace, spectral density, per-layer blocks.

    Under torchrun (``torchrun --nproc_per_node N -m landscape hessian …``) each process takes a contiguous share of
    the batches and the products are summed over all of them: the same numbers as one process; rank 0 writes."""
    import time

    # The engine's module: ``trace`` and ``density`` are this command's flags here.
    from landscape.analyses.hessian import distributed
    from landscape.analyses.hessian.operator import select_parameters
    from landscape.analyses.hessian.schema import write_hessian
    from landscape.core.checkpoint import load_checkpoint
    from landscape.core.data import load_dataset
    from landscape.core.device import resolve_device
    from landscape.errors import LandscapeError

    # Parameters are named as the library's arguments (landscape.hessian), so its messages map onto these flags.
    out = out or output_name(checkpoint, "hessian")
    if not (top_k or trace or density or per_layer or per_block):
        raise LandscapeError("nothing to measure: use --top-k K (K ≥ 1), --trace, --density, --per-layer or "
                             "--per-block")
    if not math.isfinite(tol):
        raise LandscapeError(f"--tol {tol} must be a finite positive number, e.g. 1e-3")
    if backend == "pyhessian" and (density or per_layer or per_block or params or mode == "train" or which != "LA"
                                   or eigenvectors):
        raise LandscapeError("--backend pyhessian supports only --top-k (which LA) and --trace in eval mode, "
                             "without --save-eigenvectors")
    # Options that would be recorded or accepted without effect are refused, so a file never claims what it lacks.
    if layer_depth is not None and not per_layer:
        raise LandscapeError("--layer-depth applies to --per-layer only")
    if (blocks or block_by != "parameter") and not per_block:
        raise LandscapeError("--blocks and --block-by apply to --per-block only")
    if eigenvectors and not top_k:
        raise LandscapeError("--save-eigenvectors needs --top-k K with K ≥ 1")
    if (not reorthogonalize or hvp != "reverse") and backend == "pyhessian":
        raise LandscapeError("--no-reorthogonalize and --hvp apply to --backend landscape only")
    if not reorthogonalize and not density:
        raise LandscapeError("--no-reorthogonalize applies to --density only")
    dev = resolve_device(device)
    rank, world_size = distributed.init_from_env(dev)
    if world_size > 1:
        click.get_current_context().call_on_close(distributed.finish)
    # Setup errors may be one process's own (a file missing on one node): every process stops, rank 0 says why.
    with _agreed(rank, world_size):
        if world_size > 1 and backend == "pyhessian":
            raise LandscapeError("--backend pyhessian runs in one process; run it without torchrun")
        if rank == 0:  # the one writer: the other processes never touch the output
            claim_output(out, checkpoint, force=overwrite)
        model, meta = load_checkpoint(checkpoint, model=model_name, model_options=parse_key_values(model_options),
                                      map_location=dev)
        model.to(dev)
        # Requests beyond what the operator's size allows are refused before any HVP: they would only cost time.
        size = sum(p.numel() for _, p in select_parameters(model, params))
        if top_k > size:
            raise LandscapeError(f"--top-k {top_k} exceeds the {size:,} parameters of H; use --top-k ≤ {size}")
        if trace and probes > size:
            raise LandscapeError(f"--probes {probes} is more HVPs than the exact trace takes ({size:,}, one per "
                                 f"parameter of H); use --probes ≤ {size}")
        if density and lanczos_steps > size:
            raise LandscapeError(f"--lanczos-steps {lanczos_steps} exceeds the {size:,} parameters of H (Lanczos "
                                 f"ends after that many); use --lanczos-steps ≤ {size}")
        name = checkpoint_dataset(checkpoint, meta, dataset)
        inputs, targets = load_dataset(name, split=split, n=n_samples, seed=seed,
                                       data_dir=data_dir or meta.get("data_dir"))
    batches = [(inputs[i:i + batch_size], targets[i:i + batch_size]) for i in range(0, len(inputs), batch_size)]
    batches = distributed.shard_batches(batches, rank=rank, world_size=world_size)
    progress = not quiet and rank == 0
    with _one_voice(rank):
        t0 = time.perf_counter()
        stored: dict = {}
        n_hvp = 0
        if backend == "pyhessian":
            from landscape.analyses.hessian.pyhessian import pyhessian_measure

            res = pyhessian_measure(model, batches, k=max(top_k, 1), tol=tol, max_iter=max_iter or 100,
                                    trace_probes=probes if trace else None, seed=seed)
            n_hvp = res["n_hvp"]
            if top_k:
                stored["eigenvalues"] = res["eigenvalues"][:top_k]
            if trace:
                stored["trace"], stored["trace_stderr"] = res["trace"], res["trace_stderr"]
        else:
            from landscape.analyses.hessian.result import measure

            stored, n_hvp, unconverged = measure(
                model, batches, top_k=top_k, which=which, tol=tol, max_iter=max_iter, trace=trace,
                trace_method=trace_method, probes=probes, density=density, lanczos_steps=lanczos_steps,
                density_vectors=density_vectors, per_layer=per_layer, layer_depth=layer_depth, per_block=per_block,
                block_by=block_by, blocks=blocks, params=params, mode=mode, seed=seed, eigenvectors=eigenvectors,
                hvp=hvp, reorthogonalize=reorthogonalize, progress=progress)
            if unconverged and rank == 0:
                click.echo(f"warning: {unconverged} of {top_k} eigenpairs did not reach tol={tol} within the HVP "
                           "cap; see the residuals", err=True)
        # PyHessian's trace is always Hutchinson's, whatever --trace-method says.
        used_trace_method = "hutchinson" if backend == "pyhessian" else trace_method
        from landscape.core.provenance import provenance

        record = provenance(model, checkpoint_meta=meta, dataset=name, data_dir=data_dir or meta.get("data_dir"),
                            split=split, n_samples=len(inputs), subset=n_samples is not None, seed=seed)
        attrs = {**record.attrs(), "checkpoint": os.path.abspath(checkpoint), "checkpoint_sha256": meta.get("sha256"),
                 "model": meta.get("model"), "dataset": name, "split": split, "n_samples": len(inputs),
                 "batch_size": batch_size, "seed": seed, "mode": mode, "backend": backend, "which": which,
                 "k": top_k, "tol": tol, "probes": probes if trace or per_layer else None,
                 "trace_method": used_trace_method if trace else None,
                 "lanczos_steps": lanczos_steps if density else None,
                 "density_vectors": density_vectors if density else None, "params": params, "n_hvp": n_hvp,
                 "seconds": time.perf_counter() - t0}
        if backend == "landscape":
            attrs["hvp"] = hvp
            if density:
                attrs["density_reorthogonalize"] = reorthogonalize
        if rank != 0:
            return
        write_hessian(out, attrs=attrs, **stored)
        if "eigenvalues" in stored:
            click.echo("eigenvalues: " + " ".join(f"{v:.6g}" for v in stored["eigenvalues"]))
        if "trace" in stored:
            click.echo(f"trace: {stored['trace']:.6g} ± {stored['trace_stderr']:.2g}")
        if "per_block" in stored:
            click.echo(f"blocks: {len(stored['per_block']['blocks'])}, mean Jensen-Shannon distance between their "
                       f"densities {stored['per_block']['js_mean']:.4f}")
        click.echo(out)


@contextlib.contextmanager
def _agreed(rank: int, world_size: int) -> Iterator[None]:
    """Under torchrun, every process learns whether any met a LandscapeError in the block (a collective at its end):
    rank 0 raises the first one (one line, naming the rank it came from), the others exit quietly."""
    from landscape.analyses.hessian.distributed import agree
    from landscape.errors import LandscapeError

    if world_size <= 1:
        yield
        return
    error: LandscapeError | None = None
    try:
        yield
    except LandscapeError as exc:
        error = exc
    first = agree(None if error is None else str(error))
    if first is None:
        return
    if rank != 0:
        raise click.exceptions.Exit(1)
    if error is not None and str(error) == first:
        raise error
    raise LandscapeError(first)


@contextlib.contextmanager
def _one_voice(rank: int) -> Iterator[None]:
    """Under torchrun an error met while measuring is every process's (it follows from the summed products): rank 0
    says it, the others exit quietly."""
    from landscape.errors import LandscapeError

    try:
        yield
    except LandscapeError:
        if rank == 0:
            raise
        raise click.exceptions.Exit(1) from None
