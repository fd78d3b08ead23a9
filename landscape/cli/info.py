"""``landscape info``: what a result file holds (settings, progress, summaries)."""

from __future__ import annotations

import json

import click

from landscape.cli._group import main

_SETTINGS = ("model", "checkpoint", "dataset", "split", "n_samples", "direction", "norm", "ignore", "dir_type",
             "xspec", "yspec", "seed", "bn", "recalibration_samples", "batch_size", "precision_target",
             "min_samples", "target", "trajectory", "eigenvectors", "pca_explained_variance_ratio", "device",
             "library_version", "compute_seconds")


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.4g}" for v in values)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
def info(file: str) -> None:
    """Settings, progress (done/total) and flatness summaries of a surface; attributes and dataset shapes of any
    other result file."""
    import numpy as np

    from landscape.store import read_schema

    schema = read_schema(file)
    if schema.split("/")[0] != "landscape.surface":
        _generic(file, schema)
        return
    from landscape.store.surface import read
    from landscape.surface import flatness

    data = read(file)
    a = data.attrs
    click.echo(f"{file}: {schema}, {data.ndim}D surface, grid {'×'.join(str(n) for n in data.loss.shape)}")
    for key in _SETTINGS:
        if key in a and a[key] not in ("null", None):
            click.echo(f"  {key:<30} {' '.join(str(a[key]).split())}")
    done, total = int(data.done.sum()), data.done.size
    state = "complete" if done == total else "incomplete: run the same command again to resume"
    click.echo(f"  {'progress':<30} {done}/{total} points ({state})")
    if data.n_lacking:
        click.echo(f"  {'damaged points':<30} {data.n_lacking} marked done but lacking values (a write failed); "
                   "run the same command again to recompute them")
    finite = data.loss[data.done & np.isfinite(data.loss)]
    if done:
        diverged = int((data.done & ~np.isfinite(data.loss)).sum())
        span = f"{finite.min():.6g} .. {finite.max():.6g}" if finite.size else "none finite"
        click.echo(f"  {'loss range':<30} {span}" + (f" ({diverged} diverged points)" if diverged else ""))
        n = data.n_evaluated[data.done]
        click.echo(f"  {'samples per point':<30} {int(n.min())} .. {int(n.max())}; stderr of the loss up to "
                   f"{np.nanmax(data.stderr[data.done]):.3g}")
    if done < total:
        return
    flat = flatness(data.x, data.y, data.loss)
    if "note" in flat:
        click.echo(f"  flatness: {flat['note']}")
        return
    click.echo(f"  {'centre loss':<30} {flat['centre_loss']:.6g}")
    for r, mean, mx in zip(flat["radii"], flat["rise_mean"], flat["rise_max"]):
        click.echo(f"  {'loss rise at r=' + format(r, '.3g'):<30} mean {mean:.4g}, max {mx:.4g}")
    if "curvature" in flat:
        what = "curvature (d²L/dα²)" if data.ndim == 1 else "curvature (fit Hessian eigs)"
        click.echo(f"  {what:<30} {_fmt(flat['curvature'])} (quadratic fit within r={flat['fit_radius']:.3g})")


def _generic(file: str, schema: str) -> None:
    from landscape.store._h5 import guard_read

    click.echo(f"{file}: {schema}")
    for line in guard_read(_generic_lines)(file):  # a damaged file is one line, not a traceback
        click.echo(line)


def _generic_lines(file: str) -> list[str]:
    import h5py

    from landscape.store._h5 import open_h5, read_attrs

    lines = []
    with open_h5(file) as f:
        for key, value in sorted(read_attrs(f).items()):
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            lines.append(f"  {key:<30} {' '.join(str(text).split())}")

        def show(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                lines.append(f"  /{name:<29} {obj.shape} {obj.dtype}")

        f.visititems(show)
    return lines
