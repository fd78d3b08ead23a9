"""``landscape figures DIR``: the paper's figure set from a study's stored results."""

from __future__ import annotations

import click

from landscape.cli._group import main


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for the figures [default: FOLDER/figures].")
@click.option("--format", "fmt", type=click.Choice(["png", "pdf", "svg"]), default="png", show_default=True)
def figures(folder: str, out: str | None, fmt: str) -> None:
    """Draw accuracy, surfaces, PCA, Hessian, predictiveness, input-space, noise and attention figures of the
    study in FOLDER (every seed; error bars are 95% t intervals)."""
    from landscape.report import draw_figures

    for path in draw_figures(folder, out=out, fmt=fmt):
        click.echo(str(path))
