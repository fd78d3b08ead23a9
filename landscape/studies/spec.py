"""A study file: parsing and validation, before any work.

A study declares models (``[[models]]``, each a variant: a model name with options and a label), shared training
settings (``[train]``), the analyses to run on every trained model (``[[analyses]]``) and, optionally, the seeds
(``[study] seeds = [0, 1, 2]``): every model is trained and analysed once per seed. Every key is checked against
the options of the command it feeds (``commands``: the ``landscape`` commands by name), so a typo is refused,
naming the key, before any model trains.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from landscape.core.options import parse_key_values
from landscape.errors import LandscapeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Commands = Mapping[str, click.Command]
BUNDLED = Path(__file__).resolve().parent  # the bundled studies: digits_demo.toml, digits_demo_quick.toml

# Keys of [study], with their meaning; and the options each kind of step gets from the study itself (a user value
# would be silently overridden).
STUDY_KEYS = {"out": "the output folder", "figure_prefix": "a prefix for the figures copied to --figures",
              "seeds": "a list of training seeds, e.g. [0, 1, 2]: every model is trained and analysed per seed"}
_RESERVED = {"train": {"out", "resume"}, "analysis": {"out", "force", "overwrite"}, "compare": {"out", "labels"}}
# A label or analysis name becomes a folder or file name under --out: plain names only.
# Keys of an [[analyses]] entry that are the study's, not the command's options.
ANALYSIS_KEYS = ("command", "name", "compare", "models")
_PLAIN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
# The files and folders a study writes beside the run folders (a label must not take one of these names).
STUDY_FILES = ("study.json", "manifest.json", "report.md", "report.json", "figures", "predictiveness-training.png")


def as_args(options: dict[str, Any], params: Mapping[str, click.Parameter] | None = None) -> list[str]:
    """``{"x": "-1:1:5", "trace": True, "model-option": ["a=1"]}`` -> ``["--x", "-1:1:5", "--trace", …]``.

    ``params`` (from :func:`option_params`): a false value of an ``--on/--off`` flag becomes ``--off``.
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


def option_params(command: str, commands: Commands) -> dict[str, click.Option]:
    """The options of a landscape command by study key (``batch-size``; also ``no-augment``)."""
    params: dict[str, click.Option] = {}
    for p in commands[command].params:
        if isinstance(p, click.Option):
            for opt in (*p.opts, *p.secondary_opts):
                params[opt.lstrip("-")] = p
    return params


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    return {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "a table"}.get(
        type(value), type(value).__name__)


def _check_options(where: str, command: str, options: dict[str, Any], *, reserved: set[str],
                   commands: Commands, why: Mapping[str, str] | None = None) -> None:
    """Check every key of a section against ``command``'s options and their types, before any work."""
    params = option_params(command, commands)
    ctx = click.Context(commands[command], info_name=command)
    seen: dict[str, str] = {}
    for key, value in options.items():
        if not isinstance(key, str):
            raise LandscapeError(f"{where}: key {key!r} is not a name")
        norm = key.replace("_", "-")
        if norm in reserved:
            because = (why or {}).get(norm, "results go under [study] out")
            raise LandscapeError(f"{where}: '{key}' is set by the study itself ({because}); remove it")
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


def _check_seeds(source: str, seeds: Any) -> list[int]:
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds):
        raise LandscapeError(f"{source}: [study] seeds must be a non-empty list of integers, e.g. seeds = [0, 1, 2]; "
                             f"got {_type_name(seeds)} {seeds!r}")
    if any(not 0 <= s < 2**63 for s in seeds):
        raise LandscapeError(f"{source}: [study] seeds must be between 0 and 2^63-1, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise LandscapeError(f"{source}: [study] seeds lists a seed twice: {seeds!r}; each seed is one replicate")
    return list(seeds)


def check_study(spec: dict[str, Any], *, commands: Commands, source: str = "study") -> dict[str, Any]:
    """Validate a parsed study as a whole (sections, types, names, seeds, every option of every step); returns it
    with defaults filled in. Every problem is a one-line error naming the key, found before any work."""
    from landscape.analyses import ANALYSES

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
            close = difflib.get_close_matches(str(key), list(STUDY_KEYS), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise LandscapeError(f"{source}: unknown key '{key}' in [study]; {hint}allowed: {allowed}")
        if key == "seeds":
            _check_seeds(source, value)
        elif not isinstance(value, str):
            raise LandscapeError(f"{source}: [study] {key} must be a string, not {_type_name(value)} {value!r}")
    if study.get("figure_prefix"):
        _check_name(source, "[study] figure_prefix", study["figure_prefix"])
    seeded = "seeds" in study
    train_reserved = _RESERVED["train"] | ({"seed"} if seeded else set())
    why = {"seed": "[study] seeds gives every model its training seeds"}

    _check_options(f"{source}: [train]", "train", spec.get("train") or {}, reserved=train_reserved,
                   commands=commands, why=why)
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
                       reserved=train_reserved, commands=commands, why=why)
    if len(set(labels)) != len(labels):
        raise LandscapeError(f"{source}: model labels must be unique, got {labels}")

    ckpt_commands = (*ANALYSES, "evaluate")
    names = []
    for i, analysis in enumerate(analyses, 1):
        where = f"{source}: [[analyses]] #{i}"
        command = analysis.get("command")
        if not isinstance(command, str) or command not in ckpt_commands:
            raise LandscapeError(f"{source}: analysis command {command!r} is not one of {', '.join(ckpt_commands)}")
        names.append(_check_name(where, "name", analysis.get("name", command)))
        only = analysis.get("models")
        if only is not None:
            if not isinstance(only, list) or not only or not all(isinstance(x, str) for x in only):
                raise LandscapeError(f"{where}: 'models' must be a non-empty list of model labels, e.g. "
                                     f"models = [{labels[0]!r}], not {_type_name(only)} {only!r}")
            unknown_labels = [x for x in only if x not in labels]
            if unknown_labels:
                raise LandscapeError(f"{where}: 'models' names {unknown_labels[0]!r}, which is not a model label of "
                                     f"the study; labels: {', '.join(labels)}")
        compare = analysis.get("compare", {})
        if not isinstance(compare, dict):
            raise LandscapeError(f"{where}: 'compare' must be a table of compare options, e.g. "
                                 f"compare = {{ log = true }}, not {_type_name(compare)}")
        _check_options(f"{where} compare", "compare", compare, reserved=_RESERVED["compare"], commands=commands)
        _check_options(where, command, {k: v for k, v in analysis.items() if k not in ANALYSIS_KEYS},
                       reserved=_RESERVED["analysis"], commands=commands)
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise LandscapeError(f"{source}: two analyses are named {twice[0]!r}; give each a distinct 'name'")
    taken = {*STUDY_FILES, *(f"{n}.png" for n in names)}
    clash = sorted(taken & set(labels))
    if clash:
        raise LandscapeError(f"{source}: label {clash[0]!r} is the name of a file the study writes; choose another")
    return spec


def find_study(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or the bundled study of that name (``digits_demo``)."""
    path = Path(path)
    if not path.is_file() and path.suffix == "" and (BUNDLED / f"{path.name}.toml").is_file():
        path = BUNDLED / f"{path.name}.toml"
    if not path.is_file():
        bundled = ", ".join(sorted(p.stem for p in BUNDLED.glob("*.toml")))
        raise LandscapeError(f"study file not found: {path} (bundled studies: {bundled})")
    return path


def load_study(path: str | os.PathLike[str], *, commands: Commands) -> dict[str, Any]:
    """Read and check a study file; returns the parsed TOML with defaults filled in."""
    path = find_study(path)
    try:
        spec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise LandscapeError(f"{path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LandscapeError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    check_study(spec, commands=commands, source=str(path))
    spec["study"].setdefault("out", f"runs/{path.stem}")
    return spec
