"""``landscape info``: what a result file holds (settings, progress, headline numbers).

Each analysis says what is worth printing (its ``summary``, from the registry); files of other kinds or versions
get the generic listing of attributes and datasets.
"""

from __future__ import annotations

import click

from landscape.cli._group import main


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
def info(file: str) -> None:
    """Settings and headline numbers of a result file: progress and flatness of a surface, eigenvalues and trace
    of a Hessian, β of predictiveness, smoothness of input-space curves, attention correlations."""
    from landscape.analyses import ANALYSES
    from landscape.core.store import guard_read, read_schema
    from landscape.core.summary import generic_lines

    schema = read_schema(file)
    analysis = next((a for a in ANALYSES.values() if a.schema == schema and a.summary is not None), None)
    if analysis is None or analysis.summary is None:  # (found only with a summary)
        click.echo(f"{file}: {schema}")
        lines = guard_read(generic_lines)(file)
    else:
        # A file of a known kind is read through its schema: a damaged one is one line, not a traceback.
        lines = guard_read(analysis.summary)(file)
        if lines and not lines[0].startswith(f"{file}: "):
            click.echo(f"{file}: {schema}")
        if analysis.info_lists_datasets:
            lines += guard_read(generic_lines)(file, shown=True)
    for line in lines:
        click.echo(line)
