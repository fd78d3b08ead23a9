"""File-system rules shared by everything that writes: the writable-folder check and atomic replacement."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from landscape.errors import LandscapeError


def ensure_writable_dir(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` if needed and check that it is writable; one-line errors otherwise."""
    folder = Path(folder) if str(folder) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LandscapeError(f"cannot create output folder {folder}: {exc.strerror}; choose another --out") from None
    if not os.access(folder, os.W_OK):
        raise LandscapeError(f"output folder {folder} is not writable; choose another --out")
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
        raise LandscapeError(f"cannot create a file in {folder}: {exc.strerror or exc}; choose another --out") from None
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
            raise LandscapeError(f"cannot write {path}: {exc.strerror or exc}; choose another --out") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
