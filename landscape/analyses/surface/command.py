"""``landscape surface``: a 1D or 2D loss surface around a checkpoint, resumable, stored as HDF5."""

from __future__ import annotations

import os
from typing import Any

import click

from landscape.core.options import (
    checkpoint_dataset,
    data_options,
    device_option,
    model_option,
    output_name,
    overwrite_option,
    parse_key_values,
    seed_option,
)


def default_output(checkpoint: str, *, two_d: bool, direction: str, split: str) -> str:
    """``runs/a/final.pt`` -> ``runs/a/final.surface-2d-random.h5`` (``-test`` added for the test split)."""
    return output_name(checkpoint, "surface", "2d" if two_d else "1d", direction, "test" if split == "test" else "")


def old_default_output(checkpoint: str, *, two_d: bool, direction: str, split: str) -> str:
    """The default name of earlier versions, before every output was named ``STEM.KIND….h5``:
    ``final_surface_2d_random.h5`` (``_test`` added for the test split)."""
    root, _ = os.path.splitext(checkpoint)
    return f"{root}_surface_{'2d' if two_d else '1d'}_{direction}{'_test' if split == 'test' else ''}.h5"


@click.command(name="surface")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--x", "xspec", default="-1:1:51", show_default=True, metavar="MIN:MAX:NUM",
              help="Coefficients along the x direction.")
@click.option("--y", "yspec", default=None, metavar="MIN:MAX:NUM", help="Coefficients along y (a 2D surface).")
@click.option("--dir", "direction", type=click.Choice(["random", "target", "pca", "eigen"]), default="random",
              show_default=True, help="Where the directions come from.")
@click.option("--target", type=click.Path(dir_okay=False), default=None,
              help="Second checkpoint for --dir target (x = θ_target − θ, not normalised; y random).")
@click.option("--trajectory", type=click.Path(file_okay=False), default=None,
              help="Training run folder for --dir pca (written by landscape train).")
@click.option("--eigen", "--eigenvectors", "eigenvectors", type=click.Path(dir_okay=False), default=None,
              help="Hessian file for --dir eigen (written by landscape hessian; eigenvectors 0 and 1).")
@click.option("--norm", type=click.Choice(["filter", "layer", "weight", "none"]), default=None,
              help="Normalisation of random, PCA and eigen directions [default: filter; none for --dir eigen, "
                   "which keeps the unit eigenvectors as stored].")
@click.option("--ignore", type=click.Choice(["biasbn", "none"]), default="biasbn", show_default=True,
              help="biasbn: zero direction for biases and BN parameters; none: direction = the weight itself.")
@click.option("--dir-type", type=click.Choice(["weights", "states"]), default="weights", show_default=True,
              help="Perturb the parameters only, or the whole state dict (BN running statistics too).")
@data_options
@seed_option
@click.option("--bn", type=click.Choice(["eval", "recalibrate"]), default="eval", show_default=True,
              help="eval: stored BN statistics; recalibrate: recompute them at every point from training batches.")
@click.option("--recal-samples", type=click.IntRange(min=1), default=1280, show_default=True,
              help="Training samples (seeded) used by --bn recalibrate.")
@click.option("--precision-target", type=float, default=None, metavar="EPS",
              help="Stop each point once the standard error of its loss is below EPS (default: full pass).")
@click.option("--min-samples", type=click.IntRange(min=2), default=4000, show_default=True,
              help="Samples every point sees before --precision-target may stop it.")
@click.option("--precision", type=click.Choice(["fp32", "tf32", "bf16"]), default="fp32", show_default=True,
              help="Arithmetic of the forward passes: fp32 (TF32 off), tf32 (CUDA TF32 matmuls and convolutions), "
                   "bf16 (autocast; losses still summed in float64). Recorded in the file.")
@click.option("--channels-last", is_flag=True,
              help="Store images and 4-D weights NHWC (faster convolutions with oneDNN and cuDNN; same results "
                   "to ~1e-6).")
@click.option("--compile", "compile", is_flag=True,
              help="torch.compile the model (pays a one-off compilation; for long grids).")
@device_option
@model_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output HDF5 (default: next to CHECKPOINT, e.g. final.surface-2d-random.h5).")
@overwrite_option(help="Start afresh even if --out holds a surface made otherwise.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def surface(checkpoint: str, xspec: str, yspec: str | None, direction: str, target: str | None,
            trajectory: str | None, eigenvectors: str | None, norm: str | None, ignore: str, dir_type: str,
            dataset: str | None, data_dir: str | None, split: str, n_samples: int | None, batch_size: int,
            seed: int, bn: str, recal_samples: int, precision_target: float | None, min_samples: int,
            precision: str, channels_last: bool, compile: bool, device: str, model_name: str | None,
            model_options: tuple[str, ...], out: str | None, overwrite: bool, quiet: bool) -> None:
    """Loss and accuracy on a grid around CHECKPOINT along two (or one) directions.

    Run the same command again to resume an interrupted surface. Under torchrun (torchrun --nproc_per_node N -m
    landscape surface ...) the processes share the grid and rank 0 writes the file; see docs/scale.md.
    """
    from landscape.core import distributed
    from landscape.core.device import resolve_device

    ctx = click.get_current_context()
    auto_batch = ctx.get_parameter_source("batch_size") is click.core.ParameterSource.DEFAULT
    dev = distributed.device_for(resolve_device(device))
    distributed.init(dev)
    try:
        with distributed.agree():  # an error on one process ends all of them, with one line (from rank 0)
            run = _prepare(checkpoint, xspec, yspec, direction, target, trajectory, eigenvectors, norm, ignore,
                           dir_type, dataset, data_dir, split, n_samples, None if auto_batch else batch_size,
                           seed, bn, recal_samples, precision_target, min_samples, precision, dev, model_name,
                           model_options, out, overwrite)
        from landscape.analyses.surface.compute import compute_surface

        result = compute_surface(**run, overwrite=overwrite, progress=not quiet, channels_last=channels_last,
                                 compile=compile)
    except distributed.PeerError:
        if not distributed.world().main:
            raise click.exceptions.Exit(1) from None  # rank 0 prints the one line
        raise
    finally:
        distributed.finish()
    if distributed.world().main:
        click.echo(f"{result.path}: {result.n_computed} point(s) computed, {result.n_points} in all, "
                   f"{result.seconds:.1f} s ({result.n_forward} samples forwarded)")


def _prepare(checkpoint: str, xspec: str, yspec: str | None, direction: str, target: str | None,
             trajectory: str | None, eigenvectors: str | None, norm: str | None, ignore: str, dir_type: str,
             dataset: str | None, data_dir: str | None, split: str, n_samples: int | None, batch_size: int | None,
             seed: int, bn: str, recal_samples: int, precision_target: float | None, min_samples: int,
             precision: str, dev: Any, model_name: str | None, model_options: tuple[str, ...], out: str | None,
             overwrite: bool) -> dict[str, Any]:
    """Everything the command loads and checks before computing: the arguments of ``compute_surface``."""
    from landscape.analyses.hessian.schema import read_hessian
    from landscape.analyses.surface.compute import SurfaceSettings, check_grid_fits
    from landscape.analyses.surface.directions import build_directions, load_trajectory
    from landscape.core import distributed, params
    from landscape.core.checkpoint import architecture_difference, load_checkpoint
    from landscape.core.data import load_dataset
    from landscape.core.grid import Grid, parse_axis
    from landscape.errors import LandscapeError

    grid = Grid(parse_axis(xspec, name="--x"), None if yspec is None else parse_axis(yspec, name="--y"))
    check_grid_fits(grid)  # before any loading: a grid that cannot be held is refused with the estimate
    if direction == "target" and target is None:
        raise LandscapeError("--dir target needs --target CKPT2")
    if direction == "pca" and trajectory is None:
        raise LandscapeError("--dir pca needs --trajectory RUN_DIR")
    if direction == "eigen" and eigenvectors is None:
        raise LandscapeError("--dir eigen needs --eigen HESS.h5 (written by landscape hessian --save-eigenvectors)")
    # An option for another direction kind would be recorded in the file without being used: refuse it.
    for option, value, kind in (("--target", target, "target"), ("--trajectory", trajectory, "pca"),
                                ("--eigen", eigenvectors, "eigen")):
        if value is not None and direction != kind:
            raise LandscapeError(f"{option} applies to --dir {kind} only (this run has --dir {direction})")
    norm = norm or ("none" if direction == "eigen" else "filter")
    opts = parse_key_values(model_options)
    model, meta = load_checkpoint(checkpoint, model=model_name, model_options=opts, map_location=dev)
    model.to(dev)
    name = checkpoint_dataset(checkpoint, meta, dataset)
    ddir = data_dir or meta.get("data_dir")
    inputs, targets = load_dataset(name, split=split, n=n_samples, seed=seed, data_dir=ddir)
    recal = None
    if bn == "recalibrate":
        # BN statistics are training-set statistics, whatever split is evaluated: a fixed, seeded subset of it.
        n_train = len(load_dataset(name, split="train", data_dir=ddir)[1])
        recal, _ = load_dataset(name, split="train", n=min(recal_samples, n_train), seed=seed, data_dir=ddir)
    target_meta = None
    if target is not None:
        target_model, target_meta = load_checkpoint(target, model=model_name, model_options=opts, map_location=dev)
        if diff := architecture_difference(meta, target_meta):
            raise LandscapeError(f"--target {target} is not the same model as {checkpoint} ({diff})")
    if eigenvectors is not None:
        stored = read_hessian(eigenvectors)
        made_at = stored["attrs"]
        if not stored.get("n_eigenvectors"):
            raise LandscapeError(f"--eigen {eigenvectors} holds no eigenvectors; run landscape hessian {checkpoint} "
                                 "--top-k 2 --save-eigenvectors")
        if made_at.get("checkpoint_sha256") not in (None, meta["sha256"]):
            raise LandscapeError(f"{eigenvectors} holds the eigenvectors of {made_at.get('checkpoint')}, not of "
                                 f"{checkpoint} (their SHA-256 differ); run landscape hessian {checkpoint} "
                                 "--save-eigenvectors")
    settings = SurfaceSettings(
        checkpoint=os.path.abspath(checkpoint), checkpoint_sha256=meta["sha256"], model=str(meta["model"]),
        dataset=name, split=split, seed=seed, norm=norm, ignore=ignore, dir_type=dir_type, direction=direction,
        xspec=grid.x.spec, yspec=None if grid.y is None else grid.y.spec, bn=bn,
        recalibration_samples=0 if recal is None else len(recal), batch_size=batch_size,
        precision_target=precision_target, min_samples=min_samples, precision=precision,
        target=None if target is None else os.path.abspath(target),
        target_sha256=None if target_meta is None else target_meta["sha256"],
        trajectory=None if trajectory is None else os.path.abspath(trajectory),
        eigenvectors=None if eigenvectors is None else os.path.abspath(eigenvectors))

    def make_directions():
        weights = params.get_tensors(model, dir_type=dir_type)  # type: ignore[arg-type]
        return build_directions(
            direction, weights, ndim=1 if grid.y is None else 2, seed=seed, norm=norm, ignore=ignore,  # type: ignore[arg-type]
            target=None if target is None else params.get_tensors(target_model, dir_type=dir_type),  # type: ignore[arg-type]
            trajectory=None if trajectory is None else load_trajectory(trajectory, dir_type=dir_type, device=dev,  # type: ignore[arg-type]
                                                                       like=meta, model=model_name,
                                                                       model_options=opts),
            eigen_path=eigenvectors)

    if out is None:
        two_d = grid.y is not None
        out = default_output(checkpoint, two_d=two_d, direction=direction, split=split)
        old = old_default_output(checkpoint, two_d=two_d, direction=direction, split=split)
        if os.path.exists(old) and not os.path.exists(out) and not overwrite:
            # A run begun by an older version under the old default name: resume it rather than start again.
            if distributed.world().main:
                click.echo(f"resuming {old} (the old default name; new surfaces are named like {out})", err=True)
            out = old
    from landscape.core.provenance import provenance

    record = provenance(model, checkpoint_meta=meta, dataset=name, data_dir=ddir, split=split,
                        n_samples=len(inputs), subset=n_samples is not None, seed=seed)
    return {"model": model, "inputs": inputs, "targets": targets, "out": out, "grid": grid, "settings": settings,
            "directions": make_directions, "recal_inputs": recal, "attrs": record.attrs()}
