"""Options and parameter types shared by several commands (one place for each rule)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def device_option(f: F) -> F:
    return click.option("--device", default="auto", show_default=True,
                        help="auto (CUDA when present), cpu, cuda or cuda:N.")(f)


# torch's generators take seeds in [-2**63, 2**64 - 1] but wrap negative ones onto the top half (-1 is 2**64 - 1,
# two names for one seed) and numpy refuses them; seeds derived as seed + k must not overflow either. So: 0..2**63-1.
SEED = click.IntRange(0, 2**63 - 1)


def seed_option(f: F) -> F:
    return click.option("--seed", type=SEED, default=0, show_default=True,
                        help="Seed for every random choice (0 to 2^63-1).")(f)


def dataset_options(*, split: str = "train", batch_size: int = 128,
                    batch_help: str = "Evaluation batch size.") -> Callable[[F], F]:
    """--dataset, --data-dir, --split, --batch-size, with per-command defaults."""

    def decorate(f: F) -> F:
        f = click.option("--batch-size", type=click.IntRange(min=1), default=batch_size, show_default=True,
                         help=batch_help)(f)
        # One rule, said where it applies: weight-space analyses measure the objective that was minimised (train);
        # input-space and attention analyses look at the function on inputs it never trained on (test).
        why = ("the objective that was minimised" if split == "train"
               else "the function on inputs it never trained on")
        f = click.option("--split", type=click.Choice(["train", "test"]), default=split, show_default=True,
                         help=f"Which split to evaluate on ({split} by default: {why}).")(f)
        f = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                         help="Folder holding CIFAR data (python pickle layout).")(f)
        return click.option("--dataset", default=None,
                            help="digits, cifar10, cifar100 or synthetic (default: the checkpoint's own).")(f)

    return decorate


def data_options(f: F) -> F:
    """The dataset options plus --n-samples, for commands that evaluate a checkpoint on (a subset of) a split."""
    f = click.option("--n-samples", type=click.IntRange(min=1), default=None,
                     help="Use a seeded subset of N samples (default: all).")(f)
    return dataset_options()(f)


def overwrite_option(help: str = "Replace --out if it exists.") -> Callable[[F], F]:
    """``--overwrite`` (the one name every command uses; ``--force`` kept as its old alias), parameter
    ``overwrite``."""

    def decorate(f: F) -> F:
        return click.option("--overwrite", "--force", "overwrite", is_flag=True, help=help)(f)

    return decorate


def output_name(checkpoint: str, kind: str, *variant: str) -> str:
    """The default output of an analysis of ``checkpoint``: ``STEM.KIND[-VARIANT…].h5`` beside it (one rule for
    every command, e.g. ``final.hessian.h5``, ``final.surface-2d-random.h5``, ``final.attention-taylor.h5``)."""
    import os

    tail = "-".join(v for v in variant if v)
    return f"{os.path.splitext(checkpoint)[0]}.{kind}{'-' + tail if tail else ''}.h5"


def model_option(f: F) -> F:
    """--model/--model-option, for loading a plain state dict that carries no metadata."""
    f = click.option("--model-option", "model_options", multiple=True, metavar="KEY=VALUE",
                     help="Model option for --model, e.g. merge=mul or width=2 (repeatable).")(f)
    f = click.option("--model", "model_name", default=None,
                     help="Model name or package.module:callable, for checkpoints that are plain state dicts.")(f)
    return f


def parse_key_values(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``("merge=mul", "width=2")`` -> ``{"merge": "mul", "width": 2}`` (ints, floats, booleans parsed)."""
    from landscape.errors import LandscapeError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise LandscapeError(f"model option '{item}' is not KEY=VALUE, e.g. merge=mul")
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for cast in (int, float):
                try:
                    value = cast(raw)
                    break
                except ValueError:
                    continue
        out[key.strip().replace("-", "_")] = value
    return out


def checkpoint_dataset(checkpoint: str, meta: dict[str, Any], dataset: str | None) -> str:
    """The dataset to evaluate ``checkpoint`` on (``--dataset`` or its own), checked against the model's shape."""
    from landscape.core.data import dataset_info
    from landscape.errors import LandscapeError

    name = dataset or meta.get("dataset")
    if not name:
        raise LandscapeError(f"{checkpoint} does not record its dataset; say which with --dataset")
    info = dataset_info(name)
    own = f" (it was trained on {meta['dataset']})" if meta.get("dataset") and meta["dataset"] != name else ""
    channels, classes = meta.get("in_channels"), meta.get("num_classes")
    if channels is not None and channels != info.in_channels:
        raise LandscapeError(f"{name} has {info.in_channels}-channel images but the model in {checkpoint} takes "
                             f"{channels}{own}; choose a matching --dataset")
    if classes is not None and classes < info.num_classes:
        raise LandscapeError(f"{name} has {info.num_classes} classes but the model in {checkpoint} predicts "
                             f"{classes}{own}; choose a matching --dataset")
    return name


def claim_output(out: str, checkpoint: str, *, force: bool) -> None:
    """Take ``--out`` for the running command: never the checkpoint itself (``--overwrite`` would replace the
    weights with results), held under the output lock until the command ends (one writer per output, from the
    existence check until the file is written), and refused when it exists unless ``--overwrite``."""
    import os

    from landscape.core.fs import output_lock
    from landscape.errors import LandscapeError

    if os.path.realpath(out) == os.path.realpath(checkpoint):
        raise LandscapeError(f"--out {out} is the checkpoint itself; choose another --out")
    click.get_current_context().with_resource(output_lock(out))
    if os.path.exists(out) and not force:
        raise LandscapeError(f"{out} exists; pass --overwrite to replace it or choose another --out")
