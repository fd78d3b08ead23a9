"""``landscape sharpness``: worst-case, average-case and PAC-Bayes sharpness (plain and adaptive) at a checkpoint,
and with ``--invariance`` which measures survive function-preserving rescalings."""

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

DEFAULT_MEASURES = "worst,worst_adaptive,average,average_adaptive"


@click.command(name="sharpness")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--measures", default=None, metavar="LIST",
              help="Comma-separated: worst, worst_adaptive, average, average_adaptive, pac_bayes, "
                   "pac_bayes_adaptive, or all; with --invariance also lambda_max, trace, surface "
                   f"[default: {DEFAULT_MEASURES}; all with --invariance].")
@click.option("--rho", default="0.05", show_default=True, metavar="LIST",
              help="Radii of the worst-case ball (comma-separated; several draw the rise against ρ).")
@click.option("--sigma", default="0.01", show_default=True, metavar="LIST",
              help="Standard deviations of the average-case Gaussian perturbation (comma-separated).")
@click.option("--norm", type=click.Choice(["l2", "linf"]), default="l2", show_default=True,
              help="Ball of the worst case.")
@click.option("--m", "m", type=click.IntRange(min=1), default=None,
              help="m-sharpness: the worst case per subset of M samples, then averaged (default: all samples).")
@click.option("--steps", type=click.IntRange(min=0), default=20, show_default=True,
              help="Gradient-ascent steps of the worst case.")
@click.option("--step-size", type=click.FloatRange(min=0, min_open=True), default=None,
              help="First ascent step (default ρ); halved after each step that does not improve.")
@click.option("--random-start/--no-random-start", default=True, show_default=True,
              help="Start the ascent at a uniform point of the ball (needed at a minimum, where the gradient is 0).")
@click.option("--xi", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Adaptive scale |w| + ξ (ξ > 0 perturbs zero weights too but breaks exact invariance).")
@click.option("--draws", type=click.IntRange(min=2), default=20, show_default=True,
              help="Gaussian draws per σ of the average case.")
@click.option("--pac-target", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              help="PAC-Bayes: the largest σ whose mean loss rise is at most this.")
@click.option("--pac-draws", type=click.IntRange(min=2), default=10, show_default=True,
              help="PAC-Bayes: Gaussian draws per σ tried (the same draws for every σ).")
@click.option("--pac-steps", type=click.IntRange(min=1), default=20, show_default=True,
              help="PAC-Bayes: bisection steps at most.")
@click.option("--params", default=None, metavar="PATTERN",
              help="Perturb only parameters matching glob patterns (comma-separated), e.g. 'layer3.*,fc'.")
@click.option("--ignore", type=click.Choice(["none", "biasbn"]), default="none", show_default=True,
              help="biasbn: leave biases and normalisation weights (tensors of dim ≤ 1) unperturbed.")
@click.option("--mode", type=click.Choice(["eval", "train"]), default="eval", show_default=True,
              help="Model mode for the loss (train: BN batch statistics; fixed dropout masks).")
@click.option("--invariance", is_flag=True,
              help="Also rescale the model without changing its function and report how much each measure moves.")
@click.option("--alpha", type=float, default=10.0, show_default=True, help="--invariance: the rescaling factor.")
@click.option("--probes", type=click.IntRange(min=4), default=30, show_default=True,
              help="--invariance: Hutch++ HVPs for the Hessian trace.")
@data_options
@seed_option
@device_option
@model_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output HDF5 (default: CHECKPOINT stem + .sharpness.h5, .sharpness-invariance.h5).")
@overwrite_option()
@click.option("--quiet", is_flag=True, help="No progress output.")
def sharpness(checkpoint: str, measures: str | None, rho: str, sigma: str, norm: Literal["l2", "linf"],
              m: int | None, steps: int, step_size: float | None, random_start: bool, xi: float, draws: int,
              pac_target: float, pac_draws: int, pac_steps: int, params: str | None,
              ignore: Literal["none", "biasbn"], mode: Literal["eval", "train"], invariance: bool, alpha: float,
              probes: int, dataset: str | None, data_dir: str | None, split: str, n_samples: int | None,
              batch_size: int, seed: int, device: str, model_name: str | None, model_options: tuple[str, ...],
              out: str | None, overwrite: bool, quiet: bool) -> None:
    """Sharpness of the loss at CHECKPOINT: worst case, average case, PAC-Bayes σ; plain and adaptive."""
    from landscape.analyses.sharpness.result import MEASURES, compute, measure_names, radii
    from landscape.core.checkpoint import load_checkpoint
    from landscape.core.data import load_dataset
    from landscape.core.device import resolve_device
    from landscape.core.options import parse_key_values
    from landscape.errors import LandscapeError

    ctx = click.get_current_context()
    if not invariance:
        for param in ("alpha", "probes"):
            if ctx.get_parameter_source(param) not in (click.core.ParameterSource.DEFAULT, None):
                raise LandscapeError(f"--{param} applies to --invariance only")
        names = measure_names(measures or DEFAULT_MEASURES)
    else:
        from landscape.analyses.sharpness.invariance import OTHER_MEASURES

        names = (measures or "all",)  # checked by the invariance check (it knows mode and the extra measures)
        if measures and measures.strip().lower() != "all":
            measure_names(measures, allowed=(*MEASURES, *OTHER_MEASURES))
    radii(rho, name="rho")
    radii(sigma, name="sigma")
    out = out or output_name(checkpoint, "sharpness", "invariance" if invariance else "")
    claim_output(out, checkpoint, force=overwrite)
    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, model=model_name, model_options=parse_key_values(model_options) or None,
                                  map_location=dev)
    model.to(dev)
    name = checkpoint_dataset(checkpoint, meta, dataset)
    data_dir = data_dir or meta.get("data_dir")
    inputs, targets = load_dataset(name, split=split, n=n_samples, seed=seed, data_dir=data_dir)
    common = dict(rho=rho, sigma=sigma, norm=norm, steps=steps, step_size=step_size, random_start=random_start,
                  xi=xi, draws=draws,
                  pac_target=pac_target, pac_draws=pac_draws, pac_steps=pac_steps, params=params, ignore=ignore,
                  mode=mode, batch_size=batch_size, seed=seed, dataset=name, data_dir=data_dir, split=split,
                  subset=n_samples is not None, checkpoint_meta=meta)
    if invariance:
        from landscape.analyses.sharpness.invariance import check_invariance

        if m is not None:
            raise LandscapeError("--m applies without --invariance only (the check uses all samples)")
        result = check_invariance(model, inputs, targets, alpha=alpha, measures=names[0], probes=probes,
                                  **common)  # type: ignore[arg-type]
    else:
        result = compute(model, inputs, targets, measures=names, m=m, progress=not quiet,
                         **common)  # type: ignore[arg-type]
    result = result.save(out, overwrite=True)  # claim_output checked --overwrite and holds the lock
    for key, value in result.values().items():
        text = f"{value:.6g}" if isinstance(value, float) else " ".join(f"{v:.6g}" for v in value)
        click.echo(f"{key}: {text}")
    if result.invariance is not None:
        inv = result.invariance
        for measure, ok in inv.invariant(0.01).items():
            change = ", ".join(f"{c:.3g}" for c in inv.relative_change()[:, inv.measures.index(measure)])
            click.echo(f"invariance {measure}: relative change {change}{' (invariant)' if ok else ''}")
    click.echo(out)
