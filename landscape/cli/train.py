"""``landscape train``: SGD, full-batch gradient descent or Adam, with metrics, trajectory checkpoints, resume, and
optional probes (gradient predictiveness) and curvature tracking during training; under torchrun, data-parallel
(DistributedDataParallel) with rank 0 writing the run folder."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Literal

import click

from landscape.cli._group import main
from landscape.core.options import device_option, parse_key_values, seed_option


def _betas(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    from landscape.errors import LandscapeError

    try:
        b1, b2 = (float(v) for v in text.split(","))
    except ValueError:
        raise LandscapeError(f"--betas '{text}' is not two comma-separated numbers, e.g. 0.9,0.999") from None
    return b1, b2


@main.command()
@click.argument("model")
@click.option("--dataset", default="digits", show_default=True, help="digits, cifar10, cifar100 or synthetic[-CxHxW].")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with CIFAR python pickles.")
@click.option("--n-train", type=click.IntRange(min=1), default=None, help="Train on a seeded subset of N samples.")
@click.option("--epochs", type=click.IntRange(min=1), default=15, show_default=True,
              help="Epochs (with --optimizer gd: steps, one per epoch).")
@click.option("--optimizer", type=click.Choice(["sgd", "gd", "adam"]), default="sgd", show_default=True,
              help="sgd (minibatches), gd (full-batch gradient descent on the whole training set, one step per "
                   "epoch) or adam.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Minibatch size for sgd and adam [default: 64]; gd always takes the whole training set. Under "
                   "torchrun the global batch, shared out among the processes.")
@click.option("--lr", type=float, default=0.05, show_default=True, help="Peak learning rate.")
@click.option("--momentum", type=float, default=None,
              help="Heavy-ball momentum of sgd and gd [default: 0.9 for sgd, 0 for gd].")
@click.option("--weight-decay", type=float, default=None, help="L2 weight decay [default: 5e-4 for sgd, 0 otherwise].")
@click.option("--betas", default=None, metavar="B1,B2", help="Adam's moment decays [default: 0.9,0.999].")
@click.option("--loss", type=click.Choice(["cross_entropy", "mse"]), default="cross_entropy", show_default=True,
              help="cross_entropy, or mse: ½‖f(x) − onehot(y)‖² per sample.")
@click.option("--schedule", type=click.Choice(["cosine", "step", "constant"]), default="cosine", show_default=True)
@click.option("--augment/--no-augment", default=None,
              help="Random crop + flip (default: on for CIFAR with sgd/adam, off otherwise).")
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
@click.option("--track-curvature", type=click.IntRange(min=1), default=None, metavar="EVERY",
              help="Every EVERY steps, the top Hessian eigenvalue on a fixed sample set (warm-started Lanczos) "
                   "and 2/η; for adam also the preconditioned sharpness (writes DIR/curvature.h5).")
@click.option("--track-samples", type=click.IntRange(min=1), default=None, metavar="N",
              help="Fixed seeded set of N training samples for --track-curvature [default: 256].")
@click.option("--track-tol", type=click.FloatRange(min=0, min_open=True, max=1, max_open=True), default=None,
              help="Lanczos tolerance ‖Hv − λv‖ ≤ tol·|λ| for --track-curvature [default: 1e-3].")
@click.option("--track-trace", is_flag=True, help="Also track the Hessian trace (Hutch++).")
@click.option("--track-trace-probes", type=click.IntRange(min=4), default=None,
              help="Hutch++ probes for --track-trace [default: 30].")
@click.option("--sync-bn", is_flag=True,
              help="Under torchrun on GPUs: BatchNorm statistics over the whole batch (SyncBatchNorm) instead of "
                   "each process's share.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(model: str, dataset: str, data_dir: str | None, n_train: int | None, epochs: int, optimizer: str,
          batch_size: int | None, lr: float, momentum: float | None, weight_decay: float | None, betas: str | None,
          loss: str, schedule: str, augment: bool | None, width: float | None, model_options: tuple[str, ...],
          seed: int, device: str, out_dir: str | None, save_every: int, resume: bool, probe_every: int | None,
          probe_eta: str | None, probe_bn: Literal["train", "eval"], track_curvature: int | None,
          track_samples: int | None, track_tol: float | None, track_trace: bool, track_trace_probes: int | None,
          sync_bn: bool, quiet: bool) -> None:
    """Train MODEL (a registered name or package.module:callable); writes checkpoints and metrics.csv.

    Under torchrun (torchrun --nproc_per_node N -m landscape train ...) the model is trained data-parallel: each
    process takes its share of every (global) batch, and rank 0 writes the run folder; see docs/scale.md.
    """
    from landscape.core import distributed
    from landscape.core.device import resolve_device

    dev = distributed.device_for(resolve_device(device))
    distributed.init(dev)
    try:
        with contextlib.ExitStack() as stack:
            with distributed.agree():  # a refusal ends every process with one line (from rank 0)
                run = _prepare(stack, model, dataset, data_dir, n_train, epochs, optimizer, batch_size, lr, momentum,
                               weight_decay, betas, loss, schedule, augment, width, model_options, seed, dev,
                               out_dir, save_every, resume, probe_every, probe_eta, probe_bn, track_curvature,
                               track_samples, track_tol, track_trace, track_trace_probes, sync_bn, quiet)
            from landscape.training import train as run_training

            result = run_training(**run)
    except distributed.PeerError:
        if not distributed.world().main:
            raise click.exceptions.Exit(1) from None  # rank 0 prints the one line
        raise
    finally:
        distributed.finish()
    if distributed.world().main:
        last = result.metrics[-1]
        click.echo(f"{model} on {dataset}: train loss {last['train_loss']:.4f}, test acc {last['test_acc']:.4f} "
                   f"after {last['epoch']} epochs ({result.seconds:.1f} s) -> {result.final_checkpoint}")


def _prepare(stack: contextlib.ExitStack, model: str, dataset: str, data_dir: str | None, n_train: int | None,
             epochs: int, optimizer: str, batch_size: int | None, lr: float, momentum: float | None,
             weight_decay: float | None, betas: str | None, loss: str, schedule: str, augment: bool | None,
             width: float | None, model_options: tuple[str, ...], seed: int, device: Any, out_dir: str | None,
             save_every: int, resume: bool, probe_every: int | None, probe_eta: str | None,
             probe_bn: Literal["train", "eval"], track_curvature: int | None, track_samples: int | None,
             track_tol: float | None, track_trace: bool, track_trace_probes: int | None, sync_bn: bool,
             quiet: bool) -> dict[str, Any]:
    """Everything the command loads and checks before training (rank 0 takes the run folder's lock into
    ``stack``): the arguments of ``landscape.training.train``."""
    from landscape.core import distributed
    from landscape.core.data import dataset_info, load_dataset
    from landscape.core.fs import output_lock
    from landscape.errors import LandscapeError
    from landscape.training import seeded_model

    info = dataset_info(dataset)
    options = parse_key_values(model_options)
    if width is not None:
        options["width"] = width
    adam_betas = _betas(betas)
    if adam_betas is not None and optimizer != "adam":
        raise LandscapeError(f"--betas is Adam's; --optimizer is {optimizer}")
    if optimizer == "gd" and batch_size is not None:
        raise LandscapeError("--optimizer gd steps on the whole training set at once; drop --batch-size (choose the "
                             "samples with --n-train)")
    if optimizer == "gd" and augment:
        raise LandscapeError("--optimizer gd takes exact gradients of a fixed training set; drop --augment")
    track_extra = [flag for flag, given in (("--track-samples", track_samples is not None),
                                            ("--track-tol", track_tol is not None), ("--track-trace", track_trace),
                                            ("--track-trace-probes", track_trace_probes is not None)) if given]
    if track_curvature is None and track_extra:
        raise LandscapeError(f"{'/'.join(track_extra)} need --track-curvature EVERY (measure every EVERY steps)")
    if track_trace_probes is not None and not track_trace:
        raise LandscapeError("--track-trace-probes needs --track-trace")
    batch_size = None if optimizer == "gd" else (batch_size or 64)
    run_dir = Path(out_dir or f"runs/{model.replace(':', '_')}-{dataset}-s{seed}")
    train_data = load_dataset(dataset, split="train", n=n_train, seed=seed, data_dir=data_dir)
    test_data = load_dataset(dataset, split="test", data_dir=data_dir)
    callbacks: list[object] = []
    if probe_every is not None:
        from landscape.analyses.predictiveness.compute import (
            DEFAULT_ETA_SPEC,
            PredictivenessProbe,
            parse_etas,
        )

        etas = parse_etas(probe_eta or DEFAULT_ETA_SPEC, name="--probe-eta")
        callbacks.append(PredictivenessProbe(
            run_dir / "predictiveness.h5", every=probe_every, etas=etas, bn_mode=probe_bn,
            attrs={"model": model, "model_options": options, "dataset": dataset, "data_dir": data_dir,
                   "n_samples": len(train_data[1]), "subset": n_train is not None, "lr": lr,
                   "batch_size": batch_size or len(train_data[1]), "seed": seed}))
    elif probe_eta is not None or probe_bn != "train":
        raise LandscapeError("--probe-eta/--probe-bn need --probe-every K (probe every K training steps)")
    if track_curvature is not None:
        from landscape.analyses.curvature.track import CurvatureTracker

        callbacks.append(CurvatureTracker(
            run_dir / "curvature.h5", data=train_data, every=track_curvature,
            n_samples=track_samples or 256, seed=seed, tol=track_tol or 1e-3,
            trace_probes=(track_trace_probes or 30) if track_trace else 0,
            attrs={"model": model, "model_options": options, "dataset": dataset, "data_dir": data_dir,
                   "subset": n_train is not None, "optimizer": optimizer, "lr": lr, "loss": loss,
                   "schedule": schedule}))
    net = seeded_model(model, num_classes=info.num_classes, in_channels=info.in_channels, seed=seed, **options)
    if sync_bn and callbacks and distributed.world().size > 1:
        raise LandscapeError("--probe-every/--track-curvature run on rank 0 alone, where SyncBatchNorm would wait "
                             "for the other processes: drop --sync-bn or them")
    # Held from the first look into the run folder to the end (train() takes it again, re-entrantly): a second
    # run into the same folder is refused before it reads or writes anything there. Under torchrun: rank 0's.
    if distributed.world().main:
        stack.enter_context(output_lock(run_dir))
        if probe_every is None and resume and (run_dir / "predictiveness.h5").exists():
            # Resuming unprobed would leave the probe file silently covering only the first part of training.
            raise LandscapeError(f"{run_dir} was trained with probes (predictiveness.h5): resume with the same "
                                 "--probe-every/--probe-eta/--probe-bn, or delete that file")
        if track_curvature is None and resume and (run_dir / "curvature.h5").exists():
            raise LandscapeError(f"{run_dir} was trained with curvature tracking (curvature.h5): resume with the same "
                                 "--track-curvature/--track-samples/--track-tol/--track-trace, or delete that file")
    return dict(model=net, train_data=train_data, test_data=test_data, epochs=epochs, lr=lr, optimizer=optimizer,
                batch_size=batch_size, momentum=momentum, weight_decay=weight_decay, loss=loss, schedule=schedule,
                seed=seed, device=device, out_dir=run_dir, save_every=save_every, resume=resume,
                augment=(info.augment and optimizer != "gd") if augment is None else augment,
                meta={"dataset": dataset, "data_dir": data_dir, "n_train": n_train}, progress=not quiet,
                callbacks=callbacks, betas=adam_betas or (0.9, 0.999), sync_bn=sync_bn)
