"""``landscape demo``: ResNet vs FMMNet on the bundled digits, end to end."""

from __future__ import annotations

import click

from landscape.cli._group import main


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True, help="Output folder.")
@click.option("--epochs", type=click.IntRange(min=1), default=15, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quick", is_flag=True, help="A smaller, faster version (for tests).")
def demo(out: str, epochs: int, seed: int, quick: bool) -> None:
    """Train resnet8 and fmmnet8 on digits and compare them (accuracy, loss surfaces, curvature)."""
    from landscape.demo import run_demo

    run_demo(out, epochs=epochs, seed=seed, quick=quick, echo=click.echo)
