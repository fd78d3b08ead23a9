"""``landscape report DIR``: statistics over seeds and the paper's claims with verdicts, from a study's files."""

from __future__ import annotations

import click

from landscape.cli._group import main


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
def report(folder: str) -> None:
    """Write FOLDER/report.md and report.json from the stored results of the study in FOLDER, and print the
    verdicts (supported / not supported / inconclusive, each with its rule in the report)."""
    from landscape.report import verdict_table, write_report

    md, js = write_report(folder)
    click.echo(verdict_table(folder))
    click.echo(f"report: {md} (and {js.name})")
