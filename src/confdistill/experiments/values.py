"""The values an experiment file may hold, and how a validation error is worded.

:mod:`confdistill.experiments.schema` builds its tables from these: each coercer takes the TOML
value as parsed and returns it typed, or raises ``ValueError`` with the message the user sees
(``expected a positive integer, got "x"``); :func:`describe` turns a pydantic
:class:`~pydantic.ValidationError` into ``key.path: message`` parts, every problem of the file at
once. Hand-written for the wording: pydantic's strict types refuse the same values (``true`` is
not 1, ``"3"`` is not 3) but say "Input should be a valid integer", where the user should read what
the key expects in TOML terms and what was written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationError

from confdistill.distillation.settings import error_message

STAGE_KEYS = ("stage1", "stage2")
#: A student's ``stage = …`` in the distill command's words (``--stage``), as the stages it runs.
STAGE_WORDS = {"intermediate": ("stage1",), "prediction": ("stage2",), "both": STAGE_KEYS}


def show(value: Any) -> str:
    """A value as the user wrote it in TOML: strings in double quotes, a table as "a table"."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a table"
    return repr(value)


# ----------------------------------------------------------------------------- value types


def string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {show(value)}")
    return value


def integer(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise ValueError(f"expected {kind}, got {show(value)}")
        return value
    return check


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {show(value)}")
    return value


def tolerance(value: Any) -> float:
    """``kappa``: the user's tolerance on σ, a finite number > 0 (the β bound is never one)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"expected a positive number, got {show(value)}")
    if value == math.inf:
        raise ValueError("expected a finite tolerance on σ > 0 (e.g. 0.05), got inf")
    return float(value)


def threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"expected a number in (0, 1], got {show(value)}")
    return float(value)


def choice(*choices: str) -> Callable[[Any], str]:
    shown = ", ".join(f'"{c}"' for c in choices[:-1]) + f' or "{choices[-1]}"'

    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected {shown}, got {show(value)}")
        return value
    return check


def positive_list(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or not value or not all(
            isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in value):
        raise ValueError(f"expected a list of positive integers, got {show(value)}")
    return tuple(value)


def stages(value: Any) -> tuple[str, ...]:
    if (not isinstance(value, list | tuple) or not value or any(x not in STAGE_KEYS for x in value)
            or len(set(value)) != len(value)):
        raise ValueError(f'expected a list drawn from ["stage1", "stage2"], got {show(value)}')
    return tuple(x for x in STAGE_KEYS if x in value)  # always in pipeline order


#: What a name that becomes a path component may hold (a task key: ``OUT/<task>/``; a student
#: name: ``students/<name>/``, ``predictions/<name>.<split>.csv``; a split name): one component of
#: these characters, starting with a letter or digit, so never ``.``, ``..``, a hidden name (the
#: runner's ``.steps``, ``.lock``), a separator (``/``, ``\``), a space or a control character.
NAME_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+=")
NAME_MAX_LENGTH = 64
NAME_RULE = f"1 to {NAME_MAX_LENGTH} of A-Z a-z 0-9 - _ . + =, the first a letter or digit"


def path_name(value: Any) -> str:
    """A name that the runner makes a folder or file name of (see :data:`NAME_CHARACTERS`)."""
    if (not isinstance(value, str) or not 0 < len(value) <= NAME_MAX_LENGTH
            or not set(value) <= NAME_CHARACTERS or not value[0].isalnum()):
        # json quoting: a control character in the name is shown escaped, on one line
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else show(value)
        raise ValueError(f"expected a name ({NAME_RULE}: it names a folder or file in the output folder), "
                         f"got {shown}")
    return value


def toml_key(key: str) -> str:
    """One part of a key path as TOML writes it: bare when it can be (``SST-2``), else quoted (``".."``)."""
    bare = bool(key) and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else json.dumps(key, ensure_ascii=False)


def names(value: Any) -> tuple[str, ...]:
    if (not isinstance(value, list | tuple) or len(value) < 2
            or not all(isinstance(n, str) and n.strip() for n in value) or len(set(value)) != len(value)):
        raise ValueError(f"expected a list of at least two distinct class names, got {show(value)}")
    return tuple(value)


def name_list(value: Any) -> tuple[str, ...]:
    """``slice_by``: a list of distinct non-empty names (possibly empty)."""
    if (not isinstance(value, list | tuple) or not all(isinstance(n, str) and n.strip() for n in value)
            or len(set(value)) != len(value)):
        raise ValueError(f'expected a list of distinct names (e.g. ["label", "length"]), got {show(value)}')
    return tuple(n.strip() for n in value)


Str = Annotated[str, BeforeValidator(string)]
Bool = Annotated[bool, BeforeValidator(boolean)]
PositiveInt = Annotated[int, BeforeValidator(integer(1))]
NonNegativeInt = Annotated[int, BeforeValidator(integer(0))]
AtLeastTwo = Annotated[int, BeforeValidator(integer(2))]
AtLeastEight = Annotated[int, BeforeValidator(integer(8))]
Kappa = Annotated[float, BeforeValidator(tolerance)]
Name = Annotated[str, BeforeValidator(path_name)]


COMPRESS_FORMS = ("onnx", "onnx-int8")


def compress(value: Any) -> tuple[str, ...]:
    if (not isinstance(value, list) or any(v not in COMPRESS_FORMS for v in value)
            or len(set(value)) != len(value)):
        raise ValueError(f"expected a list drawn from {list(COMPRESS_FORMS)}, got {show(value)}")
    return tuple(value)


Compress = Annotated[tuple[str, ...], BeforeValidator(compress)]


def corpus(value: Any) -> tuple[str, ...]:
    files = [value] if isinstance(value, str) else value
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f.strip() for f in files):
        raise ValueError(f"expected a file name or a non-empty list of file names, got {show(value)}")
    return tuple(files)


# ----------------------------------------------------------------------------- errors


def describe(exc: ValidationError) -> list[str]:
    """``key.path: message`` for every error pydantic found, in the order it found them."""
    parts = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in _TAGS))]
        ctx = err.get("ctx") or {}
        if err["type"] == "table_key":
            loc.append(ctx["key"])
        text = ""
        for p in loc:
            text += f"[{p}]" if isinstance(p, int) else (f".{toml_key(p)}" if text else toml_key(p))
        parts.append(f"{text or '(file)'}: {_message(err)}")
    return parts


# Union / strictness tags pydantic may put in an error's location.
_TAGS = frozenset({"int", "float", "none", "bool", "str", "constrained-int", "constrained-float",
                   "lax-or-strict", "function-after", "function-before"})


def _message(err: Any) -> str:
    """The settings model's wording (:func:`confdistill.distillation.settings.error_message`), plus
    the two shapes only a TOML table has: lists and sub-tables."""
    kind, value = err["type"], err.get("input")
    if kind in ("list_type", "tuple_type"):
        return f"expected a list, got {show(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a table, got {show(value)}"
    return error_message(err)
