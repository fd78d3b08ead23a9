"""``landscape demo``: the bundled study ``digits_demo`` — ResNet vs FMMNet on digits, end to end."""

from __future__ import annotations

import click

from landscape.cli._group import main


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder [default: runs/demo, or runs/demo-quick with --quick].")
@click.option("--figures", type=click.Path(file_okay=False), default=None,
              help="Also copy the comparison figures here (the README's figures: --figures figures).")
@click.option("--quick", is_flag=True, help="A much smaller version that checks the pipeline in seconds.")
def demo(out: str | None, figures: str | None, quick: bool) -> None:
    """Train resnet8 and fmmnet8 on digits and compare surfaces, curvature, predictiveness and input space.

    The steps are declared in landscape/studies/digits_demo.toml; an interrupted demo resumes.
    """
    from landscape.cli.study import load_study, run_study

    spec = load_study("digits_demo_quick" if quick else "digits_demo")
    if out is not None:  # otherwise the study's own folder: the quick demo must not block the full one
        spec["study"]["out"] = out
    run_study(spec, figures=figures)
