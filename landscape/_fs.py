"""File-system rules shared by everything that writes: one place for the writable-folder check."""

from __future__ import annotations

import os
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
