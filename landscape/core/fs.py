"""File-system rules shared by everything that writes: the writable-folder check and atomic replacement."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from landscape.errors import LandscapeError


def ensure_writable_dir(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` if needed and check that it is writable; one-line errors otherwise."""
    folder = Path(folder) if str(folder) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LandscapeError(f"cannot create output folder {folder}: {exc.strerror}; choose another out=") from None
    if not os.access(folder, os.W_OK):
        raise LandscapeError(f"output folder {folder} is not writable; choose another out=")
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary name beside ``path``; rename it to ``path`` only when the block succeeds."""
    if os.fspath(path).endswith(("/", os.sep)):  # Path() would drop the slash and write a file named like the folder
        raise LandscapeError(f"{os.fspath(path)} names a folder; give a file name, e.g. {os.fspath(path)}result.h5")
    path = Path(path)
    folder = ensure_writable_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:  # os.access can say yes where creating a file fails (root on /proc, read-only mounts)
        raise LandscapeError(f"cannot create a file in {folder}: {exc.strerror or exc}; choose another out=") from None
    os.close(fd)
    # mkstemp creates the file 0600; the result should get the mode any new file gets here (0644 under umask 022).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise LandscapeError(f"cannot write {path}: {exc.strerror or exc}; choose another out=") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


# Locks this process holds: path -> depth, so a command nested in another (a study running train) can take the
# lock of an output its caller already holds without deadlocking on its own flock.
_HELD: dict[str, int] = {}
_HELD_GUARD = threading.Lock()


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file of an output (a file or a run folder): ``.NAME.lock`` beside it."""
    path = Path(os.path.abspath(os.fspath(path).rstrip("/") or "/"))
    return path.parent / f".{path.name}.lock"


def _holder(lock: Path) -> str:
    # The holder writes its note just after taking the lock: a refusal in that instant waits briefly for it.
    info: dict = {}
    for _ in range(40):
        try:
            info = json.loads(lock.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        if info.get("pid") is not None:
            break
        time.sleep(0.025)
    if info.get("pid") is None:
        return "another landscape process"
    pid, host, since = info.get("pid"), info.get("host"), info.get("since")
    when = time.strftime("%H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return f"landscape process {pid} on {host} (since {when})"


def sweep_temp_files(path: str | os.PathLike[str]) -> int:
    """Remove temporary files that an interrupted writer of ``path`` left beside it; returns how many.

    Call only while holding :func:`output_lock` on ``path``: then no live writer owns such a file.
    """
    path = Path(path)
    removed = 0
    with contextlib.suppress(OSError):
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


@contextlib.contextmanager
def output_lock(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on the output ``path`` (file or folder) for the block: one writer per output.

    The lock is an ``flock`` on ``.NAME.lock`` beside ``path``, taken before anything is created or replaced and
    released (the lock file removed) at the end; a second process gets a one-line error naming the holder. The
    kernel drops the lock when a holder dies (even by kill -9), so a stale lock file never blocks a rerun. On
    entry, temporary files that an interrupted writer left beside ``path`` are swept. Re-entrant within a process.
    """
    lock = lock_path(path)
    key = os.fspath(lock)
    with _HELD_GUARD:
        if _HELD.get(key):
            _HELD[key] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield lock
        finally:
            with _HELD_GUARD:
                _HELD[key] -= 1
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no protection against two writers, but the rest works
        yield lock
        return
    ensure_writable_dir(lock.parent)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LandscapeError(f"cannot create the lock file {lock}: {exc.strerror or exc}; choose another "
                                 "output") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise LandscapeError(f"{_holder(lock)} is writing {Path(path)}; wait for it to finish or choose another "
                                 "output") from None
        # The previous holder may have unlinked the lock file between our open and our flock: then we hold a lock
        # on a file nobody else can see. Retry until the lock is on the file that is at the path.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "argv": sys.argv[:4]}
        try:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode())
        except OSError as exc:  # a disk that cannot take 100 bytes cannot take the result either: stop now
            raise LandscapeError(f"cannot write the lock file {lock}: {exc.strerror or exc}; free space or choose "
                                 "another output") from None
        sweep_temp_files(path)
        with _HELD_GUARD:
            _HELD[key] = 1
        try:
            yield lock
        finally:
            with _HELD_GUARD:
                _HELD.pop(key, None)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)  # while still holding it, so a waiter re-checks (see the samestat loop above)
        os.close(fd)
