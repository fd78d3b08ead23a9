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
    output_name,
    overwrite_option,
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
@click.option("--n-samples", "--samples", "n_samples", type=click.IntRange(min=1), default=100, show_default=True,
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
@overwrite_option()
@click.option("--quiet", is_flag=True, help="No progress bar.")
def inputspace(checkpoint: str, mode: Literal["around", "between", "noise"],
               directions: Literal["random", "gradient"], n_directions: int, radius: str, steps: int, sigma: str,
               n_samples: int, pairs: int, draws: int, dataset: str | None, data_dir: str | None, split: str,
               batch_size: int, seed: int, device: str, model_name: str | None, model_options: tuple[str, ...],
               out: str | None, overwrite: bool, quiet: bool) -> None:
    """Input-space landscape of CHECKPOINT near and between real samples (writes one HDF5 file)."""
    from landscape import load_checkpoint, load_dataset
    from landscape.analyses.inputspace.result import compute
    from landscape.core.device import resolve_device
    from landscape.core.grid import MAX_NUM, parse_axis
    from landscape.core.options import parse_key_values
    from landscape.errors import LandscapeError

    out = out or output_name(checkpoint, "inputspace", mode)
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
    claim_output(out, checkpoint, force=overwrite)
    model, meta = load_checkpoint(checkpoint, model=model_name,
                                  model_options=parse_key_values(model_options) or None)
    model.to(resolve_device(device))
    dataset = checkpoint_dataset(checkpoint, meta, dataset)
    # around takes a subset of 100 by default; between and noise use the whole split unless --n-samples is given.
    src = ctx.get_parameter_source("n_samples")
    n = n_samples if mode == "around" or src == click.core.ParameterSource.COMMANDLINE else None
    data_dir = data_dir or meta.get("data_dir")
    x, y = load_dataset(dataset, split=split, n=n, seed=seed, data_dir=data_dir)
    around, between, noise = mode == "around", mode == "between", mode == "noise"
    result = compute(model, x, y, mode=mode, directions=directions if around else None,
                     n_directions=n_directions if around else None, radius=radii, steps=steps if between else None,
                     pairs=pairs if between else None, sigma=sigmas, draws=draws if noise else None,
                     batch_size=batch_size, seed=seed, dataset=dataset, split=split, data_dir=data_dir,
                     subset=n is not None, checkpoint_meta=meta, progress=False if quiet else None)
    result.save(out, overwrite=True)  # claim_output above checked --overwrite and holds the lock since
    click.echo(out)

