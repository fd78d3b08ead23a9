"""The one exception type for user mistakes."""

from __future__ import annotations


class LandscapeError(Exception):
    """A user error: a bad argument, a missing or foreign file, an impossible request.

    The message is one line saying what was wrong and what to do; the CLI prints it without a traceback.
    """
