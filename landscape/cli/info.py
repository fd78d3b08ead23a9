"""``landscape info``: what a result file holds (settings, progress, headline numbers)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from landscape.cli._group import main

_SETTINGS = ("model", "checkpoint", "dataset", "split", "n_samples", "direction", "norm", "ignore", "dir_type",
             "xspec", "yspec", "seed", "bn", "recalibration_samples", "batch_size", "precision_target",
             "min_samples", "target", "trajectory", "eigenvectors", "pca_explained_variance_ratio", "device",
             "library_version", "compute_seconds")
# Provenance first, in this order, for the other kinds; their remaining attributes follow alphabetically.
_PROVENANCE = ("model", "model_options", "label", "checkpoint", "checkpoint_sha256", "checkpoint_step",
               "checkpoint_epoch", "dataset", "data_dir", "split", "n_samples", "subset", "seed", "device", "source",
               "mode")
_CORRELATIONS = ("spearman", "spearman_p", "kendall", "kendall_p")


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.4g}" for v in values)


def _row(name: str, text: str) -> str:
    return f"  {name:<30} {text}"


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
def info(file: str) -> None:
    """Settings and headline numbers of a result file: progress and flatness of a surface, eigenvalues and trace
    of a Hessian, β of predictiveness, smoothness of input-space curves, attention correlations."""
    import numpy as np

    from landscape.store import read_schema

    schema = read_schema(file)
    if schema.split("/")[0] != "landscape.surface":
        _other(file, schema)
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


def _other(file: str, schema: str) -> None:
    from landscape.store._h5 import guard_read

    click.echo(f"{file}: {schema}")
    summary = _SUMMARIES.get(schema)
    if summary is not None:
        # A file of a known kind is read through its store: a damaged one is one line, not a traceback.
        for line in guard_read(summary)(file):
            click.echo(line)
    for line in guard_read(_generic_lines)(file, shown=summary is not None):
        click.echo(line)


def _settings(attrs: dict[str, Any], *, skip: tuple[str, ...] = ()) -> list[str]:
    """The root attributes, provenance first; ``skip`` names those the summary prints as headline numbers."""
    keys = [k for k in _PROVENANCE if k in attrs]
    keys += sorted(k for k in attrs if k not in _PROVENANCE and k not in skip and k != "schema")
    lines = []
    for key in keys:
        value = attrs[key]
        if value is None or (isinstance(value, str) and value == "null"):
            continue
        if isinstance(value, float):
            value = float(f"{value:.6g}")  # timings and the like: six digits say enough
        text = value if isinstance(value, str) else json.dumps(
            value.tolist() if hasattr(value, "tolist") else value, default=str)
        lines.append(_row(key, " ".join(str(text).split())))
    return lines


def _hessian(file: str) -> list[str]:
    import numpy as np

    from landscape.store.hessian import read_hessian

    r = read_hessian(file)
    lines = _settings(r["attrs"])
    if "eigenvalues" in r:
        which = r["attrs"].get("which", "LA")
        residuals = r.get("residuals", np.full(len(r["eigenvalues"]), np.nan))
        for i, (ev, res) in enumerate(zip(r["eigenvalues"], residuals), 1):
            lines.append(_row(f"eigenvalue {i} ({which})", f"{ev:.8g} (residual ‖Hv − λv‖ {res:.3g})"))
    if "trace" in r:
        lines.append(_row("trace", f"{r['trace']:.8g} ± {r['trace_stderr']:.3g} (stderr)"))
    if "density" in r:
        d = r["density"]
        nodes, weights = np.asarray(d["nodes"]), np.asarray(d["weights"])
        total = float(weights.sum())  # 1 for a complete SLQ run; the masses below are fractions of it
        top = float(np.abs(nodes).max())
        negative = float(weights[nodes < 0].sum()) / total
        near_zero = float(weights[np.abs(nodes) <= 1e-2 * top].sum()) / total
        lines.append(_row("density support", f"{nodes.min():.8g} .. {nodes.max():.8g} (Ritz values, "
                                             f"{nodes.shape[0]} vector(s) × {nodes.shape[-1]} steps)"))
        lines.append(_row("density mass", f"negative {negative:.6g}; near zero {near_zero:.6g} (|λ| ≤ 0.01·max|λ|); "
                                          f"∫ density {np.trapezoid(d['values'], d['grid']):.6g}"))
    if "per_layer" in r:
        lines.append(_row("per layer", f"{'top eigenvalue':>16} {'trace':>16} ± stderr"))
        for name, values in r["per_layer"].items():
            top_ev = float(np.atleast_1d(values["eigenvalues"])[0]) if np.size(values["eigenvalues"]) else np.nan
            se = float(values["trace_stderr"]) if "trace_stderr" in values else float("nan")
            lines.append(f"    {name:<28} {top_ev:>16.8g} {float(values['trace']):>16.8g} ± {se:.3g}")
    return lines


def _predictiveness(file: str) -> list[str]:
    import numpy as np

    from landscape.store.predictiveness import read

    data = read(file)
    lines = _settings(data.attrs)
    axis = data.attrs.get("x_axis", "step")
    if len(data.step) == 0:
        return [*lines, _row("probes", "none yet (no probe has run)")]
    lines.append(_row("probes", f"{len(data.step)}, {axis} {int(data.step[0])} .. {int(data.step[-1])}"))
    beta = data.beta
    finite = beta[np.isfinite(beta)]
    text = (f"final {beta[-1]:.6g}, median {np.median(finite):.6g}, max {finite.max():.6g}" if finite.size
            else "undefined (every gradient was zero)")
    sizes = np.asarray(data.attrs.get("batch_sizes", []), dtype=np.float64).reshape(-1)
    if finite.size and sizes.size == beta.size and np.isfinite(beta).all():
        text += f"; batch-weighted mean {np.average(beta, weights=sizes):.6g}"
    lines.append(_row("β (effective smoothness)", text))
    lines.append(_row("loss L(W) at the probes", f"{data.train_loss.min():.6g} .. {data.train_loss.max():.6g}"))
    lines.append(_row("‖g‖ at the probes", f"{data.grad_norm.min():.6g} .. {data.grad_norm.max():.6g}"))
    change = data.loss - data.train_loss[:, None]
    lines.append(_row("per η", "loss change L(W − ηg) − L(W) min .. max; ‖∇L(W − ηg) − g‖ min .. max"))
    for e, eta in enumerate(data.eta):
        lines.append(f"    η={eta:<26.6g} ΔL {change[:, e].min():.6g} .. {change[:, e].max():.6g}; "
                     f"grad-diff {data.grad_diff[:, e].min():.6g} .. {data.grad_diff[:, e].max():.6g}")
    return lines


def _stat_line(name: str, values: Any, what: str) -> str:
    import numpy as np

    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if not v.size:
        return _row(name, f"none finite (over {what})")
    return _row(name, f"mean {v.mean():.6g}, max {v.max():.6g} (over {v.size} {what})")


def _inputspace(file: str) -> list[str]:
    import numpy as np

    from landscape.store.inputspace import read_inputspace

    attrs, arrays = read_inputspace(file)
    lines = _settings(attrs)
    mode = attrs["mode"]
    if mode == "noise":
        acc, loss = arrays["acc"], arrays["loss"]
        lines.append(_row("noise robustness", f"accuracy and loss, mean over {acc.shape[0]} draw(s)"))
        for k, sigma in enumerate(arrays["sigma"]):
            lines.append(f"    σ={sigma:<26.6g} accuracy {acc[:, k].mean():.6g} (min {acc[:, k].min():.6g}), "
                         f"loss {loss[:, k].mean():.6g}")
        return lines
    grid = arrays["radius" if mode == "around" else "alpha"]
    what = "curves" if mode == "around" else "pairs"
    lines.append(_row(f"{'radius' if mode == 'around' else 'α'} grid",
                      f"{grid[0]:.6g} .. {grid[-1]:.6g}, {grid.size} points"))
    stats = ["total_variation", "max_second_diff", "lipschitz", "flips"]
    if mode == "between":
        stats.append("chord_deviation")
        same = np.asarray(arrays["same_class"], dtype=bool)
        lines.append(_row("pairs", f"{same.size} ({int(same.sum())} same class)"))
    for stat in stats:
        lines.append(_stat_line(stat, arrays[stat], what))
    if "jacobian_norm" in arrays:
        lines.append(_stat_line("jacobian_norm ‖∂f/∂x‖_F", arrays["jacobian_norm"],
                                "samples" if mode == "around" else "endpoints"))
    return lines


def _correlation(values: dict[str, Any], prefix: str = "") -> str:
    v = [float(values[prefix + k]) for k in _CORRELATIONS]
    return f"Spearman ρ {v[0]:.6g} (p {v[1]:.3g}), Kendall τ {v[2]:.6g} (p {v[3]:.3g})"


def _attention(file: str) -> list[str]:
    from landscape.store.attention import read_attention

    attrs, modules = read_attention(file)
    lines = _settings(attrs, skip=(*_CORRELATIONS, *("within_" + k for k in _CORRELATIONS)))
    lines.append(_row("per module", "weight vs importance (kind, channels)"))
    for m in modules:
        lines.append(f"    {m['name']:<28} {_correlation(m)} ({m['kind']}, {len(m['importance'])} channels)")
    lines.append(_row("pooled", _correlation(attrs)))
    if "within_spearman" in attrs:
        lines.append(_row("pooled_within (module ranks)", _correlation(attrs, "within_")))
    return lines


_SUMMARIES: dict[str, Callable[[str], list[str]]] = {
    "landscape.hessian/1": _hessian,
    "landscape.predictiveness/1": _predictiveness,
    "landscape.inputspace/1": _inputspace,
    "landscape.attention/1": _attention,
}


def _generic_lines(file: str, *, shown: bool = False) -> list[str]:
    """Dataset shapes (groups of groups, such as ``per_layer``, as a count); and the attributes too when no summary
    printed them (an unknown kind or version)."""
    import h5py

    from landscape.store._h5 import open_h5, read_attrs

    with open_h5(file) as f:
        lines = [] if shown else _settings(read_attrs(f))
        lines.append("  datasets:")
        for name, obj in f.items():
            if isinstance(obj, h5py.Dataset):
                lines.append(f"  /{name:<29} {obj.shape} {obj.dtype}")
            elif all(isinstance(child, h5py.Dataset) for child in obj.values()):
                lines += [f"  /{name + '/' + key:<29} {child.shape} {child.dtype}" for key, child in obj.items()]
            else:
                lines.append(f"  /{name + '/':<29} {len(obj)} groups")
    return lines
