"""Support of the reliability suite (also used by tests/slow): real ``landscape`` processes forked from a warm
zygote, tiny runs made through the CLI, and the checks every case shares (one error line, no traceback, no litter,
bit-for-bit comparisons)."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LITTER = re.compile(r"(\.tmp$|\.lock$|^\.[^/]*\.tmp)")


@dataclass
class Result:
    """The outcome of one CLI process."""

    argv: list[str]
    returncode: int | None  # None: still running when the timeout hit (then killed)
    stdout: str
    stderr: str
    seconds: float
    pid: int

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def summary(self) -> str:
        first = self.stderr.strip().splitlines()[:1]
        return (f"landscape {' '.join(self.argv)} -> exit {self.returncode}, "
                f"stderr[0]={first[0] if first else ''!r} ({len(self.stderr.splitlines())} line(s))")


class Proc:
    """A running CLI process started by :class:`CLI`."""

    def __init__(self, cli: CLI, rid: str, argv: list[str], out: Path, err: Path) -> None:
        self.cli, self.id, self.argv, self._out, self._err = cli, rid, argv, out, err
        self.started = time.perf_counter()
        self.pid: int = cli._await(rid, "pid", timeout=60)
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is None:
            self.returncode = self.cli._await(self.id, "status", timeout=timeout)
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the process (and anything it started)."""
        for target in (lambda: os.killpg(self.pid, signal.SIGKILL), lambda: os.kill(self.pid, signal.SIGKILL)):
            try:
                target()
            except (ProcessLookupError, PermissionError):
                pass

    def result(self, timeout: float | None = None) -> Result:
        code = self.wait(timeout)
        seconds = time.perf_counter() - self.started
        if code is None:
            self.kill()
            self.wait(30)
        return Result(self.argv, code, self._out.read_text(errors="replace"), self._err.read_text(errors="replace"),
                      seconds, self.pid)


class CLI:
    """Starts real ``landscape`` processes by asking the zygote (see ``_zygote.py``) to fork them."""

    def __init__(self, io_dir: Path) -> None:
        self.io_dir = io_dir
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "MPLBACKEND": "Agg",
               "PYTHONDONTWRITEBYTECODE": "1"}
        self._proc = subprocess.Popen([sys.executable, str(HERE / "_zygote.py")], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env, cwd=io_dir)
        self._ids = itertools.count()
        self._msgs: dict[str, dict] = {}
        self._cond = threading.Condition()
        first = json.loads(self._proc.stdout.readline() or b'{"ready": null}')
        if not first.get("ready"):
            raise RuntimeError("the CLI zygote did not start")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            msg = json.loads(line)
            with self._cond:
                self._msgs.setdefault(msg["id"], {}).update(msg)
                self._cond.notify_all()

    def _await(self, rid: str, key: str, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while key not in self._msgs.get(rid, {}):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            return self._msgs[rid][key]

    def start(self, argv: Sequence[object], *, cwd: Path, env: dict[str, str] | None = None,
              path: Iterable[Path] = (), fsize: int | None = None, inject: dict | None = None) -> Proc:
        rid = str(next(self._ids))
        argv = [str(a) for a in argv]
        out, err = self.io_dir / f"{rid}.out", self.io_dir / f"{rid}.err"
        req = {"id": rid, "argv": argv, "cwd": str(cwd), "stdout": str(out), "stderr": str(err), "env": env or {},
               "path": [str(p) for p in path], "fsize": fsize, "inject": inject}
        self._proc.stdin.write((json.dumps(req) + "\n").encode())
        self._proc.stdin.flush()
        return Proc(self, rid, argv, out, err)

    def run(self, argv: Sequence[object], *, cwd: Path, timeout: float = 120, **kw) -> Result:
        return self.start(argv, cwd=cwd, **kw).result(timeout)

    def close(self) -> None:
        self._proc.stdin.close()
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()


def run_real(argv: Sequence[object], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
    """The same as :meth:`CLI.run` through a fresh interpreter (slow: for cross-checking the zygote)."""
    argv = [str(a) for a in argv]
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *(env or {}).get("PYTHONPATH", "").split(
        os.pathsep)]), "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", **{k: v for k, v in (env or {}).items()
                                                                              if k != "PYTHONPATH"}}
    t0 = time.perf_counter()
    with subprocess.Popen([sys.executable, "-c", "from landscape.cli import main; main()", *argv], cwd=cwd,
                          env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          start_new_session=True) as p:
        try:
            out, err = p.communicate(timeout=timeout)
            code: int | None = p.returncode
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            code = None
    return Result(argv, code, out.decode(errors="replace"), err.decode(errors="replace"), time.perf_counter() - t0,
                  p.pid)


@pytest.fixture(scope="session")
def cli(tmp_path_factory: pytest.TempPathFactory):
    c = CLI(tmp_path_factory.mktemp("cli-io"))
    yield c
    c.close()


# ---------------------------------------------------------------------------------------------------------------
# Tiny runs made through the CLI itself (seconds).
@pytest.fixture(scope="session")
def tiny_run(cli: CLI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet8 run folder on digits: 2 epochs on 256 samples (epoch_0000..0002.pt, final.pt, last.pt)."""
    root = tmp_path_factory.mktemp("tiny")
    res = cli.run(["train", "resnet8", "--epochs", "2", "--n-train", "256", "--out", root / "run", "--quiet"], cwd=root)
    assert res.returncode == 0, res.summary()
    return root / "run"


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_run: Path) -> Path:
    return tiny_run / "final.pt"


@pytest.fixture(scope="session")
def tiny_se_ckpt(cli: CLI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An se_resnet8 checkpoint (attention modules), 1 epoch on 128 samples."""
    root = tmp_path_factory.mktemp("tiny_se")
    res = cli.run(["train", "se_resnet8", "--epochs", "1", "--n-train", "128", "--out", root / "run", "--quiet"],
                  cwd=root)
    assert res.returncode == 0, res.summary()
    return root / "run" / "final.pt"


# ---------------------------------------------------------------------------------------------------------------
# Shared checks.
def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: relative path -> (size, mtime_ns)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() or p.is_symlink() or p.is_fifo():
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def litter(root: Path) -> list[str]:
    """Temporary and lock files left under ``root``."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if LITTER.search(p.name))


def one_error_line(res: Result) -> str | None:
    """Why ``res`` is not a clean one-line refusal (exit ≠ 0, one stderr line 'error: ...', no traceback); None if
    it is."""
    if res.timed_out:
        return f"still running after {res.seconds:.0f} s (killed)"
    if res.returncode == 0:
        return "exit 0"
    if res.returncode < 0:
        return f"killed by signal {-res.returncode}"
    if "Traceback" in res.stderr or "Traceback" in res.stdout:
        return "traceback"
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    if len(lines) != 1:
        return f"{len(lines)} stderr lines"
    if not lines[0].startswith("error:"):
        return "stderr line does not start with 'error:'"
    return None


def h5_arrays(path: Path, *, skip: Iterable[str] = ("point_seconds", "seconds")) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file (by name), minus timing ones."""
    import h5py

    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r", locking=False) as f:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset) and name.split("/")[-1] not in skip:
                out[name] = obj[()]
        f.visititems(visit)
    return out


def assert_same_h5(a: Path, b: Path, **kw) -> None:
    xa, xb = h5_arrays(a, **kw), h5_arrays(b, **kw)
    assert sorted(xa) == sorted(xb), (a, b)
    for name in xa:
        assert xa[name].shape == xb[name].shape and xa[name].dtype == xb[name].dtype, name
        assert np.array_equal(xa[name], xb[name], equal_nan=xa[name].dtype.kind == "f"), f"{a}:{name} differs"


def checkpoint_tensors(path: Path) -> dict[str, object]:
    """The tensors of a checkpoint, flattened by key path (state dict, optimizer state, RNG state)."""
    import torch

    obj = torch.load(path, map_location="cpu", weights_only=True)
    out: dict[str, object] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, torch.Tensor):
            out[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}/{i}", v)
        elif prefix.endswith("/meta") and isinstance(value, str):
            meta = json.loads(value)
            metrics = meta.get("metrics") or {}
            metrics.pop("seconds", None)  # wall time
            out[prefix] = json.dumps(meta, sort_keys=True)
        else:
            out[prefix] = value

    walk("", obj)
    return out


def assert_same_checkpoint(a: Path, b: Path) -> None:
    import torch

    ta, tb = checkpoint_tensors(a), checkpoint_tensors(b)
    assert sorted(ta) == sorted(tb), (a, b)
    for k, va in ta.items():
        vb = tb[k]
        if isinstance(va, torch.Tensor):
            assert isinstance(vb, torch.Tensor) and va.dtype == vb.dtype and torch.equal(va, vb), f"{a}:{k} differs"
        elif k.endswith("metrics_rows"):
            assert _rows_sans_time(json.loads(va)) == _rows_sans_time(json.loads(vb)), f"{a}:{k} differs"
        else:
            assert va == vb, f"{a}:{k}: {va!r} vs {vb!r}"


def _rows_sans_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def metrics_rows(path: Path) -> list[dict[str, str]]:
    """metrics.csv without its wall-time column."""
    import csv

    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def assert_same_run(a: Path, b: Path) -> None:
    """Two training run folders hold the same files with the same tensors and metrics (wall times aside)."""
    names = sorted(p.name for p in a.iterdir() if not p.name.startswith("."))
    assert names == sorted(p.name for p in b.iterdir() if not p.name.startswith(".")), (a, b)
    for name in names:
        if name.endswith(".pt"):
            assert_same_checkpoint(a / name, b / name)
        elif name == "metrics.csv":
            assert metrics_rows(a / name) == metrics_rows(b / name), name
        elif name.endswith(".h5"):
            assert_same_h5(a / name, b / name)


def copy_inputs(dst: Path, *files: Path) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for f in files:
        target = dst / f.name
        if f.is_dir():
            shutil.copytree(f, target)
        else:
            shutil.copyfile(f, target)
        out.append(target)
    return out


def record_figure(name: str, **counts: int) -> None:
    """Append counts for the README figures (see tests/slow/figures.py) when LANDSCAPE_FIGURES_DIR is set."""
    folder = os.environ.get("LANDSCAPE_FIGURES_DIR")
    print(f"[figures] {name}: {counts}")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with open(Path(folder) / f"{name}.json", "w") as f:
            json.dump(counts, f)
