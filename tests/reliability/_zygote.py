"""A process that imports the CLI once, then forks one real ``landscape`` process per request.

Why: a fresh ``python -c 'from landscape.cli import main; main()'`` spends seconds importing torch, which would make
a table of a hundred bad inputs, or a hundred kill -9 trials, take many minutes on two cores. A child forked from
this (clean, non-pytest) process is a real process running the real CLI: its own exit status, its own file
descriptors for stdout and stderr, the interpreter's exit path (uncaught exceptions printed by sys.excepthook,
atexit handlers, finalisers of its own objects), death by signal, rlimits; it can be killed with SIGKILL at any
moment. Only the imports are shared (tests/reliability/test_bad_inputs.py cross-checks a few cases against fresh
interpreters).

Protocol (JSON lines): the test writes ``{"id", "argv", "cwd", "stdout", "stderr", "env", "path", "fsize",
"inject"}`` on stdin; the zygote answers ``{"id", "pid"}`` once the child runs and ``{"id", "pid", "status"}`` when
it ends (``status`` as ``subprocess`` returncode: negative for a signal).
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import sys


def _preload() -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import h5py  # noqa: F401
    import matplotlib
    import numpy  # noqa: F401
    import torch

    matplotlib.use("Agg")
    torch.set_num_threads(int(os.environ.get("LANDSCAPE_TEST_THREADS", "1")))
    import importlib

    # What the commands import lazily (seconds each: sklearn, scipy, pyplot): imported once here instead.
    for name in ("matplotlib.pyplot", "scipy.interpolate", "scipy.stats", "sklearn.datasets",
                 "sklearn.model_selection", "sklearn.decomposition", "tqdm.auto", "landscape.cli",
                 "landscape.surface", "landscape.training", "landscape.directions", "landscape.hessian",
                 "landscape.predictiveness", "landscape.inputspace", "landscape.attention", "landscape.store.surface",
                 "landscape.plotting"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


# ---------------------------------------------------------------------------------------------------------------
# Write-failure injection (in the child only): every write primitive the library reaches from Python is counted;
# the k-th one (optionally only among those whose label or path matches) raises OSError(ENOSPC), after leaving a
# partial file where the primitive writes a whole file, as a full disk would.
class _Injector:
    def __init__(self, spec: dict) -> None:
        self.k = spec.get("k")
        self.match = spec.get("match")  # substring of "label path"
        self.exclude = spec.get("exclude")  # ... and not this one
        self.log = spec.get("log")  # file to record every event in (to choose k)
        self.root = os.path.join(os.getcwd(), "")
        self.n = 0

    def event(self, label: str, path: object) -> bool:
        """Record one write to a file under the working folder (where the tests put every output; writes to
        in-memory files or elsewhere are not counted); True if this one must fail."""
        if not isinstance(path, (str, os.PathLike)):
            return False
        where = os.path.abspath(os.fspath(path))
        if not where.startswith(self.root):
            return False
        text = f"{label} {where}"
        if self.log:
            with _REAL_OPEN(self.log, "a") as f:
                f.write(text + "\n")
        if (self.match and self.match not in text) or (self.exclude and self.exclude in text):
            return False
        self.n += 1
        return self.k is not None and self.n == self.k

    @staticmethod
    def fail(path: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path) if isinstance(
            path, (str, os.PathLike)) else None)


_REAL_OPEN = open


class _WriteFile:
    """Proxy of a file opened for writing whose writes are counted (and may fail)."""

    def __init__(self, f, path, inj: _Injector) -> None:
        self._f, self._path, self._inj = f, path, inj

    def write(self, data):
        if self._inj.event("open.write", self._path):
            # A full disk takes part of the data and then refuses.
            self._f.write(data[: len(data) // 2])
            self._f.flush()
            _Injector.fail(self._path)
        return self._f.write(data)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __enter__(self):
        self._f.__enter__()
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def __iter__(self):
        return iter(self._f)

    def __getattr__(self, name):
        return getattr(self._f, name)


def _install(spec: dict) -> None:
    import builtins
    import io

    import h5py
    import torch

    inj = _Injector(spec)

    def patched_open(file, mode="r", *args, **kwargs):
        f = _REAL_OPEN(file, mode, *args, **kwargs)
        if any(c in mode for c in "wax+") and isinstance(file, (str, bytes, os.PathLike)):
            return _WriteFile(f, file, inj)
        return f

    builtins.open = patched_open
    io.open = patched_open

    def h5_path(f) -> str | None:
        return None if f.driver == "fileobj" else f.filename  # an in-memory image is no disk write

    real_setitem = h5py.Dataset.__setitem__

    def setitem(self, key, value):
        if inj.event("h5.setitem", h5_path(self.file)):
            _Injector.fail(self.file.filename)
        return real_setitem(self, key, value)

    h5py.Dataset.__setitem__ = setitem

    real_flush = h5py.File.flush

    def flush(self):
        if inj.event("h5.flush", h5_path(self)):
            _Injector.fail(self.filename)
        return real_flush(self)

    h5py.File.flush = flush

    real_create = h5py.Group.create_dataset

    def create_dataset(self, name, *args, **kwargs):
        if inj.event("h5.create_dataset", h5_path(self.file)):
            _Injector.fail(self.file.filename)
        return real_create(self, name, *args, **kwargs)

    h5py.Group.create_dataset = create_dataset

    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if inj.event("torch.save", f):
            real_save(obj, f, *args, **kwargs)
            if isinstance(f, (str, os.PathLike)):
                size = os.path.getsize(f)
                os.truncate(f, size // 2)
            _Injector.fail(f)
        return real_save(obj, f, *args, **kwargs)

    torch.save = save

    # Raw writes at offsets (the surface point loop) and the syncs that report deferred I/O errors.
    def wrap_fd(label: str, real):
        def call(fd, *args):
            try:
                where = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                where = f"fd{fd}"
            if inj.event(label, where):
                _Injector.fail(where)
            return real(fd, *args)
        return call

    os.pwrite = wrap_fd("os.pwrite", os.pwrite)
    os.write = wrap_fd("os.write", os.write)
    os.fsync = wrap_fd("os.fsync", os.fsync)
    # Modules that did ``from torch import save`` are not expected; landscape calls torch.save.


def _child(req: dict) -> None:
    """Become the CLI process of ``req``; never returns."""
    import logging
    import resource
    import warnings

    os.setpgid(0, 0)
    os.chdir(req["cwd"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(err, 2)
    for fd in (null, out, err):
        os.close(fd)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    sys.__stdout__, sys.__stderr__ = sys.stdout, sys.stderr
    os.environ.update(req.get("env") or {})
    for entry in reversed(req.get("path") or []):
        sys.path.insert(0, entry)
    sys.dont_write_bytecode = True
    warnings.resetwarnings()  # Python's defaults, as in a fresh interpreter
    for action, category, module in (("default", DeprecationWarning, "__main__"), ("ignore", DeprecationWarning, ""),
                                     ("ignore", PendingDeprecationWarning, ""), ("ignore", ImportWarning, ""),
                                     ("ignore", ResourceWarning, "")):
        warnings.filterwarnings(action, category=category, module=module)
    logging.root.handlers.clear()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if req.get("fsize") is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so an oversized write fails with EFBIG, as with ulimit -f
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(req["fsize"]), int(req["fsize"])))
    if req.get("inject"):
        _install(req["inject"])
    from landscape.cli import main

    sys.argv = ["landscape", *req["argv"]]
    try:
        main(args=req["argv"], prog_name="landscape")
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        sys.excepthook(*sys.exc_info())  # what the interpreter prints for an uncaught exception
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    # The interpreter's exit, minus tearing down the preloaded modules (seconds of copy-on-write page faults):
    # atexit handlers, a last collection of this process's own objects (their finalisers: h5py's "Exception
    # ignored" messages, for one), flushed output.
    import atexit
    import gc

    atexit._run_exitfuncs()
    gc.collect()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def serve() -> None:
    _preload()
    import gc

    gc.freeze()  # the preloaded objects are shared, untouched by the children's collections (no copy-on-write)
    sys.stdout.write(json.dumps({"ready": os.getpid()}) + "\n")
    sys.stdout.flush()
    running: dict[int, str] = {}
    buf = b""
    stdin = sys.stdin.fileno()
    eof = False
    while not eof or running:
        ready, _, _ = select.select([] if eof else [stdin], [], [], 0.005)
        if ready:
            chunk = os.read(stdin, 65536)
            if not chunk:
                eof = True
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                req = json.loads(line)
                sys.stdout.flush()
                pid = os.fork()
                if pid == 0:
                    try:
                        _child(req)
                    except BaseException:  # the child's own setup failed (never the CLI: _child catches that)
                        import traceback

                        traceback.print_exc()
                    os._exit(70)
                running[pid] = req["id"]
                sys.stdout.write(json.dumps({"id": req["id"], "pid": pid}) + "\n")
                sys.stdout.flush()
        while running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            sys.stdout.write(json.dumps({"id": running.pop(pid), "pid": pid, "status": code}) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    serve()
