"""What a study folder holds, read from its stored files only: the models, their seeds, and every metric.

Each metric is one number per (model, seed), read from that unit's files: ``metrics.csv`` of the training run
(test accuracy and loss) and the HDF5 result of each analysis. Nothing is recomputed: editing a stored value
changes the report. Every metric carries its meaning, which direction is better, and whether it is invariant to the
networks' rescaling symmetries (the functions a network computes do not change when a filter before a BatchNorm,
or one ReLU layer against the next, is scaled; a measure that changes under them can be moved without changing
the model).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landscape.errors import LandscapeError

INVARIANT_FUNCTION = "invariant: a property of the function x -> f(x) alone, whatever its weights"
INVARIANT_FILTER = ("invariant: the directions are filter-normalised (each filter's direction scaled to that filter's "
                    "norm, bias/BN left out), so scaling a filter before a BatchNorm, or a ReLU layer by a and the "
                    "next by 1/a, scales the directions with it and leaves the curve unchanged (Li et al. 2018)")
NOT_INVARIANT_CURV = ("not invariant: scaling the weights of a filter before a BatchNorm by a leaves the function "
                      "unchanged but divides the Hessian of those weights by a^2 (Dinh et al. 2017)")
NOT_INVARIANT_STEP = ("not invariant: it measures steps of the raw weights along the gradient, and a rescaling that "
                      "keeps the function changes both the gradient and the effect of a step")


@dataclass(frozen=True)
class Metric:
    """A scalar measure: ``better`` is ``lower``, ``higher`` or None (no direction: a correlation)."""

    name: str
    description: str
    better: str | None
    invariant: bool | None
    invariance: str
    family: str  # accuracy, smoothness, robustness, attention


@dataclass
class Model:
    """One model variant of the study: its label, registry name, options, and the run folder of each seed."""

    label: str
    model: str
    options: list[str]
    runs: dict[int, Path]
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Study:
    """Everything the report and figures read: models, metric definitions, values[metric][label][seed]."""

    folder: Path
    models: list[Model]
    analyses: list[dict[str, Any]]
    metrics: dict[str, Metric] = field(default_factory=dict)
    values: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, metric: Metric, label: str, seed: int, value: float) -> None:
        self.metrics.setdefault(metric.name, metric)
        self.values.setdefault(metric.name, {}).setdefault(label, {})[seed] = float(value)

    @property
    def seeds(self) -> list[int]:
        return sorted({s for m in self.models for s in m.runs})

    def result(self, model: Model, seed: int, name: str) -> Path:
        return model.runs[seed] / "results" / f"{name}.h5"


_NAME = re.compile(r"(?P<att>se_|cbam_)?(?P<fam>resnet|fmmnet)(?P<depth>\d+)(?P<noshort>_noshort)?")


def model_config(model: str, options: list[str]) -> dict[str, Any]:
    """The architecture a built-in model name and its options stand for: depth, residual merge, attention kind
    and attention merge (what the paired comparisons match on); other models are known by name only."""
    m = _NAME.fullmatch(model)
    if m is None:
        config: dict[str, Any] = {"model": model}
    else:
        config = {"depth": int(m["depth"]), "merge": "none" if m["noshort"] else
                  ("mul" if m["fam"] == "fmmnet" else "add"), "attention": (m["att"] or "").rstrip("_") or None}
    for item in options:
        key, _, value = str(item).partition("=")
        config[key.strip()] = value.strip()
    if config.get("attention"):
        config.setdefault("attention_merge", "mul")
    else:
        config.pop("attention_merge", None)
    return config


def read_study(folder: str | Path) -> Study:
    """The models and metrics of the study in ``folder`` (its ``manifest.json``, or its run folders)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LandscapeError(f"{folder} is not a folder; give the output folder of a study (its [study] out)")
    manifest = folder / "manifest.json"
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
            models = [Model(m["label"], m["model"], list(m.get("model_options") or []),
                            {int(s): folder / p for s, p in m["runs"].items()}) for m in data["models"]]
            analyses = [{"name": a["name"], "command": a["command"], "options": a.get("options", {})}
                        for a in data.get("analyses") or []]
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise LandscapeError(f"{manifest} is damaged ({type(exc).__name__}); run the study again to rewrite "
                                 "it") from None
    else:
        models, analyses = _discover(folder)
    if not models:
        raise LandscapeError(f"{folder} holds no study (no manifest.json and no run folder with final.pt); give "
                             "the output folder of landscape study")
    for m in models:
        m.config = model_config(m.model, m.options)
    study = Study(folder, models, analyses)
    for m in models:
        for seed, run in sorted(m.runs.items()):
            _read_unit(study, m, seed, run)
    return study


def _discover(folder: Path) -> tuple[list[Model], list[dict[str, Any]]]:
    """Models and analyses of a study folder without a manifest (written before seeds existed)."""
    models = []
    names: dict[str, str] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "figures"):
        runs = {int(p.name[5:]): p for p in sub.glob("seed-*") if (p / "final.pt").is_file() and
                p.name[5:].isdigit()}
        if not runs and (sub / "final.pt").is_file():
            runs = {0: sub}
        if not runs:
            continue
        model, options = sub.name, []
        for run in runs.values():
            for h5 in sorted((run / "results").glob("*.h5")):
                attrs = _attrs(h5)
                if "model" in attrs:
                    model = str(attrs["model"])
                    opts = attrs.get("model_options", "{}")
                    try:
                        parsed = json.loads(opts) if isinstance(opts, str) else {}
                    except ValueError:
                        parsed = {}
                    options = [f"{k}={v}" for k, v in parsed.items()]
                names.setdefault(h5.stem, _command_of(h5))
        models.append(Model(sub.name, model, options, runs))
    return models, [{"name": n, "command": c, "options": {}} for n, c in names.items() if c]


def _attrs(path: Path) -> dict[str, Any]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except OSError:
        return {}


def _command_of(path: Path) -> str:
    from landscape.analyses import analysis_for_schema

    schema = _attrs(path).get("schema")
    try:
        return analysis_for_schema(str(schema)).name if schema else ""
    except LandscapeError:
        return ""


def _read_unit(study: Study, model: Model, seed: int, run: Path) -> None:
    metrics = run / "metrics.csv"
    if metrics.is_file():
        with metrics.open() as f:
            rows = list(csv.DictReader(f))
        if rows:
            study.files.append(str(metrics.relative_to(study.folder)))
            last = rows[-1]
            study.add(Metric("accuracy", "test accuracy at the end of training (metrics.csv)", "higher", True,
                             INVARIANT_FUNCTION, "accuracy"), model.label, seed, float(last["test_acc"]))
            study.add(Metric("test_loss", "test loss at the end of training (metrics.csv)", "lower", True,
                             INVARIANT_FUNCTION, "accuracy"), model.label, seed, float(last["test_loss"]))
    for analysis in study.analyses:
        path = study.result(model, seed, analysis["name"])
        reader = _READERS.get(analysis["command"], _generic)
        if analysis["command"] == "evaluate" or not path.is_file():
            continue
        try:
            found = reader(path, analysis["name"])
        except LandscapeError as exc:
            study.notes.append(f"{path.relative_to(study.folder)} left out: {exc}")
            continue
        study.files.append(str(path.relative_to(study.folder)))
        for metric, value in found:
            study.add(metric, model.label, seed, value)


Found = list[tuple[Metric, float]]


def _surface(path: Path, name: str) -> Found:
    from landscape.analyses.surface.compute import flatness
    from landscape.analyses.surface.schema import read

    data = read(path)
    a = data.attrs
    if not bool(data.done.all()) or a.get("direction") != "random":
        return []  # PCA, target and eigen planes are drawn, not compared: their axes differ between models
    flat = flatness(data.x, data.y, data.loss)
    if "curvature" not in flat or len(flat["rise_mean"]) < 3:
        return []
    invariant = a.get("norm") == "filter"
    why = INVARIANT_FILTER if invariant else (f"not invariant: directions normalised by {a.get('norm')!r}, not per "
                                             "filter, so a rescaled filter moves the curve")
    dims = f"{data.ndim}D"
    return [
        (Metric(f"{name}.curvature", f"{dims} filter-normalised random-direction surface: largest curvature of a "
                f"quadratic fit at the centre", "lower", invariant, why, "smoothness"), max(flat["curvature"])),
        (Metric(f"{name}.rise", f"{dims} surface: mean loss rise at half the grid's radius ({flat['radii'][2]:.3g})",
                "lower", invariant, why, "smoothness"), flat["rise_mean"][2]),
    ]


def _hessian(path: Path, name: str) -> Found:
    from landscape.analyses.hessian.schema import read_hessian

    r = read_hessian(path)
    out: Found = []
    if "eigenvalues" in r and len(r["eigenvalues"]) and r["attrs"].get("which", "LA") == "LA":
        out.append((Metric(f"{name}.top_eigenvalue", "top eigenvalue λmax of the loss Hessian", "lower", False,
                           NOT_INVARIANT_CURV, "smoothness"), float(np.max(r["eigenvalues"]))))
    if "trace" in r:
        out.append((Metric(f"{name}.trace", "trace of the loss Hessian (Hutch++ estimate)", "lower", False,
                           NOT_INVARIANT_CURV, "smoothness"), r["trace"]))
    return out


def _predictiveness(path: Path, name: str) -> Found:
    from landscape.analyses.predictiveness.schema import read

    d = read(path)
    if len(d.step) == 0:
        return []
    sizes = np.asarray(d.attrs.get("batch_sizes", []), dtype=np.float64).reshape(-1)
    weights = sizes if sizes.size == d.beta.size else None
    finite = np.isfinite(d.beta)
    beta = float(np.average(d.beta[finite], weights=None if weights is None else weights[finite])) \
        if finite.any() else math.nan
    return [
        (Metric(f"{name}.beta", "effective β-smoothness: max over η of ‖∇L(W−ηg) − g‖ / ‖ηg‖, mean over batches",
                "lower", False, NOT_INVARIANT_STEP, "smoothness"), beta),
        (Metric(f"{name}.grad_change", "gradient predictiveness: max over η of ‖∇L(W−ηg) − g‖, mean over batches",
                "lower", False, NOT_INVARIANT_STEP, "smoothness"), float(np.mean(np.max(d.grad_diff, axis=1)))),
        (Metric(f"{name}.loss_range", "loss predictiveness: range over η of L(W−ηg), mean over batches", "lower",
                False, NOT_INVARIANT_STEP, "smoothness"), float(np.mean(np.ptp(d.loss, axis=1)))),
    ]


_INPUT_STATS = {
    "total_variation": "total variation of the loss along the path, mean",
    "max_second_diff": "largest second difference of the loss along the path (kinks), mean",
    "chord_deviation": "deviation of the loss from the straight chord between the samples, mean",
    "flips": "prediction changes along the path, mean",
    "lipschitz": "largest loss slope along the path, mean",
}


def _inputspace(path: Path, name: str) -> Found:
    from landscape.analyses.inputspace.schema import read_inputspace

    attrs, arrays = read_inputspace(path)
    mode = attrs["mode"]
    if mode == "noise":
        acc, sigma = np.asarray(arrays["acc"], dtype=np.float64), np.asarray(arrays["sigma"], dtype=np.float64)
        mean = acc.mean(axis=0)
        noisy = sigma > 0
        if not noisy.any():
            return []
        out: Found = [(Metric(f"{name}.accuracy", "accuracy under Gaussian input noise, mean over the σ > 0 grid",
                              "higher", True, INVARIANT_FUNCTION, "robustness"), float(mean[noisy].mean()))]
        if sigma[0] == 0 and mean[0] > 0:
            out.append((Metric(f"{name}.retained", "accuracy retained under input noise: mean over σ > 0 of "
                               "acc(σ)/acc(0)", "higher", True, INVARIANT_FUNCTION, "robustness"),
                        float(mean[noisy].mean() / mean[0])))
        return out
    where = "between pairs of test samples" if mode == "between" else "around test samples"
    out = []
    for stat, text in _INPUT_STATS.items():
        if stat in arrays:
            out.append((Metric(f"{name}.{stat}", f"input space {where}: {text}", "lower", True, INVARIANT_FUNCTION,
                               "smoothness"), float(np.nanmean(arrays[stat]))))
    if "jacobian_norm" in arrays:
        out.append((Metric(f"{name}.jacobian_norm", f"sensitivity: input-Jacobian norm ‖∂f/∂x‖_F {where}, mean",
                           "lower", True, INVARIANT_FUNCTION, "smoothness"), float(np.nanmean(arrays["jacobian_norm"]))))
    return out


def _attention(path: Path, name: str) -> Found:
    from landscape.analyses.attention.schema import read_attention

    attrs, _modules = read_attention(path)
    kind = attrs.get("importance", "?")
    out: Found = []
    for key, text in (("spearman", "Spearman ρ"), ("kendall", "Kendall τ"), ("within_spearman",
                                                                               "Spearman ρ of within-module ranks")):
        if key in attrs:
            out.append((Metric(f"{name}.{key}", f"attention weight vs {kind} importance, pooled over modules: {text}",
                               None, None, "not a smoothness measure", "attention"), float(attrs[key])))
    return out


def _generic(path: Path, name: str) -> Found:
    """An analysis the report does not know by name (e.g. sharpness): its scalar datasets, each a metric."""
    import h5py

    out: Found = []
    with h5py.File(path, "r") as f:
        for key in sorted(f.keys()):
            ds = f[key]
            if isinstance(ds, h5py.Dataset) and ds.shape == () and np.issubdtype(ds.dtype, np.number):
                invariant = any(w in key for w in ("adaptive", "magnitude", "invariant"))
                higher = "sigma" in key or "flatness" in key
                why = ("invariant: measured in weight-scaled coordinates (|w|), which rescale with the weights"
                       if invariant else "not invariant: measured in raw weight coordinates")
                out.append((Metric(f"{name}.{key}", f"{name}: {key} (stored scalar)", "higher" if higher else "lower",
                                   invariant, why, "smoothness"), float(ds[()])))
    return out


def _sharpness(path: Path, name: str) -> Found:
    """Each sharpness measure at its first radius ρ / standard deviation σ; PAC-Bayes: the largest σ (flatter is
    larger). The adaptive ones (perturbations scaled elementwise by |w|) are invariant to the rescalings."""
    import h5py

    out: Found = []
    with h5py.File(path, "r") as f:
        xi = float(f.attrs.get("xi", 0.0))
        rho = f["rho"][()] if "rho" in f else np.array([np.nan])
        sigma = f["sigma"][()] if "sigma" in f else np.array([np.nan])
        for measure in ("worst", "worst_adaptive", "average", "average_adaptive", "pac_bayes", "pac_bayes_adaptive"):
            if measure not in f:
                continue
            g = f[measure]
            adaptive = measure.endswith("adaptive")
            why = ("invariant: the perturbation is scaled elementwise by |w|, so it rescales with the weights "
                   "(Kwon et al. 2021)" + (f"; approximately, since xi={xi:g} > 0" if xi > 0 else "")) if adaptive \
                else "not invariant: a ball or Gaussian of fixed size in raw weight coordinates"
            if measure.startswith("pac_bayes"):
                out.append((Metric(f"{name}.{measure}", f"PAC-Bayes flatness{' (adaptive)' if adaptive else ''}: the "
                                   "largest σ whose Gaussian perturbation raises the loss by at most the target",
                                   "higher", adaptive, why, "smoothness"), float(g["sigma"][()])))
            else:
                kind, at = ("worst-case", f"ρ = {float(rho[0]):g}") if measure.startswith("worst") else \
                    ("average-case", f"σ = {float(sigma[0]):g}")
                out.append((Metric(f"{name}.{measure}", f"{kind} sharpness{' (adaptive)' if adaptive else ''} at "
                                   f"{at}: loss rise", "lower", adaptive, why, "smoothness"),
                            float(np.atleast_1d(g["value"][()])[0])))
    return out


_READERS: dict[str, Callable[[Path, str], Found]] = {
    "surface": _surface, "hessian": _hessian, "predictiveness": _predictiveness, "inputspace": _inputspace,
    "attention": _attention, "sharpness": _sharpness,
}
