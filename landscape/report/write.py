"""``report.md`` and ``report.json`` of a study: per metric and model the mean, std and 95% t interval over
seeds, and the claims' verdicts with the numbers behind them. Computed only from the study's stored files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from landscape.report.claims import (
    ACCURACY_MARGIN,
    MIN_SEEDS,
    STRONG_CORRELATION,
    Claim,
    evaluate_claims,
    fmt,
)
from landscape.report.collect import Study, read_study
from landscape.report.stats import summarise

SCHEMA = "landscape.report/1"
STATISTICS = ("Each seed is one replicate (its own initialisation, data order and analysis draws). Per model: mean, "
              "sample standard deviation (ddof = 1) and the 95% Student-t interval of the mean, "
              "mean ± t(0.975, n−1)·std/√n. Comparisons pair two models by seed: the difference treatment − control "
              "per seed, its mean, its 95% t interval and the two-sided paired t-test (t = mean/(std/√n), n − 1 "
              "degrees of freedom).")


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    return x


def build_report(folder: str | Path) -> dict[str, Any]:
    """The report of the study in ``folder`` as plain data (what ``report.json`` holds; NaN as null)."""
    study = read_study(folder)
    claims = evaluate_claims(study)
    return _nan_to_none(_as_data(study, claims))


def _as_data(study: Study, claims: list[Claim]) -> dict[str, Any]:
    metrics = {}
    for name, m in study.metrics.items():
        by_model = {}
        for model in study.models:
            seeds = study.values[name].get(model.label, {})
            if seeds:
                by_model[model.label] = {**summarise(list(seeds.values())).as_dict(),
                                         "values": {str(s): v for s, v in sorted(seeds.items())}}
        metrics[name] = {"description": m.description, "better": m.better, "invariant": m.invariant,
                         "invariance": m.invariance, "family": m.family, "by_model": by_model}
    return {
        "schema": SCHEMA, "study": str(study.folder), "seeds": study.seeds,
        "models": [{"label": m.label, "model": m.model, "model_options": m.options, "config": m.config,
                    "seeds": sorted(m.runs)} for m in study.models],
        "rules": {"statistics": STATISTICS, "min_seeds": MIN_SEEDS, "accuracy_margin": ACCURACY_MARGIN,
                  "strong_correlation": STRONG_CORRELATION, "level": 0.95},
        "claims": [c.as_dict() for c in claims],
        "metrics": metrics, "files": sorted(study.files), "notes": study.notes,
    }


def write_report(folder: str | Path) -> tuple[Path, Path]:
    """Write ``folder/report.md`` and ``folder/report.json`` (atomically); returns their paths."""
    from landscape.studies.runner import write_json

    folder = Path(folder)
    data = build_report(folder)
    md, js = folder / "report.md", folder / "report.json"
    write_json(js, data, what="folder")
    from landscape.core.fs import atomic_path, output_lock

    with output_lock(md), atomic_path(md) as tmp:
        tmp.write_text(markdown(data))
    return md, js


def _n(x: Any, digits: int = 4) -> str:
    return "—" if x is None else fmt(float(x), digits)


def _ci(lo: Any, hi: Any) -> str:
    return "—" if lo is None or hi is None else f"[{_n(lo)}, {_n(hi)}]"


def _p(p: Any) -> str:
    return "—" if p is None else (f"{p:.2g}" if p >= 1e-4 else "<1e-4")


def verdict_rows(data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(claim id, title, verdict, summary) for each claim."""
    return [(c["id"], c["title"], c["verdict"], c["summary"]) for c in data["claims"]]


def verdict_table(folder: str | Path) -> str:
    """The verdicts as a markdown table (from ``folder/report.json`` when it is there, else computed)."""
    path = Path(folder) / "report.json"
    data = json.loads(path.read_text()) if path.is_file() else build_report(folder)
    lines = ["| claim | verdict | evidence |", "|---|---|---|"]
    lines += [f"| {i}. {title} | **{verdict}** | {summary} |" for i, title, verdict, summary in verdict_rows(data)]
    return "\n".join(lines)


def markdown(data: dict[str, Any]) -> str:
    """``report.md`` from the report's data."""
    seeds = data["seeds"]
    out = [f"# Report: {data['study']}", "",
           f"Computed only from the stored result files of the study ({len(data['files'])} files, listed at the "
           f"end); seeds {seeds} ({len(seeds)} replicate(s)). Regenerate with `landscape report {data['study']}`.",
           "", "## Verdicts", "", "| claim | verdict | evidence |", "|---|---|---|"]
    out += [f"| {i}. {title} | **{verdict}** | {summary} |" for i, title, verdict, summary in verdict_rows(data)]
    out += ["", "How to read a verdict: **supported** means the 95% interval over seeds lies on the claimed side; "
            "**not supported** means it lies on the other side (or, for \"better accuracy\", within the margin of "
            "no difference); **inconclusive** means the data cannot tell (the interval straddles, or there are "
            f"fewer than {data['rules']['min_seeds']} seeds). Each claim states its rule below.", "",
            "## Models", "", "| label | model | options | architecture | seeds |", "|---|---|---|---|---|"]
    for m in data["models"]:
        arch = ", ".join(f"{k}={v}" for k, v in m["config"].items())
        out.append(f"| {m['label']} | {m['model']} | {' '.join(m['model_options']) or '—'} | {arch} | "
                   f"{len(m['seeds'])} |")
    for c in data["claims"]:
        out += ["", f"## Claim {c['id']}: {c['title']}", "", f"**Verdict: {c['verdict']}** ({c['summary']}).", "",
                f"Rule: {c['rule']}.", ""]
        if not c["evidence"]:
            continue
        out += ["| comparison | measure | decides | n | difference (treatment − control) | 95% CI | t | p | "
                "verdict |", "|---|---|---|---|---|---|---|---|---|"]
        for e in c["evidence"]:
            inv = data["metrics"].get(e["metric"], {}).get("invariant")
            decides = "yes" if e["decides"] else ("no (not invariant)" if inv is False else "no")
            what = (f"{e['treatment']} vs {e['control']} ({e['factor']})" if e["control"] != "—"
                    else f"{e['treatment']} (one sample)")
            out.append(f"| {what} | {e['metric']} | {decides} | {e['n']} | {_n(e['diff'])} | "
                       f"{_ci(e['ci_low'], e['ci_high'])} | {_n(e['t'], 3)} | {_p(e['p'])} | {e['verdict']} "
                       f"({e['reason']}) |")
    out += ["", "## Metrics (mean ± std over seeds, 95% t interval)", ""]
    for name, m in data["metrics"].items():
        better = {"lower": "lower is better", "higher": "higher is better"}.get(m["better"], "no direction")
        out += [f"### {name}", "", f"{m['description']}; {better}. Rescaling symmetries: {m['invariance']}.", "",
                "| model | n | mean | std | 95% CI | per seed |", "|---|---|---|---|---|---|"]
        for label, s in m["by_model"].items():
            per_seed = ", ".join(f"{k}: {_n(v)}" for k, v in s["values"].items())
            out.append(f"| {label} | {s['n']} | {_n(s['mean'])} | {_n(s['std'])} | {_ci(s['ci_low'], s['ci_high'])} "
                       f"| {per_seed} |")
        out.append("")
    out += ["## Invariance to the rescaling symmetries", "",
            "A BatchNorm network computes the same function when the weights of a filter before a BatchNorm are "
            "scaled, and a ReLU network when one layer is scaled by a and the next by 1/a. A measure that changes "
            "under these is not a property of the function; the smoothness verdict rests on the invariant ones.",
            "", "| measure | invariant | why |", "|---|---|---|"]
    for name, m in data["metrics"].items():
        inv = {True: "yes", False: "no", None: "n/a"}[m["invariant"]]
        out.append(f"| {name} | {inv} | {m['invariance']} |")
    if not any("adaptive" in name for name in data["metrics"]):
        out += ["", "No sharpness analysis ran in this study (adaptive sharpness, which is invariant, comes from "
                "`landscape sharpness` when installed; add it to the study's [[analyses]]). The invariant measures "
                "above are the filter-normalised surfaces (curvature and loss rise along filter-normalised random "
                "directions: the Hessian seen in filter-normalised coordinates) and the input-space measures."]
    out += ["", "## Statistics", "", STATISTICS, ""]
    if data["notes"]:
        out += ["## Notes", "", *[f"- {n}" for n in data["notes"]], ""]
    out += ["## Files read", "", *[f"- `{f}`" for f in data["files"]], ""]
    return "\n".join(out)
