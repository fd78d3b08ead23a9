"""``landscape models``: the registered models with their parameter counts."""

from __future__ import annotations

import click

from landscape.cli._group import main


@main.command()
@click.option("--num-classes", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--in-channels", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--filter", "pattern", default=None, help="Only names containing this text.")
def models(num_classes: int, in_channels: int, pattern: str | None) -> None:
    """List every registered model and its number of parameters."""
    import torch

    from landscape.models import build_model, count_parameters, list_models

    click.echo(f"{'model':<22}{'parameters':>12}  merge  attention")
    for name in list_models():
        if pattern and pattern not in name:
            continue
        # Build on the meta device: shapes only, no memory, so even resnet34 lists instantly.
        with torch.device("meta"):
            net = build_model(name, num_classes=num_classes, in_channels=in_channels)
        # Models without residual blocks (the MLP) have no merge or attention to show.
        block = next((m for m in net.modules() if hasattr(m, "merge") and hasattr(m, "shortcut")), None)
        attention = getattr(block, "attention", None)
        att = type(attention).__name__ if attention is not None else "-"
        merge = getattr(block, "merge", None) or "-"
        click.echo(f"{name:<22}{count_parameters(net):>12,}  {merge:<5}  {att}")
