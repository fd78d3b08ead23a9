"""``landscape predictiveness``: gradient predictiveness and effective β-smoothness at one checkpoint."""

from __future__ import annotations

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
    seed_option,
)


@click.command(name="predictiveness")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--batches", "n_batches", type=click.IntRange(min=1), default=10, show_default=True,
              help="Number of disjoint minibatches probed (seeded draw); one row each.")
@click.option("--eta", default="0.05:0.4:8", show_default=True, metavar="MIN:MAX:NUM",
              help="Step sizes η of the probe steps W − ηg (or a comma-separated list).")
@click.option("--bn", "bn", type=click.Choice(["train", "eval"]), default="train", show_default=True,
              help="BatchNorm while probing: train (batch statistics, as in a training step) or eval.")
@data_options
@seed_option
@device_option
@model_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output HDF5 file (default: CHECKPOINT stem + .predictiveness.h5).")
@overwrite_option()
@click.option("--quiet", is_flag=True, help="No progress bar.")
def predictiveness(checkpoint: str, n_batches: int, eta: str, bn: Literal["train", "eval"],
                   dataset: str | None, data_dir: str | None, split: str, n_samples: int | None,
                   batch_size: int, seed: int, device: str, model_name: str | None,
                   model_options: tuple[str, ...], out: str | None, overwrite: bool, quiet: bool) -> None:
    """Loss variation, gradient change ‖∇L(W − ηg) − g‖ and β at CHECKPOINT over N minibatches."""
    import numpy as np

    from landscape import load_checkpoint, load_dataset
    from landscape.analyses.predictiveness.compute import parse_etas
    from landscape.analyses.predictiveness.result import compute
    from landscape.core.device import resolve_device
    from landscape.core.options import parse_key_values

    out = out or output_name(checkpoint, "predictiveness")
    etas = parse_etas(eta, name="--eta")
    claim_output(out, checkpoint, force=overwrite)
    model, meta = load_checkpoint(checkpoint, model=model_name, model_options=parse_key_values(model_options) or None)
    model.to(resolve_device(device))
    dataset = checkpoint_dataset(checkpoint, meta, dataset)
    data_dir = data_dir or meta.get("data_dir")
    x, y = load_dataset(dataset, split=split, n=n_samples, seed=seed, data_dir=data_dir)
    # The library computes and writes the file, so `landscape.predictiveness(...).save()` writes the same one.
    result = compute(model, x, y, n_batches=n_batches, batch_size=batch_size, eta=etas, bn=bn, seed=seed,
                     dataset=dataset, data_dir=data_dir, split=split, subset=n_samples is not None,
                     checkpoint_meta=meta, progress=False if quiet else None)
    # Losses that overflow at long steps are a finding (kept, with a warning); the rows at W are checked finite.
    bad = ~(np.isfinite(result.loss) & np.isfinite(result.grad_diff))
    if bad.any():
        first = float(etas[int(np.argmax(bad.any(axis=0)))])
        click.echo(f"warning: the loss or gradient change is not finite (NaN/inf) at {int(bad.sum())} of {bad.size} "
                   f"probe points, the first at η={first:g}: those steps overflow the weights; they are stored as "
                   "they are", err=True)
    result.save(out, overwrite=True)  # claim_output checked --overwrite and holds the lock until the command ends
    click.echo(f"{meta.get('model', 'model')}: β {result.mean('beta'):.4g} (batch-weighted mean of {n_batches}), "
               f"loss {result.mean('train_loss'):.4g} -> {np.asarray(result.mean('loss'))[-1]:.4g} "
               f"at η={etas[-1]:g}, "
               f"‖g‖ {result.mean('grad_norm'):.4g} ({result.attrs['seconds']:.1f} s) -> {out}")
