"""``landscape connect``: loss barriers between two checkpoints, linear and along a trained curve, before and after
permutation alignment."""

from __future__ import annotations

import click

from landscape.core.options import device_option, model_option, overwrite_option, seed_option


@click.command(name="connect")
@click.argument("checkpoint_a", type=click.Path(dir_okay=False))
@click.argument("checkpoint_b", type=click.Path(dir_okay=False))
@click.option("--points", type=click.IntRange(3, 10_001), default=11, show_default=True,
              help="Values of t from 0 (A) to 1 (B) on every path.")
@click.option("--bn", type=click.Choice(["recalibrate", "interpolate"]), default="recalibrate", show_default=True,
              help="BN statistics on the linear path: recomputed at every t from training batches, or interpolated "
                   "with the weights (curves always recalibrate).")
@click.option("--align", is_flag=True,
              help="Also align B's hidden units to A by weight matching (MLPs, ResNet/FMMNet families) and report "
                   "the barrier after alignment; a curve then ends at the aligned B.")
@click.option("--curve", type=click.Choice(["none", "bezier", "polychain"]), default="none", show_default=True,
              help="Train a quadratic Bézier curve or a polygonal chain with one bend between A and B.")
@click.option("--curve-epochs", type=click.IntRange(min=1), default=20, show_default=True,
              help="Epochs of curve training over the training split.")
@click.option("--curve-lr", type=click.FloatRange(min=0, min_open=True), default=0.05, show_default=True,
              help="Peak learning rate of the bend (SGD, cosine schedule).")
@click.option("--curve-batch-size", type=click.IntRange(min=2), default=64, show_default=True,
              help="Training batch size of the curve (one t per batch).")
@click.option("--curve-momentum", type=click.FloatRange(min=0), default=0.9, show_default=True,
              help="SGD momentum of the bend.")
@click.option("--curve-weight-decay", type=click.FloatRange(min=0), default=5e-4, show_default=True,
              help="Weight decay of the bend.")
@click.option("--plane", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="With --curve: the loss on an N×N grid of the plane through A, B and the bend (0: none).")
@click.option("--plane-margin", type=click.FloatRange(min=0), default=0.2, show_default=True,
              help="Margin of the plane around the three points, in units of ‖θ_B − θ_A‖.")
@click.option("--recal-samples", type=click.IntRange(min=1), default=1280, show_default=True,
              help="Training samples (seeded) that recompute the BN statistics at every point.")
@click.option("--dataset", default=None, help="digits, cifar10, cifar100 or synthetic (default: A's own).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder holding CIFAR data (python pickle layout).")
@click.option("--n-samples", type=click.IntRange(min=1), default=None,
              help="Evaluate a seeded subset of N samples of each split (default: all).")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True,
              help="Evaluation batch size.")
@seed_option
@device_option
@model_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output HDF5 (default: beside A, e.g. final.connect-bezier-aligned.h5); the curve's training "
                   "checkpoint goes beside it (….curve.pt).")
@overwrite_option("Replace --out (and train the curve afresh) if it exists.")
@click.option("--resume", is_flag=True, help="Continue the curve training saved beside --out.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def connect(checkpoint_a: str, checkpoint_b: str, points: int, bn: str, align: bool, curve: str,
            curve_epochs: int, curve_lr: float, curve_batch_size: int, curve_momentum: float,
            curve_weight_decay: float, plane: int, plane_margin: float, recal_samples: int, dataset: str | None,
            data_dir: str | None, n_samples: int | None, batch_size: int, seed: int, device: str,
            model_name: str | None, model_options: tuple[str, ...], out: str | None, overwrite: bool, resume: bool,
            quiet: bool) -> None:
    """Mode connectivity of CHECKPOINT_A and CHECKPOINT_B: loss and accuracy along the linear path (and a trained
    curve), the loss barrier ± its standard error, before and after alignment."""
    import os

    from landscape.analyses.connectivity.result import compute
    from landscape.core.checkpoint import architecture_difference, load_checkpoint
    from landscape.core.data import load_dataset
    from landscape.core.device import resolve_device
    from landscape.core.options import checkpoint_dataset, claim_output, output_name, parse_key_values
    from landscape.errors import LandscapeError

    kind = None if curve == "none" else curve
    if plane and kind is None:
        raise LandscapeError("--plane needs --curve bezier or polychain (the plane goes through the curve's bend)")
    ctx = click.get_current_context()
    curve_only = [p for p in ("curve_epochs", "curve_lr", "curve_batch_size", "curve_momentum", "curve_weight_decay")
                  if ctx.get_parameter_source(p) == click.core.ParameterSource.COMMANDLINE]
    if curve_only and kind is None:
        raise LandscapeError(f"--{curve_only[0].replace('_', '-')} applies to --curve bezier or polychain only")
    if resume and kind is None:
        raise LandscapeError("--resume continues a curve's training; it needs --curve bezier or polychain")
    out = out or output_name(checkpoint_a, "connect", kind or "", "aligned" if align else "")
    if os.path.realpath(out) == os.path.realpath(checkpoint_b):
        raise LandscapeError(f"--out {out} is the checkpoint B itself; choose another --out")
    claim_output(out, checkpoint_a, force=overwrite)
    curve_ckpt = f"{os.path.splitext(out)[0]}.curve.pt" if kind else None
    if curve_ckpt and os.path.exists(curve_ckpt) and not (resume or overwrite):
        raise LandscapeError(f"{curve_ckpt} holds a curve's training; add --resume to continue it or --overwrite to "
                             "train afresh")
    dev = resolve_device(device)
    opts = parse_key_values(model_options) or None
    model_a, meta_a = load_checkpoint(checkpoint_a, model=model_name, model_options=opts, map_location=dev)
    model_b, meta_b = load_checkpoint(checkpoint_b, model=model_name, model_options=opts, map_location=dev)
    if diff := architecture_difference(meta_a, meta_b):
        raise LandscapeError(f"{checkpoint_b} is not the same model as {checkpoint_a} ({diff}); connect two "
                             "checkpoints of one architecture")
    model_a.to(dev)
    model_b.to(dev)
    name = checkpoint_dataset(checkpoint_a, meta_a, dataset)
    checkpoint_dataset(checkpoint_b, meta_b, name)
    ddir = data_dir or meta_a.get("data_dir")
    train = load_dataset(name, split="train", data_dir=ddir)
    splits = {}
    for split in ("train", "test"):
        full = train if split == "train" else load_dataset(name, split=split, data_dir=ddir)
        n = None if n_samples is None else min(n_samples, len(full[1]))
        splits[split] = full if n is None else load_dataset(name, split=split, n=n, seed=seed, data_dir=ddir)
    result = compute(model_a, model_b, splits, train_data=train, points=points, bn=bn, align=align, curve=kind,
                     curve_epochs=curve_epochs, curve_lr=curve_lr, curve_batch_size=curve_batch_size,
                     curve_momentum=curve_momentum, curve_weight_decay=curve_weight_decay, plane=plane,
                     plane_margin=plane_margin, recal_samples=recal_samples, batch_size=batch_size, seed=seed,
                     dataset=name, subset=n_samples is not None, data_dir=ddir, meta_a=meta_a, meta_b=meta_b,
                     curve_checkpoint=curve_ckpt, resume=resume, overwrite=overwrite, progress=not quiet)
    attrs = {**result.attrs, "checkpoint": os.path.abspath(checkpoint_a), "checkpoint_b": os.path.abspath(checkpoint_b),
             "checkpoint_b_sha256": meta_b.get("sha256"), "curve_checkpoint": curve_ckpt and os.path.abspath(curve_ckpt)}
    from dataclasses import replace

    from landscape.analyses.connectivity.schema import write

    r = replace(result, attrs=attrs)
    write(out, attrs=r.attrs, t=r.t, paths=r.paths, barriers=r.barriers, endpoint_b=r.endpoint_b,
          alignment=r.alignment, curve=r.curve, plane=r.plane)
    for path, per_split in r.barriers.items():
        b = per_split["train"]
        click.echo(f"{path}: train loss barrier {b['height']:.4g} ± {b['stderr']:.2g} at t={b['t']:.3g} "
                   f"(max loss {b['max_loss']:.4g})")
    click.echo(out)
