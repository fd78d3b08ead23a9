"""Running a study: every (model, seed) unit trained and analysed, finished units skipped, then the report.

The unit of work is one step for one model and one seed (train it, or run one analysis on its final checkpoint).
Each step's output is complete or absent: training resumes from its last epoch, surfaces from their last point, and
every other analysis writes its file once, atomically. A step is skipped on a rerun only when ``OUT/study.json``
records it with the same command line *and* its output is there and complete, so a crash (or a deleted file) costs
only the steps it touched.

Layout: ``OUT/LABEL/`` for a study without ``seeds`` (as before), ``OUT/LABEL/seed-S/`` with them; each run folder
holds the training run (``final.pt``, ``metrics.csv``) and ``results/NAME.h5``. ``OUT/manifest.json`` records which
folder is which model and seed (for ``landscape report`` and ``landscape figures``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landscape.core.fs import atomic_path, ensure_writable_dir, output_lock, sweep_temp_files
from landscape.errors import LandscapeError
from landscape.studies.spec import ANALYSIS_KEYS, Commands, as_args, option_params

Echo = Callable[[str], Any]
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Unit:
    """One model trained with one seed: where its run folder is and how its steps are named."""

    label: str
    model: str
    seed: int | None  # None: a study without seeds (the train command's own seed)
    folder: Path

    @property
    def key(self) -> str:
        return self.label if self.seed is None else f"{self.label}/seed-{self.seed}"


def units(spec: dict[str, Any]) -> list[Unit]:
    """Every (model, seed) unit of a checked study, seed by seed (so a stopped study has whole seeds done)."""
    out = Path(spec["study"]["out"])
    seeds = spec["study"].get("seeds")
    result = []
    for seed in seeds if seeds is not None else [None]:
        for m in spec["models"]:
            label = m.get("label", m["model"])
            folder = out / label if seed is None else out / label / f"seed-{seed}"
            result.append(Unit(label, m["model"], seed, folder))
    return result


def manifest(spec: dict[str, Any]) -> dict[str, Any]:
    """What ``OUT/manifest.json`` holds: the models (name, options, label), seeds, analyses and run folders."""
    out = Path(spec["study"]["out"])
    train = spec.get("train") or {}
    models = []
    for m in spec["models"]:
        options = {**train, **{k: v for k, v in m.items() if k not in ("model", "label")}}
        label = m.get("label", m["model"])
        models.append({"label": label, "model": m["model"],
                       "model_options": [str(o) for o in options.get("model-option", options.get("model_option", []))],
                       "runs": {str(u.seed if u.seed is not None else options.get("seed", 0)):
                                str(u.folder.relative_to(out)) for u in units(spec) if u.label == label}})
    analyses = [{"name": a.get("name", a["command"]), "command": a["command"], "models": a.get("models"),
                 "options": {k: v for k, v in a.items() if k not in ANALYSIS_KEYS}}
                for a in spec.get("analyses") or []]
    return {"schema": "landscape.study/1", "seeds": spec["study"].get("seeds"), "models": models,
            "analyses": analyses, "train": train}


def _read_record(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    fix = f"delete {path} to redo every step, or choose another --out"
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = getattr(exc, "strerror", None) or "not valid JSON"
        raise LandscapeError(f"{path} is damaged ({reason}); {fix}") from None
    if not isinstance(record, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in record.items()):
        raise LandscapeError(f"{path} is damaged (not a table of step names to digests); {fix}")
    return record


def write_json(path: Path, data: Any, *, what: str = "--out") -> None:
    """Write ``data`` as JSON, atomically (a reader sees the old file or the new one, never half of one)."""
    try:
        # One writer; the lock also sweeps the temp file a killed run left beside it.
        with output_lock(path), atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    except OSError as exc:
        raise LandscapeError(f"cannot write {path}: {exc.strerror or exc}; free some space or choose another "
                             f"{what}, then run again") from None


def _digest(command: str, args: list[str]) -> str:
    """The fingerprint of a step's command line: a step is done only if it ran with exactly these arguments."""
    return hashlib.sha256(json.dumps([command, *args]).encode()).hexdigest()[:16]


def complete(command: str, output: Path | None) -> bool:
    """Whether a step's output is there and whole: a training run's final checkpoint and metrics, or a result
    file that opens, carries its schema and (surfaces) is marked complete."""
    if output is None:
        return True  # evaluate and compare: nothing to check, the record is all
    if command == "train":
        return (output / "final.pt").is_file() and (output / "metrics.csv").is_file()
    if not output.is_file():
        return False
    try:
        import h5py

        with h5py.File(output, "r") as f:
            return "schema" in f.attrs and bool(f.attrs.get("complete", True))
    except (OSError, ValueError):
        return False


def run_study(spec: dict[str, Any], *, commands: Commands, echo: Echo = print, figures: str | None = None,
              report: bool = True) -> Path:
    """Run (or continue) a study; returns its output folder.

    ``commands`` maps the ``landscape`` command names to their click commands (each step runs one). The output
    folder is locked for the whole study (one study per folder); ``spec`` comes from ``load_study`` or
    ``check_study``, so every step's options are known to be valid before any work. With ``report``, the report
    (``OUT/report.md``, ``OUT/report.json``) and the figure set (``OUT/figures/``) are written at the end.
    """
    out = Path(spec["study"]["out"])
    with output_lock(out):
        ensure_writable_dir(out)
        if figures:
            ensure_writable_dir(figures)  # found now, not after every model trained
        _run_locked(spec, out, commands=commands, echo=echo, figures=figures)
        if report:
            _finish(out, echo=echo)
    echo(f"[study] finished: {out}")
    return out


def _finish(out: Path, *, echo: Echo) -> None:
    from landscape.report import draw_figures, write_report

    echo("[study] report: statistics over seeds and the claims' verdicts")
    write_report(out)
    echo("[study] figures")
    draw_figures(out, out=out / "figures", fmt="png")


def _run_locked(spec: dict[str, Any], out: Path, *, commands: Commands, echo: Echo, figures: str | None) -> None:
    names = [a.get("name", a["command"]) for a in spec.get("analyses") or []]
    # Temporary files of the study's own files that a killed study left (no other writer: we hold the lock).
    for own in ("study.json", MANIFEST, "report.md", "report.json", "predictiveness-training.png",
                *(f"{n}.png" for n in names)):
        sweep_temp_files(out / own)
    record_path = out / "study.json"
    record = _read_record(record_path)
    write_json(out / MANIFEST, manifest(spec))
    all_units = units(spec)
    total = sum(1 + sum(_applies(a, u) for a in spec.get("analyses") or []) for u in all_units)
    done_steps = 0

    def step(key: str, command: str, args: list[str], *, output: Path | None = None, skip_if_done: bool = True,
             counted: bool = True, extra: tuple[str, ...] = ()) -> None:
        nonlocal done_steps
        digest = _digest(command, args)
        where = f"[{done_steps + 1}/{total}] " if counted else ""
        if counted:
            done_steps += 1
        if skip_if_done and record.get(key) == digest and complete(command, output):
            echo(f"[study] {where}{key}: done earlier, skipped")
            return
        if skip_if_done and record.get(key) == digest:
            echo(f"[study] {where}{key}: recorded as done but its output is missing or incomplete; redoing it")
        args = [*args, *extra]
        echo(f"[study] {where}{key}: landscape {command} {' '.join(args)}")
        commands[command].main(args=args, prog_name=f"landscape {command}", standalone_mode=False)
        if not complete(command, output):
            raise LandscapeError(f"{key}: landscape {command} finished without writing {output}; run the study "
                                 "again, and report this if it repeats")
        record[key] = digest
        write_json(record_path, record)

    train_params = option_params("train", commands)
    seeded = spec["study"].get("seeds") is not None
    models = {m.get("label", m["model"]): m for m in spec["models"]}
    for unit in all_units:
        model = models[unit.label]
        options = {**(spec.get("train") or {}), **{k: v for k, v in model.items() if k not in ("model", "label")}}
        if seeded:
            options["seed"] = unit.seed
        # --resume makes an interrupted training continue; a finished one is only re-read.
        step(f"train/{unit.key}", "train",
             [model["model"], *as_args(options, train_params), "--out", str(unit.folder), "--resume"],
             output=unit.folder)
        for analysis in (a for a in spec.get("analyses") or [] if _applies(a, unit)):
            _analysis_step(step, analysis, unit, commands=commands, seeded=seeded, record=record)

    # Comparison figures of one replicate (the first seed); the figure set draws every seed.
    first = [u for u in all_units if u.seed == all_units[0].seed]
    labels = ",".join(u.label for u in first)
    figure_paths = []
    for analysis in spec.get("analyses") or []:
        command, name = analysis["command"], analysis.get("name", analysis["command"])
        if command == "evaluate":
            continue
        fig = out / f"{name}.png"
        these = [u for u in first if _applies(analysis, u)]
        files = [str(u.folder / "results" / f"{name}.h5") for u in these]
        step(f"compare/{name}", "compare", [*files, "--labels", ",".join(u.label for u in these),
                                            *as_args(analysis.get("compare", {}), option_params("compare", commands)),
                                            "--out", str(fig)], skip_if_done=False, counted=False)
        figure_paths.append(fig)
    probe_files = [u.folder / "predictiveness.h5" for u in first]
    if all(p.exists() for p in probe_files):
        fig = out / "predictiveness-training.png"
        step("compare/predictiveness-training", "compare",
             [*map(str, probe_files), "--labels", labels, "--out", str(fig)], skip_if_done=False, counted=False)
        figure_paths.append(fig)
    if figures:
        prefix = spec["study"].get("figure_prefix", "")
        for fig in figure_paths:
            dest = Path(figures) / f"{prefix}{fig.name}"
            try:
                with atomic_path(dest) as tmp:
                    shutil.copyfile(fig, tmp)
            except OSError as exc:
                raise LandscapeError(f"cannot copy {fig} to {dest}: {exc.strerror or exc}; free some space or "
                                     "choose another --figures") from None


def _applies(analysis: dict[str, Any], unit: Unit) -> bool:
    """Whether ``analysis`` runs on ``unit`` (its ``models`` list, or every model)."""
    return analysis.get("models") is None or unit.label in analysis["models"]


def _analysis_step(step: Callable[..., None], analysis: dict[str, Any], unit: Unit, *, commands: Commands,
                   seeded: bool, record: dict[str, str]) -> None:
    options = {k: v for k, v in analysis.items() if k not in ANALYSIS_KEYS}
    command = analysis["command"]
    name = analysis.get("name", command)
    takes = {p.name for p in commands[command].params}
    if seeded and "seed" in takes and "seed" not in options:
        # Each replicate draws its own directions, probes and subsets; the models of one seed share them (paired).
        options["seed"] = unit.seed
    if command == "surface" and options.get("dir") == "pca":
        options.setdefault("trajectory", str(unit.folder))
    target = unit.folder / "results" / f"{name}.h5"
    args = [str(unit.folder / "final.pt"), *as_args(options, option_params(command, commands))]
    if ":" in unit.model and "model_name" in takes:
        # A checkpoint never names code for us to import; the study file, the user's own words, does.
        args += ["--model", unit.model]
    args += ["--out", str(target)] if "out" in takes else []
    key = f"{name}/{unit.key}"
    digest = _digest(command, args)
    # A step not recorded as done: a surface continues its file (resumable point by point), every other analysis
    # starts afresh; a step whose settings changed starts afresh too.
    fresh = command != "surface" or (key in record and record[key] != digest)
    extra = ("--overwrite",) if "overwrite" in takes and fresh and target.exists() else ()
    step(key, command, args, output=target if "out" in takes else None, extra=extra)
