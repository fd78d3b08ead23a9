"""``landscape study FILE.toml``: a whole study declared in TOML, run as resumable steps of landscape commands.

A study trains each declared model, runs each declared analysis on every model's final checkpoint, and draws a
comparison figure per analysis. Steps finished earlier (recorded in ``OUT/study.json``) are skipped, so an
interrupted study continues where it stopped. See ``analyses/*.toml`` for examples.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from landscape.cli._group import main
from landscape.errors import LandscapeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BUNDLED = Path(__file__).resolve().parent.parent / "studies"
CKPT_COMMANDS = ("surface", "hessian", "predictiveness", "inputspace", "attention", "evaluate")


def _as_args(options: dict[str, Any]) -> list[str]:
    """``{"x": "-1:1:5", "trace": True, "model-option": ["a=1"]}`` -> ``["--x", "-1:1:5", "--trace", …]``."""
    args: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args


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
    unknown = set(spec) - {"study", "models", "train", "analyses"}
    if unknown:
        raise LandscapeError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}; use study, models, train, analyses")
    models = spec.get("models") or []
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) and "model" in m for m in models):
        raise LandscapeError(f"{path}: declare at least one [[models]] entry with a 'model' key")
    for section, kind in (("study", dict), ("train", dict), ("analyses", list)):
        if section in spec and not isinstance(spec[section], kind):
            shape = f"a [{section}] table" if kind is dict else f"[[{section}]] entries"
            raise LandscapeError(f"{path}: '{section}' must be {shape}, got {type(spec[section]).__name__}")
    if not all(isinstance(a, dict) for a in spec.get("analyses") or []):
        raise LandscapeError(f"{path}: each [[analyses]] entry must be a table with a 'command' key")
    # The study places every file itself; a user value for these would be silently overridden.
    reserved = {"models": {"out", "resume"}, "train": {"out", "resume"}, "analyses": {"out", "force"}}
    for section, keys in reserved.items():
        entries = spec.get(section) or []
        for entry in entries if isinstance(entries, list) else [entries]:
            clash = sorted(keys & set(entry))
            if clash:
                raise LandscapeError(f"{path}: '{clash[0]}' is set by the study itself (results go under "
                                     "[study] out); remove it from [" + section + "]")
    labels = [m.get("label", m["model"]) for m in models]
    if len(set(labels)) != len(labels):
        raise LandscapeError(f"{path}: model labels must be unique, got {labels}")
    for a in spec.get("analyses") or []:
        if a.get("command") not in CKPT_COMMANDS:
            raise LandscapeError(f"{path}: analysis command {a.get('command')!r} is not one of {', '.join(CKPT_COMMANDS)}")
    spec.setdefault("study", {}).setdefault("out", f"runs/{path.stem}")
    return spec


def _record_path(out: Path) -> Path:
    return out / "study.json"


def _read_record(out: Path) -> dict[str, str]:
    p = _record_path(out)
    return json.loads(p.read_text()) if p.exists() else {}


def _write_record(out: Path, record: dict[str, str]) -> None:
    tmp = _record_path(out).with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    os.replace(tmp, _record_path(out))


def run_study(spec: dict[str, Any], *, echo: Callable[[str], Any] = click.echo, figures: str | None = None) -> Path:
    """Run (or continue) a study; returns its output folder."""
    out = Path(spec["study"]["out"])
    out.mkdir(parents=True, exist_ok=True)
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
    for model, label in zip(spec["models"], labels):
        run_dir = out / label
        options = {**(spec.get("train") or {}), **{k: v for k, v in model.items() if k not in ("model", "label")}}
        # --resume makes an interrupted training continue; a finished one is only re-read.
        step(f"train/{label}", "train", [model["model"], *_as_args(options), "--out", str(run_dir), "--resume"])
        checkpoints[label] = run_dir / "final.pt"

    figure_paths = []
    for analysis in spec.get("analyses") or []:
        options = dict(analysis)
        command = options.pop("command")
        name = options.pop("name", command)
        compare_options = options.pop("compare", {})
        files = []
        for label in labels:
            # A folder of their own: the run folder already holds the training probes' predictiveness.h5.
            target = out / label / "results" / f"{name}.h5"
            opts = dict(options)
            if command == "surface" and opts.get("dir") == "pca":
                opts.setdefault("trajectory", str(out / label))
            takes = {p.name for p in main.commands[command].params}
            args = [str(checkpoints[label]), *_as_args(opts)]
            args += ["--out", str(target)] if "out" in takes else []
            # Re-running a step that was not recorded as done: a resumable command (surface) continues its
            # file; the others start afresh.
            args += ["--force"] if "force" in takes else []
            step(f"{name}/{label}", command, args)
            files.append(str(target))
        if command == "evaluate":
            continue
        fig = out / f"{name}.png"
        step(f"compare/{name}", "compare", [*files, "--labels", ",".join(labels), *_as_args(compare_options),
                                            "--out", str(fig)], skip_if_done=False)
        figure_paths.append(fig)
    probe_files = [out / label / "predictiveness.h5" for label in labels]
    if all(p.exists() for p in probe_files):
        fig = out / "predictiveness-training.png"
        step("compare/predictiveness-training", "compare",
             [*map(str, probe_files), "--labels", ",".join(labels), "--out", str(fig)], skip_if_done=False)
        figure_paths.append(fig)
    if figures:
        Path(figures).mkdir(parents=True, exist_ok=True)
        prefix = spec["study"].get("figure_prefix", "")
        for fig in figure_paths:
            shutil.copyfile(fig, Path(figures) / f"{prefix}{fig.name}")
    echo(f"[study] finished: {out}")
    return out


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
