"""One table of bad inputs through the real CLI: each is refused with exit ≠ 0, exactly one stderr line starting
with "error:", no traceback, no new file in its folder (no result, no temp or lock litter), no code run.

Every case runs as its own ``landscape`` process (see ``_support.CLI``) in a folder of its own holding copies of
its inputs; hostile inputs try to create the file ``PWNED`` there. The processes run a few at a time (module
fixture); each case is then one test that reads its outcome.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from ._support import CLI, Result, one_error_line, record_figure, run_real, snapshot

FORMAT = "landscape.checkpoint/1"
HUGE = "1000000000000"  # 1e12 points/samples: more than any machine can hold, so a refusal is certain
SEED_2_64 = str(2**64)


# ---------------------------------------------------------------------------------------------------------------
# Inputs: shared assets made once, copied into each case's own folder.
@dataclass(frozen=True)
class Assets:
    ckpt: Path
    se_ckpt: Path
    plain: Path
    run: Path
    surface: Path
    mods: Path


SURFACE_ARGS = ["--x", "-1:1:3", "--n-samples", "16", "--quiet"]

MODULES = {
    "rel_boom_import": "raise RuntimeError('boom at import')\n",
    "rel_syntax": "def make(:\n    pass\n",
    "rel_raises": "def make(**options):\n    raise ValueError('this model needs a GPU cluster')\n",
    "rel_needs_args": "from landscape.models import build_model\n\n"
                      "def make(depth, *, num_classes, in_channels):\n"
                      "    return build_model('resnet8', num_classes=num_classes, in_channels=in_channels)\n",
    "rel_returns_none": "def make(**options):\n    return None\n",
    "rel_keyerror": "def make(**options):\n    raise KeyError('width')\n",
}


class _Call:
    """Pickles as a call of ``fn(*args)``: what a hostile pickle does on load."""

    def __init__(self, fn: Callable, *args: object) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


class Env:
    """A case's own folder and the builders of its inputs (all written into that folder)."""

    def __init__(self, root: Path, assets: Assets) -> None:
        self.root, self.assets = root, assets
        self.marker = root / "PWNED"

    def copy(self, src: Path, name: str | None = None) -> Path:
        dst = self.root / (name or src.name)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)
        return dst

    def ckpt(self, name: str = "model.pt") -> Path:
        return self.copy(self.assets.ckpt, name)

    def se(self) -> Path:
        return self.copy(self.assets.se_ckpt, "se.pt")

    def plain(self) -> Path:
        return self.copy(self.assets.plain, "plain.pt")

    def write(self, name: str, data: bytes | str) -> Path:
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        return p

    def raw_ckpt(self, name: str = "odd.pt", src: Path | None = None, **fields: object) -> Path:
        """A copy of the checkpoint with some of its top-level fields replaced (or removed, for None)."""
        obj = torch.load(src or self.assets.ckpt, map_location="cpu", weights_only=True)
        for k, v in fields.items():
            if v is None:
                obj.pop(k, None)
            else:
                obj[k] = v
        torch.save(obj, self.root / name)
        return self.root / name

    def meta(self, name: str = "odd.pt", **meta: object) -> Path:
        """A checkpoint whose metadata is the tiny run's, updated with ``meta``."""
        own = json.loads(torch.load(self.assets.ckpt, weights_only=True)["meta"])
        return self.raw_ckpt(name, meta=json.dumps({**own, **meta}))

    def hostile(self, spec: str = "os:system", name: str = "evil.pt", option: str = "command") -> Path:
        """A weights-only-loadable checkpoint whose metadata names ``spec`` as its model, with an option that
        would create the marker file."""
        code = f"touch {self.marker}" if option in ("command", "cmd") else f"open({str(self.marker)!r}, 'w')"
        return self.meta(name, model=spec, model_options={option: code})

    def hostile_run(self) -> Path:
        run = self.copy(self.assets.run, "run")
        for p in run.glob("epoch_*.pt"):
            p.unlink()
            self.hostile(name=f"run/{p.name}")
        return run

    def nonfinite(self, value: float, src: Path | None = None, name: str = "nan.pt") -> Path:
        obj = torch.load(src or self.assets.ckpt, map_location="cpu", weights_only=True)
        key = next(k for k, v in obj["state_dict"].items() if k.endswith("weight") and v.dim() >= 2)
        obj["state_dict"][key] = torch.full_like(obj["state_dict"][key], value)
        torch.save(obj, self.root / name)
        return self.root / name

    def pickle(self, fn: Callable, *args: object, name: str = "evil.pkl", zipped: bool = False) -> Path:
        p = self.root / name
        if zipped:
            torch.save(_Call(fn, *args), p)
        else:
            p.write_bytes(pickle.dumps(_Call(fn, *args), protocol=2))
        return p

    def surface(self, damage: Callable[[h5py.File], None] | None = None, *, raw: bytes | None = None) -> Path:
        p = self.copy(self.assets.surface, "surf.h5")
        if raw is not None:
            p.write_bytes(raw)
        elif damage is not None:
            with h5py.File(p, "r+") as f:
                damage(f)
        return p

    def study(self, text: str, name: str = "study.toml") -> Path:
        return self.write(name, text)


# ---------------------------------------------------------------------------------------------------------------
# Command lines (small and fast when the input is fine).
def evaluate(c: Path, *extra: object) -> list:
    return ["evaluate", c, "--n-samples", "16", *extra]


def surface(c: Path, *extra: object) -> list:
    return ["surface", c, *SURFACE_ARGS, *extra]


def hessian(c: Path, *extra: object) -> list:
    return ["hessian", c, "--top-k", "1", "--n-samples", "16", "--quiet", *extra]


def predictiveness(c: Path, *extra: object) -> list:
    return ["predictiveness", c, "--batches", "1", "--batch-size", "8", "--eta", "0.1:0.2:2", "--n-samples", "16",
            "--quiet", *extra]


def inputspace(c: Path, *extra: object) -> list:
    return ["inputspace", c, "--samples", "2", "--radius", "0:1:2", "--quiet", *extra]


def attention(c: Path, *extra: object) -> list:
    return ["attention", c, "--samples", "8", "--quiet", *extra]


def train(model: str, *extra: object) -> list:
    return ["train", model, "--epochs", "1", "--n-train", "64", "--out", "run", "--quiet", *extra]


LOADERS: dict[str, Callable[..., list]] = {"evaluate": evaluate, "surface": surface, "hessian": hessian,
                                           "predictiveness": predictiveness, "inputspace": inputspace,
                                           "attention": attention}

STUDY = """\
[study]
out = {out}

[[models]]
model = {model}
label = {label}
{model_extra}
[train]
n-train = 64
epochs = {epochs}
quiet = true
{train_extra}
[[analyses]]
command = "evaluate"
n-samples = 16
{analysis_extra}
"""


def study_text(**changes: str) -> str:
    values = {"out": '"out"', "model": '"resnet8"', "label": '"r8"', "epochs": "1", "model_extra": "",
              "train_extra": "", "analysis_extra": ""}
    return STUDY.format(**{**values, **changes})


def study(e: Env, *extra: object, **changes: str) -> list:
    return ["study", e.study(study_text(**changes)), *extra]


# Surface damages: a copy of a good 3-point 1D surface, altered.
def _replace(name: str, data: np.ndarray) -> Callable[[h5py.File], None]:
    def damage(f: h5py.File) -> None:
        del f[name]
        f.create_dataset(name, data=data)
    return damage


def _set_attr(key: str, value: object) -> Callable[[h5py.File], None]:
    def damage(f: h5py.File) -> None:
        f.attrs[key] = value
    return damage


def _delete(name: str) -> Callable[[h5py.File], None]:
    def damage(f: h5py.File) -> None:
        del f[name]
    return damage


def _add(name: str, data: np.ndarray) -> Callable[[h5py.File], None]:
    def damage(f: h5py.File) -> None:
        f.create_dataset(name, data=data)
    return damage


def _truncated(e: Env) -> bytes:
    data = e.assets.surface.read_bytes()
    return data[: len(data) // 2]


DAMAGES: dict[str, Callable[[Env], Path]] = {
    "no-xcoordinates": lambda e: e.surface(_delete("xcoordinates")),
    "done-wrong-shape": lambda e: e.surface(_replace("done", np.ones(2, dtype=bool))),
    "done-2d-for-1d": lambda e: e.surface(_replace("done", np.ones((3, 3), dtype=bool))),
    "loss-wrong-shape": lambda e: e.surface(_replace("train_loss", np.zeros(5))),
    "split-attr-not-utf8": lambda e: e.surface(_set_attr("split", np.bytes_(b"\xff\xfe\x00"))),
    "split-attr-number": lambda e: e.surface(_set_attr("split", 7)),
    "stray-ycoordinates": lambda e: e.surface(_add("ycoordinates", np.linspace(-1, 1, 3))),
    "no-directions": lambda e: e.surface(_delete("directions")),
    "truncated": lambda e: e.surface(raw=_truncated(e)),
    "text": lambda e: e.surface(raw=b"not an HDF5 file\n"),
    "empty": lambda e: e.surface(raw=b""),
}


@dataclass(frozen=True)
class Case:
    """One bad input: ``argv(env)`` builds the inputs in the case folder and returns the command line.

    ``fragment``: text the error line must contain; ``forbid``: text it must not; ``warn_ok``: exit 0 is also
    accepted if stderr warns clearly (matching ``fragment``) — for inputs the issue says to refuse *or* warn about.
    """

    id: str
    argv: Callable[[Env], list]
    fragment: str | None = None
    forbid: str | None = None
    warn_ok: bool = False
    timeout: float = 60


def _cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append

    # -- Critical: a checkpoint's JSON metadata names code to run.
    for name, build in LOADERS.items():
        add(Case(f"hostile-meta-{name}", lambda e, b=build: b(e.hostile()), fragment="os:system"))
    add(Case("hostile-meta-surface-target", lambda e: surface(e.ckpt(), "--dir", "target", "--target", e.hostile()),
             fragment="os:system"))
    add(Case("hostile-meta-surface-trajectory",
             lambda e: surface(e.ckpt(), "--dir", "pca", "--trajectory", e.hostile_run()), fragment="os:system"))
    add(Case("hostile-meta-posix-system", lambda e: evaluate(e.hostile("posix:system")), fragment="posix:system"))
    add(Case("hostile-meta-subprocess", lambda e: evaluate(e.hostile("subprocess:getoutput", option="cmd")),
             fragment="subprocess:getoutput"))
    add(Case("hostile-meta-builtins-exec", lambda e: evaluate(e.hostile("builtins:exec", option="source")),
             fragment="builtins:exec"))

    # -- Malformed metadata.
    for cid, kw in {
        "meta-not-json": {"meta": "{not json"},
        "meta-json-list": {"meta": "[1, 2]"},
        "meta-json-string": {"meta": '"resnet8"'},
        "meta-missing": {"meta": None},
        "meta-a-tensor": {"meta": torch.zeros(3)},
        "state-dict-a-tensor": {"state_dict": torch.zeros(3)},
        "state-dict-of-ints": {"state_dict": {"conv1.weight": 3}},
        "state-dict-missing": {"state_dict": None},
    }.items():
        add(Case(cid, lambda e, kw=kw: evaluate(e.raw_ckpt(**kw))))
    for cid, meta in {
        "meta-model-a-number": {"model": 123},
        "meta-model-a-list": {"model": ["resnet8"]},
        "meta-options-a-string": {"model_options": "wide"},
        "meta-options-a-list": {"model_options": [1, 2]},
        "meta-option-width-text": {"model_options": {"width": "wide"}},
        "meta-option-merge-bogus": {"model_options": {"merge": "bogus"}},
        "meta-num-classes-text": {"num_classes": "ten"},
        "meta-num-classes-negative": {"num_classes": -3},
        "meta-in-channels-list": {"in_channels": [1]},
        "meta-dataset-a-number": {"dataset": 5},
    }.items():
        add(Case(cid, lambda e, m=meta: evaluate(e.meta(**m))))
    add(Case("meta-not-json-surface", lambda e: surface(e.raw_ckpt(meta="{not json"))))
    add(Case("meta-not-json-hessian", lambda e: hessian(e.raw_ckpt(meta="{not json"))))
    add(Case("meta-options-a-string-surface", lambda e: surface(e.meta(model_options="wide"))))

    # -- A user's module:callable (passed by the user, on a plain state dict) that misbehaves.
    for mod in ("rel_boom_import", "rel_syntax", "rel_raises", "rel_needs_args", "rel_returns_none",
                "rel_keyerror"):
        add(Case(f"user-callable-{mod.removeprefix('rel_').replace('_', '-')}-evaluate",
                 lambda e, m=mod: evaluate(e.plain(), "--model", f"{m}:make"), fragment=mod))
    for mod in ("rel_boom_import", "rel_raises", "rel_needs_args", "rel_syntax"):
        add(Case(f"user-callable-{mod.removeprefix('rel_').replace('_', '-')}-train",
                 lambda e, m=mod: train(f"{m}:make"), fragment=mod))
    add(Case("user-callable-missing-module", lambda e: evaluate(e.plain(), "--model", "rel_no_such_module:make")))

    # -- Bad --model-option / --width values.
    for value in ("width=abc", "width=-1", "width=0", "width=nan", "width=inf", "merge=bogus", "attention=bogus",
                  "merge=3", "noequals", "bogus_key=1"):
        add(Case(f"model-option-{value}-evaluate",
                 lambda e, v=value: evaluate(e.plain(), "--model", "resnet8", "--model-option", v)))
    for value in ("width=abc", "merge=3", "width=-1", "attention=bogus"):
        add(Case(f"model-option-{value}-train", lambda e, v=value: train("resnet8", "--model-option", v)))
    for value in ("-2", "0", "nan", "inf"):
        add(Case(f"width-{value}-train", lambda e, v=value: train("resnet8", "--width", v)))

    # -- Requests too large to hold: refused up front.
    add(Case("huge-width-train", lambda e: train("resnet8", "--width", "1e6")))
    add(Case("huge-width-evaluate", lambda e: evaluate(e.plain(), "--model", "resnet8", "--model-option",
                                                       "width=1e6")))
    add(Case("huge-grid-2d", lambda e: ["surface", e.ckpt(), "--x", "-1:1:1000000", "--y", "-1:1:1000000",
                                        "--n-samples", "16", "--quiet"]))
    add(Case("huge-grid-1d", lambda e: ["surface", e.ckpt(), "--x", f"-1:1:{HUGE}", "--n-samples", "16", "--quiet"]))
    add(Case("huge-grid-1e20", lambda e: ["surface", e.ckpt(), "--x", "-1:1:100000000000000000000", "--n-samples",
                                          "16", "--quiet"]))
    add(Case("huge-radius-grid", lambda e: ["inputspace", e.ckpt(), "--samples", "2", "--radius", f"0:1:{HUGE}",
                                            "--quiet"]))
    add(Case("huge-sigma-grid", lambda e: ["inputspace", e.ckpt(), "--mode", "noise", "--samples", "2", "--sigma",
                                           f"0:1:{HUGE}", "--quiet"]))
    add(Case("huge-between-steps", lambda e: ["inputspace", e.ckpt(), "--mode", "between", "--pairs", "2",
                                              "--steps", HUGE, "--quiet"]))
    add(Case("huge-n-directions", lambda e: ["inputspace", e.ckpt(), "--samples", "2", "--n-directions", HUGE,
                                             "--radius", "0:1:2", "--quiet"]))
    add(Case("huge-eta-grid", lambda e: ["predictiveness", e.ckpt(), "--batches", "1", "--batch-size", "8",
                                         "--eta", f"0.1:0.2:{HUGE}", "--n-samples", "16", "--quiet"]))
    add(Case("huge-probe-eta-grid", lambda e: train("resnet8", "--probe-every", "1", "--probe-eta",
                                                    f"0.1:0.2:{HUGE}")))
    add(Case("huge-synthetic-train", lambda e: train("resnet8", "--dataset", "synthetic-3x1000000x1000000")))
    add(Case("huge-synthetic-evaluate", lambda e: evaluate(e.ckpt(), "--dataset", "synthetic-1x1000000x1000000")))
    add(Case("huge-top-k", lambda e: hessian(e.ckpt(), "--top-k", HUGE)))
    add(Case("huge-lanczos-steps", lambda e: ["hessian", e.ckpt(), "--top-k", "0", "--density", "--lanczos-steps",
                                              HUGE, "--n-samples", "16", "--quiet"]))
    add(Case("huge-trace-probes", lambda e: ["hessian", e.ckpt(), "--top-k", "0", "--trace", "--probes", HUGE,
                                             "--n-samples", "16", "--quiet"], timeout=20))

    # -- Seeds beyond 64 bits.
    for name, build in LOADERS.items():
        src = (lambda e: e.se()) if name == "attention" else (lambda e: e.ckpt())
        add(Case(f"seed-2^64-{name}", lambda e, b=build, s=src: b(s(e), "--seed", SEED_2_64), fragment="seed"))
    add(Case("seed-2^64-train", lambda e: train("resnet8", "--seed", SEED_2_64), fragment="seed"))
    add(Case("seed-2^70-surface", lambda e: surface(e.ckpt(), "--seed", str(2**70)), fragment="seed"))

    # -- Empty synthetic sets.
    add(Case("synthetic-0-channels-train", lambda e: train("resnet8", "--dataset", "synthetic-0x8x8")))
    add(Case("synthetic-0x0-images-train", lambda e: train("resnet8", "--dataset", "synthetic-1x0x0")))
    add(Case("synthetic-0-rows-evaluate", lambda e: evaluate(e.ckpt(), "--dataset", "synthetic-1x0x8")))
    add(Case("synthetic-0x0-surface", lambda e: surface(e.ckpt(), "--dataset", "synthetic-1x0x0")))

    # -- Non-finite weights: refused, or a clear warning.
    for name, build in LOADERS.items():
        src = (lambda e, v: e.nonfinite(v, e.assets.se_ckpt)) if name == "attention" else \
            (lambda e, v: e.nonfinite(v))
        add(Case(f"nan-weights-{name}", lambda e, b=build, s=src: b(s(e, float("nan"))), fragment="nan",
                 warn_ok=True))
    add(Case("inf-weights-evaluate", lambda e: evaluate(e.nonfinite(float("inf"))), fragment="inf", warn_ok=True))
    add(Case("inf-weights-hessian", lambda e: hessian(e.nonfinite(float("inf"))), fragment="inf", warn_ok=True))

    # -- Damaged surface files in info, plot and resume.
    for dname, make in DAMAGES.items():
        if dname == "no-directions":  # info and plot do not need the directions; a resume does
            add(Case(f"damaged-surface-{dname}-resume",
                     lambda e, m=make: ["surface", e.ckpt(), *SURFACE_ARGS, "--out", m(e)]))
            continue
        add(Case(f"damaged-surface-{dname}-info", lambda e, m=make: ["info", m(e)]))
        add(Case(f"damaged-surface-{dname}-plot", lambda e, m=make: ["plot", m(e)]))
        add(Case(f"damaged-surface-{dname}-resume",
                 lambda e, m=make: ["surface", e.ckpt(), *SURFACE_ARGS, "--out", m(e)]))
    add(Case("damaged-surface-compare", lambda e: ["compare", e.assets.surface, DAMAGES["done-wrong-shape"](e),
                                                   "--out", "cmp.png"]))

    # -- Study files.
    add(Case("study-epochs-a-string", lambda e: study(e, epochs='"two"')))
    add(Case("study-out-a-number", lambda e: study(e, out="5")))
    add(Case("study-out-a-list", lambda e: study(e, out='["a", "b"]')))
    add(Case("study-model-a-number", lambda e: study(e, model="5")))
    add(Case("study-label-a-number", lambda e: study(e, label="5")))
    add(Case("study-label-escapes", lambda e: study(e, out='"deep/er/out"', label='"../../x"')))
    add(Case("study-label-absolute", lambda e: study(e, label=json.dumps(str(e.root / "abs")))))
    add(Case("study-label-empty", lambda e: study(e, label='""')))
    add(Case("study-label-dot", lambda e: study(e, label='"."')))
    add(Case("study-unknown-study-key", lambda e: study(e, out='"out"\noutt = "x"')))
    add(Case("study-epochs-a-list", lambda e: study(e, epochs="[1, 2]")))
    add(Case("study-train-option-typo", lambda e: study(e, train_extra="epoch = 1")))
    add(Case("study-model-option-typo", lambda e: study(e, model_extra="lrr = 0.1")))
    add(Case("study-analysis-option-typo", lambda e: study(e, analysis_extra="n-sample = 16")))
    add(Case("study-analysis-value-bad", lambda e: study(e, analysis_extra='[[analyses]]\ncommand = "surface"\n'
                                                                           'x = "5"\nn-samples = 16\nquiet = true')))
    add(Case("study-analysis-name-escapes",
             lambda e: study(e, out='"deep/er/out"', analysis_extra='[[analyses]]\ncommand = "surface"\n'
                                                                    'name = "../../escape"\nx = "-1:1:3"\n'
                                                                    'n-samples = 16\nquiet = true')))
    add(Case("study-compare-not-a-table",
             lambda e: study(e, analysis_extra='[[analyses]]\ncommand = "surface"\nx = "-1:1:3"\n'
                                               'n-samples = 16\nquiet = true\ncompare = 5')))
    add(Case("study-dataset-a-number", lambda e: study(e, train_extra="dataset = 5")))
    add(Case("study-figure-prefix-escapes",
             lambda e: study(e, "--figures", "figs", out='"out"\nfigure_prefix = "../../pwn-"',
                             analysis_extra='[[analyses]]\ncommand = "surface"\nx = "-1:1:3"\n'
                                            'n-samples = 16\nquiet = true')))
    add(Case("study-record-corrupt", lambda e: (e.write("out/study.json", "{garbage"), study(e))[1]))
    add(Case("study-record-a-list", lambda e: (e.write("out/study.json", "[1, 2]"), study(e))[1]))
    add(Case("study-record-binary", lambda e: (e.write("out/study.json", b"\x00\xff\xfe"), study(e))[1]))
    add(Case("study-out-under-a-file", lambda e: (e.write("blocker", ""), study(e, "--out", e.root / "blocker" / "s"))[1]))
    add(Case("study-out-in-proc", lambda e: study(e, "--out", "/proc/landscape-study")))
    add(Case("study-not-toml", lambda e: ["study", e.write("s.toml", b"\x00\x01garbage = = =")]))

    # -- Checkpoint files of the wrong kind.
    def fifo(e: Env) -> Path:
        p = e.root / "fifo.pt"
        os.mkfifo(p)
        return p

    add(Case("fifo-checkpoint-evaluate", lambda e: evaluate(fifo(e)), timeout=20))
    add(Case("fifo-checkpoint-surface", lambda e: surface(fifo(e)), timeout=20))
    add(Case("fifo-target", lambda e: surface(e.ckpt(), "--dir", "target", "--target", fifo(e)), timeout=20))
    add(Case("dev-zero-checkpoint", lambda e: evaluate(Path("/dev/zero")), forbid="empty file", timeout=20))
    add(Case("dev-null-checkpoint", lambda e: evaluate(Path("/dev/null")), timeout=20))
    add(Case("huge-sparse-checkpoint", lambda e: evaluate(_sparse(e.root / "sparse.pt", 64 << 30)), timeout=20))
    add(Case("pickle-builtins-exec", lambda e: evaluate(e.pickle(exec, f"open({str(e.marker)!r}, 'w')")),
             fragment="builtins.exec"))
    add(Case("pickle-builtins-eval", lambda e: evaluate(e.pickle(eval, f"open({str(e.marker)!r}, 'w')")),
             fragment="builtins.eval"))
    add(Case("torch-zip-builtins-exec",
             lambda e: evaluate(e.pickle(exec, f"open({str(e.marker)!r}, 'w')", name="evil.pt", zipped=True)),
             fragment="builtins.exec"))
    add(Case("pickle-os-system", lambda e: evaluate(e.pickle(os.system, f"touch {e.marker}")), fragment="system"))
    add(Case("truncated-checkpoint",
             lambda e: evaluate(e.write("cut.pt", e.assets.ckpt.read_bytes()[: e.assets.ckpt.stat().st_size * 2 // 5]))))
    add(Case("empty-checkpoint", lambda e: evaluate(e.write("empty.pt", b"")), fragment="empty"))
    add(Case("text-checkpoint", lambda e: evaluate(e.write("notes.pt", "these are not weights\n"))))
    add(Case("foreign-zip-checkpoint", lambda e: evaluate(_zip(e.root / "z.pt"))))
    add(Case("list-checkpoint", lambda e: evaluate(_torch_save(e.root / "list.pt", [1, 2, 3]))))
    add(Case("missing-checkpoint", lambda e: evaluate(e.root / "nope.pt")))
    add(Case("folder-checkpoint", lambda e: evaluate(e.root)))
    add(Case("truncated-trajectory", lambda e: surface(e.ckpt(), "--dir", "pca", "--trajectory", _cut_run(e))))

    # -- Outputs that cannot be written.
    add(Case("surface-out-in-proc", lambda e: surface(e.ckpt(), "--out", "/proc/x.h5")))
    add(Case("hessian-out-under-a-file", lambda e: hessian(e.ckpt(), "--out", e.write("blocker", "") / "h.h5")))
    add(Case("predictiveness-out-a-folder", lambda e: predictiveness(e.ckpt(), "--out", f"{e.root}/")))
    add(Case("train-out-in-proc", lambda e: ["train", "resnet8", "--epochs", "1", "--n-train", "64", "--out",
                                             "/proc/run", "--quiet"]))
    add(Case("plot-out-in-proc", lambda e: ["plot", e.surface(), "--out", "/proc/x.png"]))
    return cases


def _sparse(p: Path, size: int) -> Path:
    with open(p, "wb") as f:
        f.truncate(size)
    return p


def _zip(p: Path) -> Path:
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("readme.txt", "hello")
    return p


def _torch_save(p: Path, obj: object) -> Path:
    torch.save(obj, p)
    return p


def _cut_run(e: Env) -> Path:
    run = e.copy(e.assets.run, "run")
    last = sorted(run.glob("epoch_*.pt"))[-1]
    last.write_bytes(last.read_bytes()[:1000])
    return run


CASES = _cases()
assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def assets(cli: CLI, tiny_run: Path, tiny_se_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Assets:
    root = tmp_path_factory.mktemp("bad-input-assets")
    ckpt = root / "model.pt"
    shutil.copyfile(tiny_run / "final.pt", ckpt)
    plain = root / "plain.pt"
    torch.save(torch.load(ckpt, weights_only=True)["state_dict"], plain)
    res = cli.run(["surface", ckpt, *SURFACE_ARGS, "--out", root / "surf.h5"], cwd=root)
    assert res.returncode == 0, res.summary()
    mods = root / "mods"
    mods.mkdir()
    for name, text in MODULES.items():
        (mods / f"{name}.py").write_text(text)
    return Assets(ckpt, tiny_se_ckpt, plain, tiny_run, root / "surf.h5", mods)


@dataclass
class Outcome:
    case: Case
    env: Env
    result: Result | None
    before: dict
    after: dict
    setup_error: str | None = None


def run_case(cli_run: Callable[..., Result], case: Case, assets: Assets, root: Path) -> Outcome:
    """Build the case's inputs in its own folder, run it, and record the folder before and after."""
    folder = root / case.id.replace("/", "_")
    folder.mkdir(parents=True)
    env = Env(folder, assets)
    try:
        argv = case.argv(env)
    except Exception as exc:  # a bug in the table, not in the library
        return Outcome(case, env, None, {}, {}, setup_error=f"{type(exc).__name__}: {exc}")
    before = snapshot(folder)
    res = cli_run(argv, cwd=folder, timeout=case.timeout, path=[assets.mods])
    return Outcome(case, env, res, before, snapshot(folder))


def problems(o: Outcome) -> list[str]:
    """Everything wrong with one outcome (empty: the input was handled)."""
    if o.setup_error:
        return [f"setup failed: {o.setup_error}"]
    res, case = o.result, o.case
    assert res is not None
    out: list[str] = []
    if o.env.marker.exists():
        out.append("CODE RAN: the marker file was created")
    why = one_error_line(res)
    line = next((ln for ln in res.stderr.splitlines() if ln.strip()), "")
    warned = (case.warn_ok and res.returncode == 0 and "Traceback" not in res.stderr
              and case.fragment is not None and case.fragment.lower() in res.stderr.lower())
    if why and not warned:
        out.append(why)
    if why is None or warned:
        if case.fragment and case.fragment.lower() not in (res.stderr.lower() if warned else line.lower()):
            out.append(f"message lacks {case.fragment!r}")
        if case.forbid and case.forbid.lower() in line.lower():
            out.append(f"message says {case.forbid!r}")
    if not warned:
        new = sorted(set(o.after) - set(o.before))
        if new:
            out.append(f"left new file(s) {new[:4]}")
    return out


@pytest.fixture(scope="module")
def outcomes(cli: CLI, assets: Assets, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    root = tmp_path_factory.mktemp("bad-inputs")
    with ThreadPoolExecutor(max_workers=int(os.environ.get("LANDSCAPE_RELIABILITY_WORKERS", "3"))) as pool:
        done = list(pool.map(lambda c: run_case(cli.run, c, assets, root), CASES))
    handled = sum(not problems(o) for o in done)
    report = os.environ.get("LANDSCAPE_RELIABILITY_REPORT")
    if report:  # one line per case, for reading the whole table at once
        with open(report, "w") as f:
            for o in done:
                r = o.result
                first = next((ln for ln in r.stderr.splitlines() if ln.strip()), "") if r else o.setup_error
                f.write(f"{'ok  ' if not problems(o) else 'FAIL'} {o.case.id:45} "
                        f"{'-' if r is None else r.returncode!s:>4} {0 if r is None else r.seconds:6.1f}s "
                        f"{'; '.join(problems(o))} | {first}\n")
    record_figure("bad_inputs", tried=len(done), handled=handled)
    return {o.case.id: o for o in done}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_in_one_line(case: Case, outcomes: dict[str, Outcome]) -> None:
    o = outcomes[case.id]
    found = problems(o)
    assert not found, f"{'; '.join(found)} | {o.result.summary() if o.result else ''}\n{o.result.stderr[-2000:] if o.result else ''}"


def test_table_is_large_and_data_driven() -> None:
    assert len(CASES) >= 80


@pytest.mark.parametrize("case_id", ["meta-not-json", "text-checkpoint"])
def test_zygote_agrees_with_a_fresh_interpreter(case_id: str, cli: CLI, assets: Assets, tmp_path: Path) -> None:
    """The forked processes the table uses behave as `python -c 'from landscape.cli import main; main()'`."""
    case = next(c for c in CASES if c.id == case_id)
    forked = run_case(cli.run, case, assets, tmp_path / "forked")
    fresh = run_case(lambda argv, **kw: run_real(argv, cwd=kw["cwd"], env={"PYTHONPATH": str(assets.mods)},
                                                 timeout=kw["timeout"]), case, assets, tmp_path / "fresh")
    assert forked.result and fresh.result
    norm = [r.stderr.replace(str(tmp_path / d), "<case>") for r, d in ((forked.result, "forked"),
                                                                        (fresh.result, "fresh"))]
    assert (forked.result.returncode, norm[0], "Traceback" in forked.result.stderr) == \
        (fresh.result.returncode, norm[1], "Traceback" in fresh.result.stderr)
    assert sorted(set(forked.after) - set(forked.before)) == sorted(set(fresh.after) - set(fresh.before))
