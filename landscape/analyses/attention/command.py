"""``landscape attention``: attention weights vs channel importance for SE / CBAM models."""

from __future__ import annotations

from typing import Literal

import click

from landscape.core.options import (
    checkpoint_dataset,
    claim_output,
    dataset_options,
    device_option,
    model_option,
    output_name,
    overwrite_option,
    seed_option,
)


@click.command(name="attention")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--n-samples", "--samples", "n_samples", type=click.IntRange(min=1), default=None,
              help="Samples (seeded subset of the split) to average weights and importances over "
                   "[default: 500, or the whole split when it is smaller].")
@click.option("--importance", type=click.Choice(["ablation", "taylor"]), default="ablation", show_default=True,
              help="ablation: loss increase when a channel is zeroed; taylor: mean |activation × gradient|.")
@dataset_options(split="test", batch_size=256,
                 batch_help="Samples per forward pass (ablation replicates them per channel up to this size).")
@seed_option
@device_option
@model_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output HDF5 file (default: CHECKPOINT stem + .attention-IMPORTANCE.h5).")
@overwrite_option()
@click.option("--quiet", is_flag=True, help="No progress bar.")
def attention(checkpoint: str, n_samples: int | None, importance: Literal["ablation", "taylor"],
              dataset: str | None, data_dir: str | None, split: str, batch_size: int, seed: int, device: str,
              model_name: str | None, model_options: tuple[str, ...], out: str | None, overwrite: bool,
              quiet: bool) -> None:
    """Rank correlation of attention weights and channel importance in CHECKPOINT (writes one HDF5 file).

    Measured on the test split by default: importance on inputs the model did not train on, not on what it may
    have memorised.
    """
    from landscape import load_checkpoint
    from landscape.analyses.attention.result import compute, select
    from landscape.core.device import resolve_device
    from landscape.core.options import parse_key_values

    out = out or output_name(checkpoint, "attention", importance)
    claim_output(out, checkpoint, force=overwrite)
    model, meta = load_checkpoint(checkpoint, model=model_name,
                                  model_options=parse_key_values(model_options) or None)
    model.to(resolve_device(device))
    dataset = checkpoint_dataset(checkpoint, meta, dataset)
    ddir = data_dir or meta.get("data_dir")
    x, y, _, subset = select(dataset, split=split, n_samples=n_samples, seed=seed, data_dir=ddir)
    # The file is the result's own: the library's .save writes it, so library and command files are alike.
    result = compute(model, x, y, importance=importance, batch_size=batch_size, seed=seed, dataset=dataset,
                     data_dir=ddir, split=split, subset=subset, checkpoint_meta=meta,
                     progress=False if quiet else None).save(out, overwrite=overwrite)
    pooled, within = result.pooled, result.pooled_within
    click.echo(f"{out}  pooled Spearman ρ={pooled.spearman:.3f} (p={pooled.spearman_p:.2g}), "
               f"Kendall τ={pooled.kendall:.3f} (p={pooled.kendall_p:.2g}); "
               f"within-module ranks ρ={within.spearman:.3f} (p={within.spearman_p:.2g})")
