"""Reading delimited text (CSV/TSV): one field-size limit for every reader, and its errors named.

Python's :mod:`csv` refuses a field longer than 131,072 characters with "field larger than field
limit" and no file or row. A data file may hold a long document and a prediction file a long id,
so every CSV/TSV reader of confdistill accepts fields up to :data:`FIELD_LIMIT` (16 MiB, stated in
docs/formats.md); beyond it, or on any other malformed record, the error is one line naming the
file and the line. (The unlabeled corpus of ``general-distill`` keeps no limit: a document there
may be one field of any length, as in TinyBERT.)
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from confdistill.errors import InputError

__all__ = ["FIELD_LIMIT", "Reader"]

#: The longest field (in characters) any CSV/TSV reader accepts: 16 MiB.
FIELD_LIMIT = 16 * 1024 * 1024


class Reader:
    """:func:`csv.reader` over ``lines`` of ``path`` with fields up to :data:`FIELD_LIMIT`; a
    malformed record is an :class:`InputError` naming the file and line. ``line_num`` as csv's."""

    def __init__(self, lines: Iterable[str], path: str | Path, **fmt: Any) -> None:
        # The limit is process-wide state of the csv module: set it each time, since another
        # reader (the corpus's) may have changed it.
        csv.field_size_limit(FIELD_LIMIT)
        self._reader = csv.reader(lines, **fmt)
        self.path = path

    @property
    def line_num(self) -> int:
        return self._reader.line_num

    def __iter__(self) -> Iterator[list[str]]:
        return self

    def __next__(self) -> list[str]:
        try:
            return next(self._reader)
        except csv.Error as exc:
            # (line, not row: the readers count data rows differently, the line is where to look)
            if "field limit" in str(exc):
                raise InputError(f"a field longer than {FIELD_LIMIT:,} characters, the limit per field "
                                 f"(line {self.line_num})", path=self.path) from None
            raise InputError(f"malformed CSV/TSV record: {exc} (line {self.line_num})", path=self.path) from None
