"""Errors that the CLI turns into a one-line message and exit code 2.

Raise :class:`InputError` for anything the *user* can fix (bad file, bad argument, bad config):
its message must be one line, name the file / row / argument, and say what was expected.
Any other exception is a bug: the CLI prints it on one line too, with exit code 1, and the
traceback only under ``--debug``.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """A problem with the user's input (file, row, argument, configuration). Exit code 2."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, row: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}"
            if row is not None:
                where += f", row {row}"
            where += ": "
        super().__init__(where + " ".join(str(message).split()))
