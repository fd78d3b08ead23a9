"""``landscape evaluate``: loss and accuracy of a checkpoint."""

from __future__ import annotations

import click

from landscape.cli._group import main
from landscape.core.options import (
    SEED,
    checkpoint_dataset,
    data_options,
    device_option,
    model_option,
    parse_key_values,
)


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@data_options
@model_option
@device_option
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the --n-samples subset (0 to 2^63-1).")
def evaluate(checkpoint: str, dataset: str | None, data_dir: str | None, split: str, n_samples: int | None,
             batch_size: int, model_name: str | None, model_options: tuple[str, ...], device: str, seed: int) -> None:
    """Mean loss and accuracy of CHECKPOINT on a dataset split (eval mode)."""
    import math

    from landscape.core.checkpoint import load_checkpoint
    from landscape.core.data import load_dataset
    from landscape.core.device import resolve_device
    from landscape.errors import LandscapeError
    from landscape.training import evaluate as run_eval

    model, meta = load_checkpoint(checkpoint, model=model_name, model_options=parse_key_values(model_options))
    name = checkpoint_dataset(checkpoint, meta, dataset)
    data = load_dataset(name, split=split, n=n_samples, seed=seed, data_dir=data_dir or meta.get("data_dir"))
    dev = resolve_device(device)
    loss, acc = run_eval(model.to(dev), data, batch_size=batch_size, device=dev)
    if math.isnan(loss):
        raise LandscapeError(f"the loss of {checkpoint} on {name}/{split} came out NaN: the model's outputs are not "
                             "finite on this data (its weights overflow), so neither loss nor accuracy means anything")
    if math.isinf(loss):
        click.echo(f"warning: the loss is {loss}: some sample gets probability 0 for its label (the logits "
                   "overflow); the accuracy is still meaningful", err=True)
    click.echo(f"{meta['model']} on {name}/{split} ({len(data[1])} samples): loss {loss:.6f}, accuracy {acc:.4f}")
