"""The one exception type for user mistakes."""

from __future__ import annotations

from typing import Any


class LandscapeError(Exception):
    """A user error: a bad argument, a missing or foreign file, an impossible request.

    The message is one line saying what was wrong and what to do; the CLI prints it without a traceback. Line
    breaks that arrive with user input quoted in a message (a file name, a key of a study file) are escaped here,
    so the message stays one line whatever it quotes.
    """

    def __init__(self, message: Any = "", *args: Any) -> None:
        if isinstance(message, str):
            message = message.replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(message, *args)
