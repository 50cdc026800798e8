"""Errors that the CLI turns into a one-line message and exit code 2.

Raise :class:`InputError` for anything the *user* can fix (bad file, bad argument, bad config):
its message must be one line, name the file / row / argument, and say what was expected.
Any other exception is a bug: the CLI prints it on one line too, with exit code 1, and the
traceback only under ``--debug``.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

#: True while the command line runs: a setting is then named by its option (``--learning-rate``),
#: otherwise (the Python API) by its field (``learning_rate``); one wording for both.
_OPTION_NAMES: ContextVar[bool] = ContextVar("confdistill_option_names", default=False)


@contextmanager
def option_names() -> Iterator[None]:
    """Within this block, :func:`setting_name` names settings as the command line spells them."""
    token = _OPTION_NAMES.set(True)
    try:
        yield
    finally:
        _OPTION_NAMES.reset(token)


def setting_name(field: str, *, flag: str | None = None) -> str:
    """``field`` as the user wrote it: ``--field-name`` (or ``flag`` where the option is spelled
    otherwise) on the command line, ``field`` in Python."""
    if not _OPTION_NAMES.get():
        return field
    return flag if flag is not None else "--" + field.replace("_", "-")


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


def expected(what: str, value: object) -> str:
    """The one wording of a value of the wrong kind, from the settings models (pydantic) and from the
    command line's parsers alike: ``expected a number, got 'x'``."""
    return f"expected {what}, got {value!r}"


def one_of(options: Sequence[str]) -> str:
    """``one of 'a', 'b' or 'c'``: choices as pydantic words a ``Literal``'s."""
    shown = [repr(o) for o in options]
    return "one of " + (", ".join(shown[:-1]) + " or " + shown[-1] if len(shown) > 1 else "".join(shown))


_CAUSES = {
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, expected a file",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "name too long",
    errno.EMFILE: "too many open files",
    errno.EIO: "input/output error",
    errno.ELOOP: "a symbolic link, never written through (remove it)",
}


def describe_os_error(exc: OSError) -> str:
    """One line for an OS error: ``PATH: cause`` (the cause in words, then the system's own text)."""
    cause = _CAUSES.get(exc.errno or -1) or (exc.strerror or str(exc)).lower()
    where = exc.filename if exc.filename is not None else None
    if exc.filename2 is not None:
        where = f"{exc.filename} -> {exc.filename2}"
    text = f"{where}: {cause}" if where is not None else cause
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        text += " (free some space and run the command again; finished work is kept)"
    return " ".join(text.split())
