"""``landscape inputspace``: loss paths around and between real samples, and noise robustness."""

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


@click.command(name="inputspace")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--mode", type=click.Choice(["around", "between", "noise"]), default="around", show_default=True,
              help="around: paths x + r·d from samples; between: segments between sample pairs; noise: x + σ·ε.")
@click.option("--directions", type=click.Choice(["random", "gradient"]), default="random", show_default=True,
              help="around: unit-L2 random directions or the input gradient of the loss.")
@click.option("--n-directions", type=click.IntRange(min=1), default=1, show_default=True,
              help="around: random directions per sample.")
@click.option("--radius", default="0:10:21", show_default=True, metavar="MIN:MAX:NUM",
              help="around: radii (input-space L2 distance) along each direction.")
@click.option("--steps", type=click.IntRange(min=2), default=21, show_default=True,
              help="between: points α = 0..1 along each segment.")
@click.option("--sigma", default="0:1:11", show_default=True, metavar="MIN:MAX:NUM",
              help="noise: standard deviations of the additive Gaussian noise.")
@click.option("--samples", type=click.IntRange(min=1), default=100, show_default=True,
              help="around: samples (seeded subset); between: pool the pairs come from (default: whole split); "
                   "noise: samples (default: whole split).")
@click.option("--pairs", type=click.IntRange(min=1), default=100, show_default=True,
              help="between: pairs, half same-class and half different-class.")
@click.option("--draws", type=click.IntRange(min=1), default=5, show_default=True,
              help="noise: seeded noise draws averaged per σ.")
@dataset_options(split="test", batch_size=256, batch_help="Points per forward pass.")
@seed_option
@device_option
@model_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output HDF5 file (default: CHECKPOINT stem + .inputspace-MODE.h5).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def inputspace(checkpoint: str, mode: str, directions: Literal["random", "gradient"], n_directions: int,
               radius: str, steps: int, sigma: str, samples: int, pairs: int, draws: int, dataset: str | None,
               data_dir: str | None, split: str, batch_size: int, seed: int, device: str,
               model_name: str | None, model_options: tuple[str, ...], out: str | None, force: bool,
               quiet: bool) -> None:
    """Input-space landscape of CHECKPOINT near and between real samples (writes one HDF5 file)."""
    import os

    import numpy as np

    from landscape import load_checkpoint, load_dataset
    from landscape.analyses.inputspace.compute import (
        AroundResult,
        BetweenResult,
        NoiseResult,
        noise_robustness,
        paths_around,
        paths_between,
        result_attrs,
        to_arrays,
    )
    from landscape.analyses.inputspace.schema import write_inputspace
    from landscape.core.device import resolve_device
    from landscape.core.grid import MAX_NUM, parse_axis
    from landscape.core.options import parse_key_values
    from landscape.errors import LandscapeError

    out = out or f"{os.path.splitext(checkpoint)[0]}.inputspace-{mode}.h5"
    # An option of another mode would be accepted and silently ignored: refuse it when it was given.
    ctx = click.get_current_context()
    only = {"directions": "around", "n_directions": "around", "radius": "around", "steps": "between",
            "pairs": "between", "sigma": "noise", "draws": "noise"}
    for param, its_mode in only.items():
        given = ctx.get_parameter_source(param) not in (click.core.ParameterSource.DEFAULT, None)
        if given and mode != its_mode:
            flag = "--" + param.replace("_", "-")
            raise LandscapeError(f"{flag} applies to --mode {its_mode} only, not --mode {mode}")
    if directions == "gradient" and n_directions != 1:
        raise LandscapeError("--directions gradient has one direction per sample; drop --n-directions")
    if steps > MAX_NUM:
        raise LandscapeError(f"--steps {steps:,} is too many points for one segment; at most {MAX_NUM:,}")
    radii = parse_axis(radius, name="--radius").coords if mode == "around" else None
    sigmas = parse_axis(sigma, name="--sigma").coords if mode == "noise" else None
    claim_output(out, checkpoint, force=force)
    model, meta = load_checkpoint(checkpoint, model=model_name,
                                  model_options=parse_key_values(model_options) or None)
    model.to(resolve_device(device))
    dataset = checkpoint_dataset(checkpoint, meta, dataset)
    src = click.get_current_context().get_parameter_source("samples")
    n = samples if mode == "around" or src == click.core.ParameterSource.COMMANDLINE else None
    x, y = load_dataset(dataset, split=split, n=n, seed=seed, data_dir=data_dir or meta.get("data_dir"))
    result: AroundResult | BetweenResult | NoiseResult
    if mode == "around":
        assert radii is not None  # parsed above for this mode
        result = paths_around(model, x, y, radii=radii, directions=directions, n_directions=n_directions,
                              seed=seed, batch_size=batch_size, progress=False if quiet else None)
        loss = np.asarray(result.loss)
        axis_name, axis = "radius", radii
    elif mode == "between":
        alphas = np.linspace(0.0, 1.0, steps)
        result = paths_between(model, x, y, alphas=alphas, pairs=pairs, seed=seed,
                               batch_size=batch_size, progress=False if quiet else None)
        loss = np.asarray(result.loss)
        axis_name, axis = "α", alphas
    else:
        assert sigmas is not None  # parsed above for this mode
        result = noise_robustness(model, x, y, sigmas=sigmas, draws=draws, seed=seed, batch_size=batch_size,
                                  progress=False if quiet else None)
        loss = np.asarray(result.loss_mean)
        axis_name, axis = "σ", sigmas
    # Losses that overflow far from the data are a finding (kept, with a warning); none finite is a broken model.
    bad = ~np.isfinite(loss)
    if bad.all():
        raise LandscapeError("every loss came out NaN/inf: the model's outputs are not finite on these inputs; "
                             "check the checkpoint with `landscape evaluate`")
    if bad.any():
        first = float(axis[int(np.argmax(bad.reshape(-1, bad.shape[-1]).any(axis=0)))])
        click.echo(f"warning: {int(bad.sum())} of {bad.size} losses are not finite (NaN/inf), the first at "
                   f"{axis_name}={first:g}: the model's outputs overflow there; they are stored as they are",
                   err=True)
    from landscape.core.provenance import provenance

    record = provenance(model, checkpoint_meta=meta, dataset=dataset, data_dir=data_dir or meta.get("data_dir"), split=split,
                        n_samples=len(y), subset=n is not None, seed=seed)
    attrs = {**record.attrs(), **result_attrs(result), "checkpoint": os.path.abspath(checkpoint), "checkpoint_sha256": meta.get("sha256"),
             "model": meta.get("model"), "model_options": meta.get("model_options"), "dataset": dataset,
             "data_dir": data_dir or meta.get("data_dir"), "split": split, "batch_size": batch_size,
             "label": meta.get("model"),
             # pair_index / sample indices refer to load_dataset(dataset, split=split, n=n if subset, seed=seed)
             "n_samples": len(y), "subset": n is not None}
    write_inputspace(out, mode=result.mode, arrays=to_arrays(result), attrs=attrs)
    click.echo(out)
