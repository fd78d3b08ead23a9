"""The paper's figure set, drawn from a study's stored files (never recomputed).

One style for all: the Okabe-Ito colour-blind-safe palette (one colour per model, the same in every figure),
labelled axes with units, points with 95% error bars over seeds instead of bar charts, every automatic choice
(log scale, clipping, zoom) written in the figure itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# One palette, style and log-scale rule for every figure of the package (core/figure.py).
from landscape.core.figure import LOG_SPAN, STYLE
from landscape.core.figure import PALETTE as OKABE_ITO
from landscape.errors import LandscapeError
from landscape.report.collect import Study, read_study
from landscape.report.stats import summarise

FORMATS = ("png", "pdf", "svg")


def colours(study: Study) -> dict[str, str]:
    return {m.label: OKABE_ITO[i % len(OKABE_ITO)] for i, m in enumerate(study.models)}


def _note(ax: Any, text: str) -> None:
    ax.text(0.01, 0.99, text, transform=ax.transAxes, va="top", ha="left", fontsize=7, color="0.3",
            bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1})


def _points(ax: Any, study: Study, metric: str, *, ylabel: str) -> bool:
    """Mean and 95% t interval per model, each seed as a small dot beside it; False if no model has the metric."""
    col = colours(study)
    values = study.values.get(metric, {})
    labels = [m.label for m in study.models if values.get(m.label)]
    if not labels:
        return False
    for i, label in enumerate(labels):
        v = list(values[label].values())
        s = summarise(v)
        ax.scatter(np.full(len(v), i + 0.18), v, s=10, color=col[label], alpha=0.5, linewidths=0)
        err = None if math.isnan(s.ci_low) else [[s.mean - s.ci_low], [s.ci_high - s.mean]]
        ax.errorbar([i], [s.mean], yerr=err, fmt="o", color=col[label], capsize=3, ms=5)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set_ylabel(ylabel)
    return True


def _seed_note(study: Study) -> str:
    return f"mean and 95% t interval over {len(study.seeds)} seed(s); dots: single seeds"


def accuracy(study: Study, plt: Any) -> Any:
    if "accuracy" not in study.values:
        return None
    fig, (tab, ax) = plt.subplots(1, 2, figsize=(9, 0.5 + 0.35 * len(study.models) + 2),
                                  gridspec_kw={"width_ratios": [1.4, 1]}, layout="constrained")
    rows = []
    for m in study.models:
        s = summarise(list(study.values["accuracy"].get(m.label, {}).values()))
        ci = "—" if math.isnan(s.ci_low) else f"[{100 * s.ci_low:.2f}, {100 * s.ci_high:.2f}]"
        sd = "—" if math.isnan(s.std) else f"{100 * s.std:.2f}"
        rows.append([m.label, str(s.n), f"{100 * s.mean:.2f}", sd, ci])
    tab.axis("off")
    table = tab.table(cellText=rows, colLabels=["model", "seeds", "accuracy (%)", "std (%)", "95% CI (%)"],
                      loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.3)
    tab.set_title("Test accuracy at the end of training")
    _points(ax, study, "accuracy", ylabel="test accuracy")
    ax.set_title("points: mean, 95% t interval")
    fig.suptitle(f"Accuracy: {_seed_note(study)}")
    return fig


def _surfaces(study: Study) -> list[tuple[str, int]]:
    """(analysis name, dimensions) of the random-direction surfaces of the study."""
    from landscape.report.collect import _attrs

    found = []
    for a in study.analyses:
        if a["command"] != "surface":
            continue
        for m in study.models:
            for seed in m.runs:
                path = study.result(m, seed, a["name"])
                if path.is_file():
                    attrs = _attrs(path)
                    if attrs.get("direction") == "random":
                        found.append((a["name"], 2 if str(attrs.get("yspec", "null")) not in ("null", "None", "")
                                      else 1))
                    break
            else:
                continue
            break
    return found


def surfaces(study: Study, plt: Any) -> Any:
    """1D curves (mean over seeds, band: min..max) beside the 2D contours of each model (first seed), one
    colour scale shared by all contours (log when the loss spans more than LOG_SPAN, and said so)."""
    from matplotlib.colors import LogNorm, Normalize

    from landscape.analyses.surface.schema import read

    found = _surfaces(study)
    one = [n for n, d in found if d == 1]
    two = [n for n, d in found if d == 2]
    if not found:
        return None
    col = colours(study)
    seed = study.seeds[0]
    twod = [(n, m) for n in two for m in study.models if seed in m.runs and study.result(m, seed, n).is_file()]
    ncols = len(one) + len(twod)
    fig, axes = plt.subplots(1, ncols, figsize=(3.3 * ncols + 0.8, 3.2), layout="constrained", squeeze=False)
    axes = list(axes[0])
    for ax, name in zip(axes, one):
        lows, highs = [], []
        for m in study.models:
            curves = [read(study.result(m, s, name)) for s in m.runs if study.result(m, s, name).is_file()]
            if not curves:
                continue
            loss = np.array([c.loss for c in curves])
            x = curves[0].x
            mean = np.nanmean(loss, axis=0)
            ax.plot(x, mean, color=col[m.label], label=m.label)
            if len(curves) > 1:
                ax.fill_between(x, np.nanmin(loss, axis=0), np.nanmax(loss, axis=0), color=col[m.label], alpha=0.2)
            lows.append(np.nanmin(loss))
            highs.append(np.nanmax(loss))
        lo, hi = min(lows), max(highs)
        scale = "linear"
        if lo > 0 and hi / lo > LOG_SPAN:
            ax.set_yscale("log")
            scale = "log"
        _note(ax, f"{scale} y scale (loss {lo:.3g}..{hi:.3g}, nothing clipped)\nline: mean over seeds; band: "
                  "min..max")
        ax.set_xlabel("α (filter-normalised random direction)")
        ax.set_ylabel("training loss")
        ax.set_title(f"{name}: 1D")
        # Lower right: away from the note (upper left) and, for a basin, below the rising right branch.
        ax.legend(loc="lower right", fontsize=7)
    if twod:
        data = {(n, m.label): read(study.result(m, seed, n)) for n, m in twod}
        allv = np.concatenate([d.loss[np.isfinite(d.loss)].ravel() for d in data.values()])
        lo, hi = float(allv.min()), float(allv.max())
        log = lo > 0 and hi / lo > LOG_SPAN
        norm = LogNorm(lo, hi) if log else Normalize(lo, hi)
        levels = np.geomspace(lo, hi, 21) if log else np.linspace(lo, hi, 21)
        for ax, (n, m) in zip(axes[len(one):], twod):
            d = data[(n, m.label)]
            assert d.y is not None
            cs = ax.contourf(d.x, d.y, np.clip(d.loss.T, lo, hi), levels=levels, norm=norm, cmap="viridis")
            ax.contour(d.x, d.y, np.clip(d.loss.T, lo, hi), levels=levels[::4], colors="white", linewidths=0.4,
                       alpha=0.6)
            ax.plot([0], [0], "+", color="red", ms=8)
            ax.set_title(f"{n}: {m.label} (seed {seed})")
            ax.set_xlabel("α (direction 1)")
            ax.set_ylabel("β (direction 2)")
            ax.set_aspect("equal")
        cbar = fig.colorbar(cs, ax=axes[len(one):], shrink=0.85)
        if log:  # a contourf colour bar on a LogNorm gets no ticks of its own: label the decades
            decades = 10.0 ** np.arange(np.ceil(np.log10(lo)), np.floor(np.log10(hi)) + 1)
            cbar.set_ticks(list(decades), labels=[f"1e{int(np.log10(t))}" for t in decades])
        cbar.set_label(f"training loss ({'log' if log else 'linear'} colour scale)")
        fig.suptitle(f"2D: one {'log' if log else 'linear'} colour scale shared by all contours (loss {lo:.3g}.."
                     f"{hi:.3g}{', chosen because it spans more than ' + format(LOG_SPAN, 'g') + '×' if log else ''}); "
                     "+: the trained weights; directions filter-normalised")
    return fig


def pca(study: Study, plt: Any) -> Any:
    """Loss contours in the PCA plane of each model's trajectory (first seed), zoomed to the path, axes labelled
    with the share of the trajectory's variance each component explains."""
    from matplotlib.colors import LogNorm, Normalize

    from landscape.analyses.surface.schema import read
    from landscape.report.collect import _attrs

    seed = study.seeds[0]
    items = []
    for a in study.analyses:
        for m in study.models:
            path = study.result(m, seed, a["name"]) if seed in m.runs else None
            if a["command"] == "surface" and path is not None and path.is_file() and \
                    _attrs(path).get("direction") == "pca":
                items.append((a["name"], m, read(path)))
    items = [(n, m, d) for n, m, d in items if d.y is not None and bool(d.done.all())]
    if not items:
        return None
    fig, axes = plt.subplots(1, len(items), figsize=(3.4 * len(items) + 0.8, 3.3), layout="constrained",
                             squeeze=False)
    allv = np.concatenate([d.loss[np.isfinite(d.loss)].ravel() for _, _, d in items])
    lo, hi = float(allv.min()), float(allv.max())
    log = lo > 0 and hi / lo > LOG_SPAN
    norm = LogNorm(lo, hi) if log else Normalize(lo, hi)
    for ax, (name, m, d) in zip(axes[0], items):
        assert d.y is not None  # kept only 2D planes above
        cs = ax.contourf(d.x, d.y, np.clip(d.loss.T, lo, hi), levels=20, norm=norm, cmap="viridis")
        ratio = d.attrs.get("pca_explained_variance_ratio", [np.nan, np.nan])
        ratio = np.asarray(json.loads(ratio) if isinstance(ratio, str) else ratio, dtype=float).ravel()
        ratio = np.concatenate([ratio, [np.nan, np.nan]])
        ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f}% of the path's variance)")
        ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f}%)")
        note = f"{'log' if log else 'linear'} colour scale, shared"
        if d.trajectory is not None and len(d.trajectory):
            t = np.asarray(d.trajectory)
            ax.plot(t[:, 0], t[:, 1], "-o", color="white", ms=2.5, lw=1)
            ax.plot(t[-1, 0], t[-1, 1], "*", color="red", ms=9)
            span = np.ptp(t, axis=0).max()
            pad = max(0.25 * span, 1e-3)
            x0, x1 = max(d.x[0], t[:, 0].min() - pad), min(d.x[-1], t[:, 0].max() + pad)
            y0, y1 = max(d.y[0], t[:, 1].min() - pad), min(d.y[-1], t[:, 1].max() + pad)
            if (x1 - x0) < 0.8 * (d.x[-1] - d.x[0]) or (y1 - y0) < 0.8 * (d.y[-1] - d.y[0]):
                ax.set_xlim(x0, x1)
                ax.set_ylim(y0, y1)
                note += "; zoomed to the path"
        _note(ax, note)
        ax.set_title(f"{name}: {m.label} (seed {seed})")
    cbar = fig.colorbar(cs, ax=list(axes[0]), shrink=0.85)
    cbar.set_label("training loss")
    return fig


def hessian(study: Study, plt: Any) -> Any:
    """λmax and trace per model (points, 95% error bars over seeds) and the spectral densities overlaid."""
    from landscape.analyses.hessian.schema import read_hessian

    names = [a["name"] for a in study.analyses if a["command"] == "hessian"]
    if not names:
        return None
    name = names[0]
    metrics = [f"{name}.top_eigenvalue", f"{name}.trace"]
    have = [m for m in metrics if m in study.values]
    densities = []
    seed = study.seeds[0]
    for m in study.models:
        path = study.result(m, seed, name) if seed in m.runs else None
        if path is not None and path.is_file():
            r = read_hessian(path)
            if "density" in r:
                densities.append((m, r))
    ncols = len(have) + (1 if densities else 0)
    if ncols == 0:
        return None
    fig, axes = plt.subplots(1, ncols, figsize=(3.4 * ncols + 0.5, 3.3), layout="constrained", squeeze=False)
    axes = list(axes[0])
    for ax, metric in zip(axes, have):
        _points(ax, study, metric, ylabel="top eigenvalue λmax" if metric.endswith("eigenvalue") else "trace of H")
        ax.set_title("Top Hessian eigenvalue" if metric.endswith("eigenvalue") else "Hessian trace")
    if densities:
        ax = axes[-1]
        col = colours(study)
        top = 0.0
        for m, r in densities:
            d = r["density"]
            grid, values = np.asarray(d["grid"]), np.asarray(d["values"])
            top = max(top, float(values.max()))
            # The Gaussian smoothing leaves a numerical floor (~1e-10 of the peak) far from any eigenvalue: drawn,
            # it reads as a flat spectrum. Only values above 1e-6 of the peak are drawn.
            shown = np.where(values > values.max() * 1e-6, values, np.nan)
            ax.semilogy(grid, shown, color=col[m.label], label=f"{m.label} density")
            if "eigenvalues" in r:
                for i, ev in enumerate(np.atleast_1d(r["eigenvalues"])):
                    ax.axvline(float(ev), color=col[m.label], ls="--", lw=0.8,
                               label=f"{m.label} top eigenvalues (Lanczos)" if i == 0 else None)
        ax.set_ylim(top * 1e-6, top * 3)
        ax.set_xlabel("eigenvalue λ")
        ax.set_ylabel("spectral density (log scale)")
        ax.set_title(f"Spectral density (SLQ, seed {seed})")
        _note(ax, "drawn above 1e-6 of the peak\n(below: the smoothing's floor)")
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=col[m.label], label=m.label) for m, _ in densities]
        handles.append(Line2D([], [], color="0.3", ls="--", lw=0.8, label="top eigenvalues (Lanczos)"))
        ax.legend(handles=handles, loc="upper right", fontsize=7)
    fig.suptitle(f"Hessian: {_seed_note(study)}")
    return fig


def predictiveness(study: Study, plt: Any) -> Any:
    """β per model (points, error bars) and, against the step size η, the loss change and the gradient change
    (median over batches and seeds, band: 25..75%); batches are independent, so they are not joined."""
    from landscape.analyses.predictiveness.schema import read

    names = [a["name"] for a in study.analyses if a["command"] == "predictiveness"]
    if not names:
        return None
    name = names[0]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3), layout="constrained")
    _points(axes[0], study, f"{name}.beta", ylabel="β (effective smoothness)")
    axes[0].set_title("β-smoothness (points: 95% CI)")
    col = colours(study)
    for m in study.models:
        rows = [read(study.result(m, s, name)) for s in m.runs if study.result(m, s, name).is_file()]
        rows = [r for r in rows if len(r.step)]
        if not rows:
            continue
        eta = rows[0].eta
        change = np.concatenate([r.loss - r.train_loss[:, None] for r in rows])
        grad = np.concatenate([r.grad_diff for r in rows])
        for ax, arr in ((axes[1], change), (axes[2], grad)):
            q1, med, q3 = np.nanpercentile(arr, [25, 50, 75], axis=0)
            ax.plot(eta, med, "o-", color=col[m.label], label=m.label, ms=3)
            ax.fill_between(eta, q1, q3, color=col[m.label], alpha=0.2)
    axes[1].set_xlabel("step size η")
    axes[1].set_ylabel("L(W − ηg) − L(W)")
    axes[1].set_title("Loss predictiveness")
    axes[2].set_xlabel("step size η")
    axes[2].set_ylabel("‖∇L(W − ηg) − ∇L(W)‖")
    axes[2].set_title("Gradient predictiveness")
    _note(axes[1], "median over batches and seeds; band: 25..75%")
    axes[2].legend(loc="upper left")
    fig.suptitle(f"Gradient predictiveness at the final weights: {_seed_note(study)}")
    return fig


def between(study: Study, plt: Any) -> Any:
    """Loss along straight paths between two test samples: same-class and different-class pairs apart, on a log
    scale (same-class curves sit near 0 and vanish on a linear one), and the input-Jacobian norm."""
    from landscape.analyses.inputspace.schema import read_inputspace
    from landscape.report.collect import _attrs

    seed = study.seeds[0]
    names = [a["name"] for a in study.analyses if a["command"] == "inputspace" and any(
        seed in m.runs and study.result(m, seed, a["name"]).is_file() and
        _attrs(study.result(m, seed, a["name"])).get("mode") == "between" for m in study.models)]
    if not names:
        return None
    name = names[0]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3), layout="constrained")
    col = colours(study)
    for m in study.models:
        runs = [read_inputspace(study.result(m, s, name))[1] for s in m.runs if study.result(m, s, name).is_file()]
        if not runs:
            continue
        alpha = runs[0]["alpha"]
        for ax, same in ((axes[0], True), (axes[1], False)):
            curves = np.concatenate([r["loss"][np.asarray(r["same_class"], bool) == same] for r in runs])
            if not len(curves):
                continue
            q1, med, q3 = np.percentile(np.maximum(curves, 1e-12), [25, 50, 75], axis=0)
            ax.plot(alpha, med, color=col[m.label], label=f"{m.label} ({len(curves)} pairs)")
            ax.fill_between(alpha, q1, q3, color=col[m.label], alpha=0.2)
    for ax, what in ((axes[0], "same-class"), (axes[1], "different-class")):
        ax.set_yscale("log")
        ax.set_xlabel("α along the path x_i → x_j")
        ax.set_ylabel("loss (log scale)")
        ax.set_title(f"Between {what} test samples")
        _note(ax, "median over pairs and seeds; band: 25..75%")
        ax.legend(loc="lower center")
    _points(axes[2], study, f"{name}.jacobian_norm", ylabel="‖∂f/∂x‖_F at the endpoints")
    fig.suptitle(f"Input space between test samples: {_seed_note(study)}")
    axes[2].set_title("Sensitivity (points: 95% CI)")
    return fig


def noise(study: Study, plt: Any) -> Any:
    """Accuracy against the standard deviation of Gaussian input noise: mean over seeds, band: 95% t interval."""
    from landscape.analyses.inputspace.schema import read_inputspace
    from landscape.report.collect import _attrs

    seed = study.seeds[0]
    names = [a["name"] for a in study.analyses if a["command"] == "inputspace" and any(
        seed in m.runs and study.result(m, seed, a["name"]).is_file() and
        _attrs(study.result(m, seed, a["name"])).get("mode") == "noise" for m in study.models)]
    if not names:
        return None
    name = names[0]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.3), layout="constrained")
    col = colours(study)
    for m in study.models:
        runs = [read_inputspace(study.result(m, s, name))[1] for s in m.runs if study.result(m, s, name).is_file()]
        if not runs:
            continue
        sigma = runs[0]["sigma"]
        acc = np.array([r["acc"].mean(axis=0) for r in runs])
        stats = [summarise(acc[:, k].tolist()) for k in range(acc.shape[1])]
        mean = np.array([s.mean for s in stats])
        axes[0].plot(sigma, mean, "o-", color=col[m.label], label=m.label, ms=3)
        lo, hi = np.array([s.ci_low for s in stats]), np.array([s.ci_high for s in stats])
        if np.isfinite(lo).all():
            axes[0].fill_between(sigma, lo, hi, color=col[m.label], alpha=0.2)
    axes[0].set_xlabel("σ of the Gaussian input noise (input units)")
    axes[0].set_ylabel("test accuracy")
    axes[0].set_title("Noise robustness")
    _note(axes[0], "mean over seeds; band: 95% t interval")
    axes[0].legend(loc="lower left")
    metric = f"{name}.retained" if f"{name}.retained" in study.values else f"{name}.accuracy"
    _points(axes[1], study, metric, ylabel="accuracy retained, mean acc(σ)/acc(0)" if metric.endswith("retained")
            else "accuracy under noise")
    axes[1].set_title("Robustness (points: 95% CI)")
    fig.suptitle(f"Noise robustness: {_seed_note(study)}")
    return fig


def attention(study: Study, plt: Any) -> Any:
    """Per channel, the mean attention weight against its importance (first seed), coloured by module."""
    from landscape.analyses.attention.schema import read_attention

    seed = study.seeds[0]
    panels = []
    for a in (a for a in study.analyses if a["command"] == "attention"):
        for m in study.models:
            if seed in m.runs and study.result(m, seed, a["name"]).is_file():
                panels.append((a["name"], m, *read_attention(study.result(m, seed, a["name"]))))
    if not panels:
        return None
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.0 * nrows), layout="constrained", squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    for ax, (name, m, attrs, modules) in zip(axes.ravel(), panels):
        for i, mod in enumerate(modules):
            ax.scatter(mod["mean_weight"], mod["importance"], s=8, alpha=0.7, color=OKABE_ITO[i % len(OKABE_ITO)],
                       label=mod["name"] if len(modules) <= 6 else None, linewidths=0)
        ax.set_xlabel("mean attention weight of the channel")
        ax.set_ylabel(f"{attrs.get('importance', '')} importance")
        rho = attrs.get("spearman", float("nan"))
        ax.set_title(f"{m.label}, {name} (seed {seed})\npooled Spearman ρ = {float(rho):.2f}")
        if len(modules) <= 6:
            ax.legend(fontsize=6, loc="upper left", markerscale=1.5)
    return fig


def measures(study: Study, plt: Any) -> Any:
    """Every smoothness and robustness measure: one small panel each, points with 95% error bars over seeds;
    the title says whether the measure is invariant to the rescaling symmetries."""
    names = [n for n, m in study.metrics.items() if m.family in ("smoothness", "robustness")]
    if not names:
        return None
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 2.9 * nrows), layout="constrained", squeeze=False)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names):
        m = study.metrics[name]
        _points(ax, study, name, ylabel=name.split(".", 1)[-1].replace("_", " "))
        inv = "invariant" if m.invariant else "NOT invariant"
        ax.set_title(f"{name}\n({m.better} is better; {inv})", fontsize=8)
    fig.suptitle(f"Smoothness and robustness measures: {_seed_note(study)}", fontsize=9)
    return fig


FIGURES: dict[str, Callable[[Study, Any], Any]] = {
    "accuracy": accuracy, "surfaces": surfaces, "pca": pca, "hessian": hessian, "predictiveness": predictiveness,
    "between": between, "noise": noise, "attention": attention, "measures": measures,
}


def draw_figures(folder: str | Path, *, out: str | Path | None = None, fmt: str = "png") -> list[Path]:
    """Draw the figure set of the study in ``folder`` into ``out`` (default ``folder/figures``) as ``fmt``
    (png, pdf or svg); returns the files written. A figure whose data the study lacks is left out."""
    import matplotlib

    from landscape.core.fs import atomic_path, ensure_writable_dir, output_lock

    if fmt not in FORMATS:
        raise LandscapeError(f"fmt={fmt!r} is not one of {', '.join(FORMATS)}")
    study = read_study(folder)
    target = ensure_writable_dir(Path(out) if out is not None else Path(folder) / "figures")
    import matplotlib.pyplot as plt

    written = []
    with matplotlib.rc_context(STYLE):  # type: ignore[arg-type]  # the stubs list every key as a Literal
        for name, draw in FIGURES.items():
            fig = draw(study, plt)
            if fig is None:
                continue
            path = target / f"{name}.{fmt}"
            try:
                # One writer per figure; the lock also sweeps the temp file of a run killed mid-write.
                with output_lock(path), atomic_path(path) as tmp:
                    fig.savefig(tmp, format=fmt)
            finally:
                plt.close(fig)
            written.append(path)
    return written
