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
    seed_option,
)


@click.command(name="attention")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--samples", type=click.IntRange(min=1), default=None,
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
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def attention(checkpoint: str, samples: int | None, importance: Literal["ablation", "taylor"], dataset: str | None,
              data_dir: str | None, split: str, batch_size: int, seed: int, device: str,
              model_name: str | None, model_options: tuple[str, ...], out: str | None, force: bool,
              quiet: bool) -> None:
    """Rank correlation of attention weights and channel importance in CHECKPOINT (writes one HDF5 file)."""
    import os

    from landscape import load_checkpoint, load_dataset
    from landscape.analyses.attention.compute import attention_importance, to_store
    from landscape.analyses.attention.schema import write_attention
    from landscape.core.device import resolve_device
    from landscape.core.options import parse_key_values

    out = out or f"{os.path.splitext(checkpoint)[0]}.attention-{importance}.h5"
    claim_output(out, checkpoint, force=force)
    model, meta = load_checkpoint(checkpoint, model=model_name,
                                  model_options=parse_key_values(model_options) or None)
    model.to(resolve_device(device))
    dataset = checkpoint_dataset(checkpoint, meta, dataset)
    ddir = data_dir or meta.get("data_dir")
    if samples is None:  # the default fits any split (digits' test split holds 360)
        samples = min(500, len(load_dataset(dataset, split=split, data_dir=ddir)[1]))
    x, y = load_dataset(dataset, split=split, n=samples, seed=seed, data_dir=ddir)
    result = attention_importance(model, x, y, importance=importance, batch_size=batch_size, seed=seed,
                                  progress=False if quiet else None)
    modules, attrs = to_store(result)
    from landscape.core.provenance import provenance

    record = provenance(model, checkpoint_meta=meta, dataset=dataset, data_dir=ddir, split=split,
                        n_samples=len(y), subset=True, seed=seed)
    attrs = {**record.attrs(), **attrs}
    attrs.update(checkpoint=os.path.abspath(checkpoint), checkpoint_sha256=meta.get("sha256"), model=meta.get("model"),
                 model_options=meta.get("model_options"), dataset=dataset, split=split, label=meta.get("model"))
    write_attention(out, modules=modules, attrs=attrs)
    click.echo(f"{out}  pooled Spearman ρ={result.pooled.spearman:.3f} (p={result.pooled.spearman_p:.2g}), "
               f"Kendall τ={result.pooled.kendall:.3f} (p={result.pooled.kendall_p:.2g}); "
               f"within-module ranks ρ={result.pooled_within.spearman:.3f} (p={result.pooled_within.spearman_p:.2g})")
