"""``landscape train``: SGD training with metrics, trajectory checkpoints and resume."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import click

from landscape.cli._group import main
from landscape.core.options import device_option, parse_key_values, seed_option


@main.command()
@click.argument("model")
@click.option("--dataset", default="digits", show_default=True, help="digits, cifar10, cifar100 or synthetic[-CxHxW].")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with CIFAR python pickles.")
@click.option("--n-train", type=click.IntRange(min=1), default=None, help="Train on a seeded subset of N samples.")
@click.option("--epochs", type=click.IntRange(min=1), default=15, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True, help="Peak learning rate.")
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--schedule", type=click.Choice(["cosine", "step", "constant"]), default="cosine", show_default=True)
@click.option("--augment/--no-augment", default=None,
              help="Random crop + flip (default: on for CIFAR, off otherwise).")
@click.option("--width", type=float, default=None, help="Width multiplier of the built-in models.")
@click.option("--model-option", "model_options", multiple=True, metavar="KEY=VALUE",
              help="Model option, e.g. merge=gate or attention_merge=add (repeatable).")
@seed_option
@device_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Run folder (default: runs/MODEL-DATASET-sSEED).")
@click.option("--save-every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Save a trajectory checkpoint every K epochs.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last epoch.")
@click.option("--probe-every", type=click.IntRange(min=1), default=None, metavar="K",
              help="Every K steps, probe gradient predictiveness and β on that step's minibatch "
                   "(writes DIR/predictiveness.h5).")
@click.option("--probe-eta", default=None, metavar="MIN:MAX:NUM",
              help="Step sizes η of the probes (default 0.05:0.4:8; or a comma-separated list).")
@click.option("--probe-bn", type=click.Choice(["train", "eval"]), default="train", show_default=True,
              help="BatchNorm mode while probing.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(model: str, dataset: str, data_dir: str | None, n_train: int | None, epochs: int, batch_size: int,
          lr: float, momentum: float, weight_decay: float, schedule: str, augment: bool | None,
          width: float | None, model_options: tuple[str, ...], seed: int, device: str, out_dir: str | None,
          save_every: int, resume: bool, probe_every: int | None, probe_eta: str | None,
          probe_bn: Literal["train", "eval"], quiet: bool) -> None:
    """Train MODEL (a registered name or package.module:callable) with SGD; writes checkpoints and metrics.csv."""
    from landscape.core.data import dataset_info, load_dataset
    from landscape.core.fs import output_lock
    from landscape.errors import LandscapeError
    from landscape.training import seeded_model
    from landscape.training import train as run_training

    info = dataset_info(dataset)
    options = parse_key_values(model_options)
    if width is not None:
        options["width"] = width
    run_dir = Path(out_dir or f"runs/{model.replace(':', '_')}-{dataset}-s{seed}")
    callbacks = []
    if probe_every is not None:
        from landscape.analyses.predictiveness.compute import (
            DEFAULT_ETA_SPEC,
            PredictivenessProbe,
            parse_etas,
        )

        etas = parse_etas(probe_eta or DEFAULT_ETA_SPEC, name="--probe-eta")
        callbacks.append(PredictivenessProbe(
            run_dir / "predictiveness.h5", every=probe_every, etas=etas, bn_mode=probe_bn,
            attrs={"model": model, "model_options": options, "dataset": dataset, "lr": lr,
                   "batch_size": batch_size, "seed": seed}))
    elif probe_eta is not None or probe_bn != "train":
        raise LandscapeError("--probe-eta/--probe-bn need --probe-every K (probe every K training steps)")
    train_data = load_dataset(dataset, split="train", n=n_train, seed=seed, data_dir=data_dir)
    test_data = load_dataset(dataset, split="test", data_dir=data_dir)
    net = seeded_model(model, num_classes=info.num_classes, in_channels=info.in_channels, seed=seed, **options)
    # Held from the first look into the run folder to the end (train() takes it again, re-entrantly): a second
    # run into the same folder is refused before it reads or writes anything there.
    with output_lock(run_dir):
        if probe_every is None and resume and (run_dir / "predictiveness.h5").exists():
            # Resuming unprobed would leave the probe file silently covering only the first part of training.
            raise LandscapeError(f"{run_dir} was trained with probes (predictiveness.h5): resume with the same "
                                 "--probe-every/--probe-eta/--probe-bn, or delete that file")
        result = run_training(
            net, train_data, test_data, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
            weight_decay=weight_decay, schedule=schedule, seed=seed, device=device, out_dir=run_dir,
            save_every=save_every, resume=resume, augment=info.augment if augment is None else augment,
            meta={"dataset": dataset, "data_dir": data_dir, "n_train": n_train}, progress=not quiet,
            callbacks=callbacks,
        )
    last = result.metrics[-1]
    click.echo(f"{model} on {dataset}: train loss {last['train_loss']:.4f}, test acc {last['test_acc']:.4f} "
               f"after {last['epoch']} epochs ({result.seconds:.1f} s) -> {result.final_checkpoint}")
