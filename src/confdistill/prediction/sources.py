"""What is shared about softmax sources: the checks' tolerances, :class:`SoftmaxSource` (a source's files,
layout and sidecar), the one-line error of a failing row, and the slow pass that names the row a
reader rejected. The rows themselves are read by :mod:`confdistill.prediction.stream`.

Every problem is an :class:`~confdistill.errors.InputError` naming the shard file and the 1-based
data row within it. Imports the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from confdistill.errors import InputError
from confdistill.prediction.shards import (
    CSV_EXT,
    PARQUET_EXT,
    check_header,
    diagnose_rows,
    expected_columns,
    read_header_line,
    read_sidecar,
    resolve_files,
    sidecar_path,
    sniff_delimiter,
    text_header,
)

#: Largest allowed |sum(p) - 1| per row.
SUM_TOLERANCE = 1e-3
#: ``pred`` differing from the argmax is only warned about when the written class is less probable
#: than the argmax by more than this: float32 softmax outputs that tie or nearly tie are legitimate.
ARGMAX_TIE_TOLERANCE = 1e-6


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


@dataclass
class SoftmaxSource:
    """A softmax source (one model's outputs): its shard files and layout (``k`` classes, an ``id``
    column, a ``label`` column). After reading, ``shard_rows[i]`` is the row count of shard i and
    ``meta`` the first shard's sidecar; ``notes`` what the checks found worth a warning.
    """

    spec: str
    files: list[Path]
    k: int
    has_id: bool
    has_label: bool
    shard_rows: list[int] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(sum(self.shard_rows))

    @property
    def name(self) -> str:
        return self.spec

    @property
    def path(self) -> Path | None:
        """The single file of a one-file source (None for shards or in-memory outputs)."""
        return self.files[0] if len(self.files) == 1 else None

    def locate(self, row: int) -> tuple[Path | str, int]:
        """(shard file, 1-based row within it) of a 1-based global row."""
        for f, m in zip(self.files, self.shard_rows, strict=True):
            if row <= m:
                return f, row
            row -= m
        return self.spec, row


def row_error(k: int, check: str, rec: dict[str, Any], *, path: Path, row: int) -> NoReturn:
    """The one-line error of a row failing ``check`` (a name of docs/formats.md's checks); ``rec``: the
    row's pred, p0.., label as read (None: missing)."""
    probs = [rec[f"p{c}"] for c in range(k)]
    line = f" (line {row + 1})"
    if check == "missing":
        name = next(c for c in rec if rec[c] is None)
        raise InputError(f"missing value in column {name!r}{line}", path=path, row=row)
    if check == "integer":
        name = next(c for c in ("pred", "label") if c in rec and rec[c] != int(rec[c]))
        raise InputError(f"column {name!r}: expected an integer class index, got {rec[name]!r}{line}",
                         path=path, row=row)
    if check == "nonfinite":
        raise InputError(f"non-finite probability (NaN or inf) in row {probs}{line}", path=path, row=row)
    if check == "range":
        raise InputError(f"probability outside [0, 1]: {probs}{line}", path=path, row=row)
    if check == "sum":
        raise InputError(f"probabilities sum to {sum(probs):.6g}, expected 1 within {SUM_TOLERANCE:g}{line}",
                         path=path, row=row)
    name = check
    raise InputError(f"{name} {int(rec[name])} is not a class index in [0, {k}){line}", path=path, row=row)


def diagnose_failure(src: SoftmaxSource, exc: BaseException) -> NoReturn:
    """The reader rejected a file: find the shard and row with a slow Python pass, else report its reason."""
    cols = expected_columns(src.k, with_id=src.has_id, with_label=src.has_label)
    for f in src.files:
        if f.suffix.lower() in PARQUET_EXT:
            continue
        delim, _ = text_header(f, None if f.suffix.lower() in CSV_EXT else sniff_delimiter(read_header_line(f)))
        try:
            diagnose_rows(f, delim, cols)
        except UnicodeDecodeError as uexc:
            raise InputError(f"not UTF-8 text ({uexc.reason}); expected a UTF-8 CSV/TSV softmax file",
                             path=f) from None
    raise InputError(f"cannot read ({_first_line(exc)})", path=src.files[0] if len(src.files) == 1 else src.spec)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


__all__ = [
    "ARGMAX_TIE_TOLERANCE",
    "CSV_EXT",
    "PARQUET_EXT",
    "SUM_TOLERANCE",
    "SoftmaxSource",
    "check_header",
    "diagnose_failure",
    "expected_columns",
    "read_sidecar",
    "resolve_files",
    "row_error",
    "sidecar_path",
]
