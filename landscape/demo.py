"""The end-to-end demo: ResNet vs FMMNet on the bundled digits images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from landscape.data import dataset_info, load_dataset
from landscape.training import seeded_model, train

MODELS = ("resnet8", "fmmnet8")


def run_demo(out: str | Path, *, epochs: int = 15, seed: int = 0, quick: bool = False,
             echo: Callable[[str], Any] = print) -> dict[str, Any]:
    """Train both models on digits (resuming finished work), then compare; returns what was measured."""
    out = Path(out)
    info = dataset_info("digits")
    train_data, test_data = load_dataset("digits"), load_dataset("digits", split="test")
    if quick:
        epochs = min(epochs, 3)
    results: dict[str, Any] = {}
    for name in MODELS:
        run_dir = out / name
        net = seeded_model(name, num_classes=info.num_classes, in_channels=info.in_channels, seed=seed)
        echo(f"[demo] training {name} on digits for {epochs} epochs -> {run_dir}")
        res = train(net, train_data, test_data, epochs=epochs, batch_size=64, lr=0.05, seed=seed,
                    out_dir=run_dir, resume=True, meta={"dataset": "digits", "data_dir": None})
        results[name] = {"checkpoint": str(res.final_checkpoint), **res.metrics[-1]}
    echo(f"{'model':<10}{'train loss':>12}{'test loss':>12}{'test acc':>10}")
    for name in MODELS:
        r = results[name]
        echo(f"{name:<10}{r['train_loss']:>12.4f}{r['test_loss']:>12.4f}{r['test_acc']:>10.4f}")
    return results
