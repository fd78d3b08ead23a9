"""``landscape curvature``: λmax (and the trace) of every checkpoint of a training run, warm-started along it."""

from __future__ import annotations

import os

import click

from landscape.core.options import device_option, output_name, overwrite_option, seed_option


@click.command(name="curvature")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=False))
@click.option("--n-samples", type=click.IntRange(min=1), default=256, show_default=True,
              help="Measure on a fixed seeded set of N samples of the run's training set.")
@click.option("--tol", type=click.FloatRange(min=0, min_open=True, max=1, max_open=True), default=1e-3,
              show_default=True, help="Lanczos tolerance ‖Hv − λv‖ ≤ tol·|λ|.")
@click.option("--trace-probes", type=click.IntRange(min=0), default=0, show_default=True,
              help="Hutch++ probes for the trace at each checkpoint (0: no trace).")
@click.option("--warm-start/--cold-start", default=True, show_default=True,
              help="Start each Lanczos run from the previous checkpoint's top eigenvector.")
@click.option("--dataset", default=None, help="Override the dataset the checkpoints record.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with CIFAR data.")
@seed_option
@device_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output HDF5 file (default: RUN/curvature-checkpoints.h5, or CHECKPOINT stem + .curvature.h5).")
@overwrite_option()
@click.option("--quiet", is_flag=True, help="No progress bar.")
def curvature(paths: tuple[str, ...], n_samples: int, tol: float, trace_probes: int, warm_start: bool,
              dataset: str | None, data_dir: str | None, seed: int, device: str, out: str | None, overwrite: bool,
              quiet: bool) -> None:
    """λmax, 2/η (and the trace) of each checkpoint in PATHS: a run folder (its epoch_*.pt in order) or files.

    Writes the schema of `landscape train --track-curvature` (which tracks every K steps during training, and for
    Adam also the preconditioned sharpness; see docs/curvature.md).
    """
    from landscape.analyses.curvature.result import along_checkpoints
    from landscape.core.options import claim_output
    from landscape.errors import LandscapeError
    from landscape.training import trajectory

    if trace_probes and trace_probes < 4:
        raise LandscapeError(f"--trace-probes {trace_probes} is too few for Hutch++; use at least 4 (or 0)")
    files: list[str] = []
    for path in paths:
        files += [os.fspath(p) for p in trajectory(path)] if os.path.isdir(path) else [path]
    if out is None:
        out = (os.path.join(paths[0], "curvature-checkpoints.h5") if os.path.isdir(paths[0])
               else output_name(paths[0], "curvature"))
    for f in files[1:]:
        if os.path.realpath(out) == os.path.realpath(f):
            raise LandscapeError(f"--out {out} is one of the checkpoints; choose another --out")
    claim_output(out, files[0], force=overwrite)
    result = along_checkpoints(files, n_samples=n_samples, tol=tol, trace_probes=trace_probes, warm_start=warm_start,
                               seed=seed, dataset=dataset, data_dir=data_dir, device=device, progress=not quiet)
    result.save(out, overwrite=True)  # claim_output checked --overwrite and holds the lock until the command ends
    lam = result.lambda_max
    click.echo(f"{len(result)} checkpoint(s): λmax {lam[0]:.4g} -> {lam[-1]:.4g}, 2/η {result.two_over_lr[-1]:.4g}, "
               f"{result.n_hvp} HVPs -> {out}")
