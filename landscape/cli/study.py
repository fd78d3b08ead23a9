"""``landscape study FILE.toml``: a whole study declared in TOML, run as resumable steps of landscape commands.

A study trains each declared model, runs each declared analysis on every model's final checkpoint, and draws a
comparison figure per analysis. Steps finished earlier (recorded in ``OUT/study.json``) are skipped, so an
interrupted study continues where it stopped. See ``analyses/*.toml`` for examples.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from landscape.analyses import ANALYSES
from landscape.cli._group import main
from landscape.core.fs import atomic_path, ensure_writable_dir, output_lock, sweep_temp_files
from landscape.core.options import parse_key_values
from landscape.errors import LandscapeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BUNDLED = Path(__file__).resolve().parent.parent / "studies"
# The commands a study step runs on each trained checkpoint: every analysis, and evaluate.
CKPT_COMMANDS = (*ANALYSES, "evaluate")


def _as_args(options: dict[str, Any], params: Mapping[str, click.Parameter] | None = None) -> list[str]:
    """``{"x": "-1:1:5", "trace": True, "model-option": ["a=1"]}`` -> ``["--x", "-1:1:5", "--trace", …]``.

    ``params`` (from :func:`_option_params`): a false value of an ``--on/--off`` flag becomes ``--off``.
    """
    args: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False and params and key in params and flag in params[key].opts and \
                params[key].secondary_opts:
            args.append(params[key].secondary_opts[0])
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args


# Keys of a study's sections that are not options of a command, with their meaning; and the options each kind of
# step gets from the study itself (a user value would be silently overridden).
STUDY_KEYS = {"out": "the output folder", "figure_prefix": "a prefix for the figures copied to --figures"}
_RESERVED = {"train": {"out", "resume"}, "analysis": {"out", "force"}, "compare": {"out", "labels"}}
# A label or analysis name becomes a folder or file name under --out: plain names only.
_PLAIN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def _option_params(command: str) -> dict[str, click.Option]:
    """The options of a landscape command by study key (``batch-size``; also ``no-augment``)."""
    params: dict[str, click.Option] = {}
    for p in main.commands[command].params:
        if isinstance(p, click.Option):
            for opt in (*p.opts, *p.secondary_opts):
                params[opt.lstrip("-")] = p
    return params


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    return {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "a table"}.get(
        type(value), type(value).__name__)


def _check_options(where: str, command: str, options: dict[str, Any], *, reserved: set[str]) -> None:
    """Check every key of a section against ``command``'s options and their types, before any work."""
    params = _option_params(command)
    ctx = click.Context(main.commands[command], info_name=command)
    seen: dict[str, str] = {}
    for key, value in options.items():
        if not isinstance(key, str):
            raise LandscapeError(f"{where}: key {key!r} is not a name")
        norm = key.replace("_", "-")
        if norm in reserved:
            raise LandscapeError(f"{where}: '{key}' is set by the study itself (results go under [study] out); "
                                 "remove it")
        if norm in seen:
            raise LandscapeError(f"{where}: '{key}' and '{seen[norm]}' name the same option; keep one")
        seen[norm] = key
        param = params.get(norm)
        if param is None:
            allowed = sorted({k for k in params if k not in reserved})
            close = difflib.get_close_matches(norm, allowed, n=3)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            raise LandscapeError(f"{where}: '{key}' is not an option of landscape {command}; {hint}"
                                 f"options: {', '.join(allowed)}")
        values = value if isinstance(value, list) and param.multiple else [value]
        for item in values:
            _check_value(where, key, item, param, ctx, multiple=param.multiple)


def _check_value(where: str, key: str, value: Any, param: click.Option, ctx: click.Context, *,
                 multiple: bool) -> None:
    if param.is_flag:
        if not isinstance(value, bool):
            raise LandscapeError(f"{where}: '{key}' is a switch; give true or false, not {_type_name(value)} "
                                 f"{value!r}")
        return
    if isinstance(value, (list, dict)):
        many = " (or a list of them)" if multiple else ""
        raise LandscapeError(f"{where}: '{key}' takes one value{many}, not {_type_name(value)} {value!r}")
    if isinstance(value, bool):
        raise LandscapeError(f"{where}: '{key}' takes a value, not true/false")
    if isinstance(param.type, click.Path):
        return  # paths may name files that earlier steps of the study create
    try:
        converted = param.type.convert(str(value), param, ctx)
        if isinstance(converted, float) and not math.isfinite(converted):
            raise LandscapeError(f"{where}: '{key}' = {value!r} must be a finite number")
        # Values that only the command's body would check, found here before any model trains.
        if param.name == "dataset":
            from landscape.core.data import dataset_info

            dataset_info(converted)
        elif param.name == "model_options":
            parse_key_values([converted])
        elif param.metavar == "MIN:MAX:NUM" and converted is not None:
            # Grid specs: η grids also take comma lists, every other axis only MIN:MAX:NUM.
            if param.name in ("eta", "probe_eta"):
                from landscape.analyses.predictiveness.compute import parse_etas

                parse_etas(str(converted), name=key)
            else:
                from landscape.core.grid import parse_axis

                parse_axis(str(converted), name=key)
    except click.ClickException as exc:
        raise LandscapeError(f"{where}: '{key}' = {value!r}: {exc.format_message()}") from None
    except LandscapeError as exc:
        text = str(exc)
        raise LandscapeError(text if text.startswith(where) else f"{where}: '{key}': {text}") from None


def _check_name(where: str, kind: str, name: Any) -> str:
    if not isinstance(name, str):
        raise LandscapeError(f"{where}: {kind} must be a string, not {_type_name(name)} {name!r}")
    if not _PLAIN.fullmatch(name) or name in (".", ".."):
        raise LandscapeError(f"{where}: {kind} {name!r} is not a plain name; it names a folder or file under "
                             "--out, so use letters, digits, '.', '_' and '-' only (e.g. resnet8-gate)")
    return name


def check_study(spec: dict[str, Any], *, source: str = "study") -> dict[str, Any]:
    """Validate a parsed study as a whole (sections, types, names, every option of every step); returns it with
    defaults filled in. Every problem is a one-line error naming the key, found before any work."""
    if not isinstance(spec, dict):
        raise LandscapeError(f"{source}: a study is a table of sections, not {_type_name(spec)}")
    unknown = set(spec) - {"study", "models", "train", "analyses"}
    if unknown:
        raise LandscapeError(f"{source}: unknown section(s) {', '.join(sorted(map(str, unknown)))}; use study, "
                             "models, train, analyses")
    models = spec.get("models") or []
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) and "model" in m for m in models):
        raise LandscapeError(f"{source}: declare at least one [[models]] entry with a 'model' key")
    for section, kind in (("study", dict), ("train", dict), ("analyses", list)):
        if section in spec and not isinstance(spec[section], kind):
            shape = f"a [{section}] table" if kind is dict else f"[[{section}]] entries"
            raise LandscapeError(f"{source}: '{section}' must be {shape}, got {_type_name(spec[section])}")
    analyses = spec.get("analyses") or []
    if not all(isinstance(a, dict) for a in analyses):
        raise LandscapeError(f"{source}: each [[analyses]] entry must be a table with a 'command' key")

    study = spec.setdefault("study", {})
    for key, value in study.items():
        if key not in STUDY_KEYS:
            allowed = "; ".join(f"{k} ({what})" for k, what in STUDY_KEYS.items())
            raise LandscapeError(f"{source}: unknown key '{key}' in [study]; allowed: {allowed}")
        if not isinstance(value, str):
            raise LandscapeError(f"{source}: [study] {key} must be a string, not {_type_name(value)} {value!r}")
    if study.get("figure_prefix"):
        _check_name(source, "[study] figure_prefix", study["figure_prefix"])

    _check_options(f"{source}: [train]", "train", spec.get("train") or {}, reserved=_RESERVED["train"])
    from landscape.models import list_models

    labels = []
    for i, model in enumerate(models, 1):
        where = f"{source}: [[models]] #{i}"
        if not isinstance(model["model"], str) or not model["model"]:
            raise LandscapeError(f"{where}: 'model' must be a model name, not {_type_name(model['model'])} "
                                 f"{model['model']!r}")
        if ":" not in model["model"] and model["model"] not in list_models():
            close = difflib.get_close_matches(model["model"], list_models(), n=3)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise LandscapeError(f"{where}: unknown model {model['model']!r}; {hint}('landscape models' lists all, "
                                 "or use pkg.module:callable)")
        label = model.get("label", model["model"])
        if "label" not in model and not _PLAIN.fullmatch(label):
            raise LandscapeError(f"{where}: model {label!r} is not a plain name; give the entry a 'label' "
                                 "(letters, digits, '.', '_', '-'): it names the run's folder")
        labels.append(_check_name(where, "label", label))
        _check_options(where, "train", {k: v for k, v in model.items() if k not in ("model", "label")},
                       reserved=_RESERVED["train"])
    if len(set(labels)) != len(labels):
        raise LandscapeError(f"{source}: model labels must be unique, got {labels}")

    names = []
    for i, analysis in enumerate(analyses, 1):
        where = f"{source}: [[analyses]] #{i}"
        command = analysis.get("command")
        if not isinstance(command, str) or command not in CKPT_COMMANDS:
            raise LandscapeError(f"{source}: analysis command {command!r} is not one of {', '.join(CKPT_COMMANDS)}")
        names.append(_check_name(where, "name", analysis.get("name", command)))
        compare = analysis.get("compare", {})
        if not isinstance(compare, dict):
            raise LandscapeError(f"{where}: 'compare' must be a table of compare options, e.g. "
                                 f"compare = {{ log = true }}, not {_type_name(compare)}")
        _check_options(f"{where} compare", "compare", compare, reserved=_RESERVED["compare"])
        _check_options(where, command, {k: v for k, v in analysis.items() if k not in ("command", "name", "compare")},
                       reserved=_RESERVED["analysis"])
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise LandscapeError(f"{source}: two analyses are named {twice[0]!r}; give each a distinct 'name'")
    # The study's own files sit beside the run folders.
    taken = {"study.json", "predictiveness-training.png", *(f"{n}.png" for n in names)}
    clash = sorted(taken & set(labels))
    if clash:
        raise LandscapeError(f"{source}: label {clash[0]!r} is the name of a file the study writes; choose another")
    return spec


def load_study(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a study file; returns the parsed TOML with defaults filled in."""
    path = Path(path)
    if not path.is_file() and path.suffix == "" and (BUNDLED / f"{path.name}.toml").is_file():
        path = BUNDLED / f"{path.name}.toml"
    if not path.is_file():
        bundled = ", ".join(sorted(p.stem for p in BUNDLED.glob("*.toml")))
        raise LandscapeError(f"study file not found: {path} (bundled studies: {bundled})")
    try:
        spec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise LandscapeError(f"{path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LandscapeError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    check_study(spec, source=str(path))
    spec["study"].setdefault("out", f"runs/{path.stem}")
    return spec


def _record_path(out: Path) -> Path:
    return out / "study.json"


def _read_record(out: Path) -> dict[str, str]:
    p = _record_path(out)
    if not p.exists():
        return {}
    fix = f"delete {p} to redo every step, or choose another --out"
    try:
        record = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = getattr(exc, "strerror", None) or "not valid JSON"
        raise LandscapeError(f"{p} is damaged ({reason}); {fix}") from None
    if not isinstance(record, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in record.items()):
        raise LandscapeError(f"{p} is damaged (not a table of step names to digests); {fix}")
    return record


def _write_record(out: Path, record: dict[str, str]) -> None:
    path = _record_path(out)
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    except OSError as exc:
        raise LandscapeError(f"cannot write {path}: {exc.strerror or exc}; free some space or choose another "
                             "--out, then run the study again") from None


def run_study(spec: dict[str, Any], *, echo: Callable[[str], Any] = click.echo, figures: str | None = None) -> Path:
    """Run (or continue) a study; returns its output folder.

    The output folder is locked for the whole study (one study per folder); ``spec`` comes from
    :func:`load_study` or :func:`check_study`, so every step's options are known to be valid before any work.
    """
    out = Path(spec["study"]["out"])
    with output_lock(out):
        ensure_writable_dir(out)
        if figures:
            ensure_writable_dir(figures)  # found now, not after every model trained
        _run_locked(spec, out, echo=echo, figures=figures)
    echo(f"[study] finished: {out}")
    return out


def _run_locked(spec: dict[str, Any], out: Path, *, echo: Callable[[str], Any], figures: str | None) -> None:
    # Temporary files of the study's own files that a killed study left (no other writer: we hold the lock).
    names = [a.get("name", a["command"]) for a in spec.get("analyses") or []]
    for own in ("study.json", "predictiveness-training.png", *(f"{n}.png" for n in names)):
        sweep_temp_files(out / own)
    record = _read_record(out)

    def step(key: str, command: str, args: list[str], *, skip_if_done: bool = True) -> None:
        digest = hashlib.sha256(json.dumps([command, *args]).encode()).hexdigest()[:16]
        if skip_if_done and record.get(key) == digest:
            echo(f"[study] {key}: done earlier, skipped")
            return
        echo(f"[study] {key}: landscape {command} {' '.join(args)}")
        main.commands[command].main(args=args, prog_name=f"landscape {command}", standalone_mode=False)
        record[key] = digest
        _write_record(out, record)

    labels = [m.get("label", m["model"]) for m in spec["models"]]
    checkpoints: dict[str, Path] = {}
    model_of = {label: m["model"] for m, label in zip(spec["models"], labels)}
    train_params = _option_params("train")
    for model, label in zip(spec["models"], labels):
        run_dir = out / label
        options = {**(spec.get("train") or {}), **{k: v for k, v in model.items() if k not in ("model", "label")}}
        # --resume makes an interrupted training continue; a finished one is only re-read.
        step(f"train/{label}", "train",
             [model["model"], *_as_args(options, train_params), "--out", str(run_dir), "--resume"])
        checkpoints[label] = run_dir / "final.pt"

    figure_paths = []
    for analysis in spec.get("analyses") or []:
        options = dict(analysis)
        command = options.pop("command")
        name = options.pop("name", command)
        compare_options = options.pop("compare", {})
        params = _option_params(command)
        files = []
        for label in labels:
            # A folder of their own: the run folder already holds the training probes' predictiveness.h5.
            target = out / label / "results" / f"{name}.h5"
            opts = dict(options)
            if command == "surface" and opts.get("dir") == "pca":
                opts.setdefault("trajectory", str(out / label))
            takes = {p.name for p in main.commands[command].params}
            args = [str(checkpoints[label]), *_as_args(opts, params)]
            if ":" in model_of[label] and "model_name" in takes:
                # A checkpoint never names code for us to import; the study file, the user's own words, does.
                args += ["--model", model_of[label]]
            args += ["--out", str(target)] if "out" in takes else []
            # Re-running a step that was not recorded as done: a resumable command (surface) continues its
            # file; the others start afresh.
            args += ["--force"] if "force" in takes else []
            step(f"{name}/{label}", command, args)
            files.append(str(target))
        if command == "evaluate":
            continue
        fig = out / f"{name}.png"
        step(f"compare/{name}", "compare", [*files, "--labels", ",".join(labels),
                                            *_as_args(compare_options, _option_params("compare")),
                                            "--out", str(fig)], skip_if_done=False)
        figure_paths.append(fig)
    probe_files = [out / label / "predictiveness.h5" for label in labels]
    if all(p.exists() for p in probe_files):
        fig = out / "predictiveness-training.png"
        step("compare/predictiveness-training", "compare",
             [*map(str, probe_files), "--labels", ",".join(labels), "--out", str(fig)], skip_if_done=False)
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


@main.command()
@click.argument("file")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default: the file's study.out).")
@click.option("--figures", type=click.Path(file_okay=False), default=None, help="Also copy the comparison figures here.")
def study(file: str, out: str | None, figures: str | None) -> None:
    """Run the study declared in FILE (a TOML path, or a bundled study name such as digits_demo)."""
    spec = load_study(file)
    if out:
        spec["study"]["out"] = out
    run_study(spec, figures=figures)
