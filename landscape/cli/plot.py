"""``landscape plot`` and ``landscape compare``: figures from stored results of any kind (the registry says which
analysis draws a file)."""

from __future__ import annotations

import click

from landscape.cli._group import main

_KINDS = ["auto", "line", "contour", "contourf", "heatmap", "surface3d"]


def _style_options(f):
    f = click.option("--dpi", type=click.IntRange(min=1), default=150, show_default=True,
                     help="Resolution of raster outputs.")(f)
    f = click.option("--title", default=None, help="Figure title.")(f)
    f = click.option("--levels", type=click.IntRange(min=2), default=20, show_default=True,
                     help="Contour levels (2D surfaces).")(f)
    f = click.option("--vmax", type=float, default=None, help="Upper end of the colour/value scale.")(f)
    f = click.option("--vmin", type=float, default=None, help="Lower end of the colour/value scale.")(f)
    f = click.option("--log", is_flag=True, help="Logarithmic value scale.")(f)
    f = click.option("--metric", type=click.Choice(["loss", "acc"]), default="loss", show_default=True,
                     help="Which stored quantity to draw (surfaces).")(f)
    f = click.option("--kind", type=click.Choice(_KINDS), default="auto", show_default=True,
                     help="Figure type for surfaces (auto: line for 1D; contour lines for one 2D "
                     "file, filled contours side by side for compare).")(f)
    return f


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_style_options
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output figure (.png, .pdf or .svg); default: FILE with the extension .png.")
def plot(file: str, out: str | None, **style) -> None:
    """Draw the result stored in FILE (any analysis's file: surface, Hessian, sharpness, connect, …)."""
    from landscape.analyses import analysis_for_file
    from landscape.core.figure import PlotOptions, default_output

    analysis = analysis_for_file(file)
    out = out or default_output(file)
    analysis.plot(file, out=out, options=PlotOptions(**style))
    click.echo(out)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--labels", default=None, help="Comma-separated legend labels, one per file (default: model names).")
@_style_options
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Output figure (.png, .pdf or .svg).")
def compare(files: tuple[str, ...], labels: str | None, out: str, **style) -> None:
    """Overlay or juxtapose several results of the same kind (e.g. ResNet vs FMMNet)."""
    from landscape.analyses import analysis_for_file
    from landscape.core.figure import PlotOptions
    from landscape.core.store import read_schema
    from landscape.errors import LandscapeError

    kinds = {read_schema(f).split("/")[0] for f in files}
    if len(kinds) > 1:
        raise LandscapeError(f"compare needs results of one kind, got {', '.join(sorted(kinds))}")
    label_list = labels.split(",") if labels else None
    if label_list is not None and len(label_list) != len(files):
        raise LandscapeError(f"--labels has {len(label_list)} entries for {len(files)} files")
    analysis_for_file(files[0]).compare(list(files), labels=label_list, out=out, options=PlotOptions(**style))
    click.echo(out)
