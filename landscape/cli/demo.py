"""``landscape demo``: the bundled study ``digits_demo`` — the paper's claims tested at toy scale on digits."""

from __future__ import annotations

import click

from landscape.cli._group import main


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder [default: runs/demo, or runs/demo-quick with --quick].")
@click.option("--figures", type=click.Path(file_okay=False), default=None,
              help="Also copy the per-analysis comparison figures here (the figure set is in OUT/figures).")
@click.option("--quick", is_flag=True, help="A much smaller version that checks the pipeline in seconds.")
def demo(out: str | None, figures: str | None, quick: bool) -> None:
    """Train ResNet-8, FMMNet-8 and SE-ResNet-8 (× and + attention) on digits with 3 seeds, run every analysis,
    and print the verdict on each of the paper's claims (about 10 minutes on 2 CPU cores).

    The steps are declared in landscape/studies/digits_demo.toml; an interrupted demo resumes. The report
    (OUT/report.md) and the figure set (OUT/figures/) are written at the end.
    """
    from landscape.cli import study

    spec = study.load_study("digits_demo_quick" if quick else "digits_demo")
    if out is not None:  # otherwise the study's own folder: the quick demo must not block the full one
        spec["study"]["out"] = out
    study.run_study(spec, figures=figures)
