"""Softmax output files as DuckDB relations: one file, a directory or a glob of shards, CSV/TSV or Parquet.

A service's prediction logs run to tens of millions of rows, often in shards and often without
labels. This module makes such a source a DuckDB table expression with fixed columns
``file_idx, file_row, [id,] pred, p0 … p{k-1}, [label]`` (``file_row`` 1-based within its shard),
and runs the row checks of docs/formats.md as one aggregate query over it, so that reading is
streaming and bounded in memory whatever the size (DuckDB spills to disk past its memory limit).
DuckDB parses the text (correctly rounded float64, like Python's ``float()``); only when it
rejects a file does a slow pure-Python pass run, to name the first offending row.

Every problem is an :class:`~confdistill.errors.InputError` naming the shard file and the 1-based
data row within it. Imports duckdb and numpy only (never torch).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

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
#: DuckDB's working memory; past it, tables and sorts spill to a temporary directory.
MEMORY_LIMIT = os.environ.get("CONFDISTILL_DUCKDB_MEMORY", "1GB")



@contextlib.contextmanager
def connect(threads: int | None = None) -> Iterator[Any]:
    """A fresh in-memory DuckDB connection with a bounded memory budget and its own spill directory,
    both closed and removed when the block ends."""
    import duckdb

    spill = tempfile.mkdtemp(prefix="confdistill-duckdb-")
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        con.execute(f"SET temp_directory = '{_sql_str(spill)}'")
        con.execute("SET preserve_insertion_order = true")
        if threads is not None:
            con.execute(f"SET threads = {int(threads)}")
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def dbl(x: float) -> str:
    """A float as a DOUBLE SQL literal (shortest round-trip text). A bare ``0.9`` is a DECIMAL in
    DuckDB: per-row arithmetic with it runs in slow decimal code, and is not IEEE double."""
    return f"CAST({float(x)!r} AS DOUBLE)"


def _sql_str(text: str | Path) -> str:
    return str(text).replace("'", "''")


def sql_path(path: str | Path) -> str:
    """A path as a quoted SQL string literal."""
    return "'" + _sql_str(path) + "'"


# --------------------------------------------------------------------------------------------
# Finding the files
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------------------------


def _parquet_header(con: Any, path: Path) -> tuple[list[str], dict[str, str]]:
    import duckdb

    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql_path(path)})").fetchall()
    except duckdb.Error as exc:
        raise InputError(f"not a readable Parquet file ({_first_line(exc)})", path=path) from None
    return [r[0] for r in rows], {r[0]: str(r[1]).upper() for r in rows}


_INT_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
_NUM_TYPES = (*_INT_TYPES, "FLOAT", "DOUBLE", "DECIMAL")


def _check_parquet_types(path: Path, types: dict[str, str]) -> None:
    for name, t in types.items():
        if name in ("pred", "label") and not t.startswith(_INT_TYPES):
            raise InputError(f"column {name!r} must hold integer class indices, got {t.lower()}", path=path)
        if name.startswith("p") and name[1:].isdigit() and not t.startswith(_NUM_TYPES):
            raise InputError(f"column {name!r} must hold numbers, got {t.lower()}", path=path)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


@dataclass
class SoftmaxSource:
    """A validated softmax source (one model's outputs) as a DuckDB table expression.

    ``scan`` is a SQL table expression with columns ``file_idx`` (shard index), ``file_row``
    (1-based within the shard), ``[id VARCHAR,]`` ``pred BIGINT``, ``p0 … p{k-1} DOUBLE``,
    ``[label BIGINT]``. ``shard_rows[i]`` is the row count of shard i; ``meta`` the first
    shard's sidecar.
    """

    spec: str
    files: list[Path]
    k: int
    has_id: bool
    has_label: bool
    scan: str
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

    def global_row_sql(self, alias: str = "") -> str:
        """SQL expression: the 1-based row across shards, in shard order."""
        return f"{alias}.row" if alias else "row"


def open_source(spec: str | Path, con: Any, *, delimiter: str | None = None, table: str = "src") -> SoftmaxSource:
    """Resolve, check the headers of, load and validate every row of a softmax source (InputError on the
    first problem). The text is parsed once, into DuckDB table ``table`` (spilled to disk past the
    memory limit); ``scan`` is then a view of it. A pred that is not the argmax only adds a note.
    """
    import duckdb

    files = resolve_files(spec)
    parts, layout = [], None
    for idx, f in enumerate(files):
        if f.suffix.lower() in PARQUET_EXT:
            names, types = _parquet_header(con, f)
            shard = check_header(f, names, delimiter=None)
            _check_parquet_types(f, types)
            cols = expected_columns(shard[0], with_id=shard[1], with_label=shard[2])
            sel = ", ".join(f'CAST("{c}" AS {_raw_type(c)}) AS "{c}"' for c in cols)
            parts.append(f"SELECT {idx} AS file_idx, {sel} FROM read_parquet({sql_path(f)})")
        else:
            delim, names = text_header(f, delimiter)
            shard = check_header(f, names, delimiter=delim)
            cols = expected_columns(shard[0], with_id=shard[1], with_label=shard[2])
            # pred/label are read as DOUBLE (cast after the integrality check): DuckDB would round
            # "1.5" into an integer column silently.
            types = ", ".join(f"'{c}': '{_raw_type(c)}'" for c in cols)
            parts.append(
                f"SELECT {idx} AS file_idx, * FROM read_csv({sql_path(f)}, "
                f"header = true, delim = {sql_path(delim)}, quote = '\"', escape = '\"', "
                f"columns = {{{types}}}, auto_detect = false, strict_mode = true)")
        if layout is None:
            layout = shard
        elif shard != layout:
            raise InputError(f"columns differ from the first shard {files[0]} (expected the same header in "
                             "every shard)", path=f)
    assert layout is not None
    k, has_id, has_label = layout
    source = SoftmaxSource(spec=str(spec), files=files, k=k, has_id=has_id, has_label=has_label, scan=table)
    # Parsed once, in parallel, into a table whose rowid is the row's place in file order
    # (insertion order is preserved; shards are appended one after the other).
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {parts[0]}")
        for part in parts[1:]:
            con.execute(f"INSERT INTO {table} {part}")
    except duckdb.Error as exc:
        _diagnose_failure(source, exc)
    counts = dict(con.execute(f"SELECT file_idx, count(*) FROM {table} GROUP BY file_idx").fetchall())
    source.shard_rows = [int(counts.get(i, 0)) for i in range(len(files))]
    offsets = np.concatenate([[0], np.cumsum(source.shard_rows)[:-1]]).tolist()
    shift = "0" if len(files) == 1 else \
        "CASE file_idx " + " ".join(f"WHEN {i} THEN {o}" for i, o in enumerate(offsets)) + " END"
    con.execute(f"CREATE OR REPLACE TEMP VIEW {table}_raw AS SELECT file_idx, rowid + 1 - ({shift}) AS file_row, "
                f"rowid + 1 AS row, * EXCLUDE (file_idx) FROM {table}")
    source.scan = f"{table}_raw"
    _validate(con, source)
    cols = expected_columns(k, with_id=has_id, with_label=has_label)
    sel = ", ".join(f'CAST("{c}" AS BIGINT) AS "{c}"' if c in ("pred", "label") else f'"{c}"' for c in cols)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {table}_v AS SELECT file_idx, file_row, row, {sel} FROM {table}_raw")
    source.scan = f"{table}_v"
    source.meta = read_sidecar(files[0], source.shard_rows[0], source.notes)
    return source


def _raw_type(col: str) -> str:
    """Column type while validating: ids as text, every number (pred and label too) as DOUBLE."""
    return "VARCHAR" if col == "id" else "DOUBLE"


def _validate(con: Any, src: SoftmaxSource) -> None:
    """The row checks of docs/formats.md as one aggregate query; InputError at the first failing row."""
    k = src.k
    ps = [f"p{c}" for c in range(k)]
    ints = ["pred", *(["label"] if src.has_label else [])]
    cols = ints + ps
    checks = {
        "missing": " OR ".join(f'"{c}" IS NULL' for c in cols),
        "integer": " OR ".join(f'NOT isfinite("{c}") OR "{c}" <> trunc("{c}")' for c in ints),
        "nonfinite": " OR ".join(f"NOT isfinite({p})" for p in ps),
        "range": " OR ".join(f"{p} < 0 OR {p} > 1" for p in ps),
        "sum": f"abs(({' + '.join(ps)}) - 1) > {dbl(SUM_TOLERANCE)}",
        "label": f"label < 0 OR label >= {k}" if src.has_label else "false",
        "pred": f"pred < 0 OR pred >= {k}",
    }
    p_of_pred = "CASE CAST(pred AS BIGINT) " + " ".join(f"WHEN {c} THEN p{c}" for c in range(k)) + " END"
    offmax = f"{p_of_pred} + {dbl(ARGMAX_TIE_TOLERANCE)} < greatest({', '.join(ps)})"
    # One code per row (the first failing check, in the order above; the argmax warning last) and
    # one grouped scan: each check is evaluated once per row, only until one fails.
    code = "CASE " + " ".join(f"WHEN {cond} THEN {i}" for i, cond in enumerate(checks.values())) + \
        f" WHEN {offmax} THEN {len(checks)} ELSE -1 END"
    order = "file_idx * 4294967296 + file_row"  # one sortable key: the first bad row in file order
    rows = con.execute(f"SELECT file_idx, {code} AS code, count(*), min({order}) FROM {src.scan} "
                       "GROUP BY file_idx, code").fetchall()
    names = list(checks)
    counts = dict.fromkeys(range(len(src.files)), 0)
    first: dict[int, int] = {}
    n_off, off_first = 0, None
    for idx, c, m, key in rows:
        counts[idx] += int(m)
        if c == len(checks):
            n_off += int(m)
            off_first = key if off_first is None else min(off_first, key)
        elif c >= 0:
            first[c] = min(first.get(c, key), key)
    src.shard_rows = [counts[i] for i in range(len(src.files))]
    for i, m in enumerate(src.shard_rows):
        if m == 0:
            raise InputError("no data rows after the header (empty file)", path=src.files[i])
    if first:
        # The earliest check that fails anywhere (a NaN row is reported as such, not as out of range).
        c = min(first)
        _raise_row_error(con, src, names[c], first[c])
    if n_off:
        f, row = src.files[off_first >> 32], off_first & 0xFFFFFFFF
        src.notes.append(f"{f}: {n_off} row(s) have `pred` different from the argmax of p0..p{k - 1} "
                         f"(first: row {row}); accuracy uses `pred` as written")
    if src.has_id:
        dup = con.execute(f"SELECT id, min({order}) AS first FROM {src.scan} GROUP BY id HAVING count(*) > 1 "
                          "ORDER BY first LIMIT 1").fetchall()
        if dup:
            key = int(dup[0][1])
            raise InputError(f"duplicate id {dup[0][0]!r} (ids must be unique)", path=src.files[key >> 32],
                             row=key & 0xFFFFFFFF)


def _raise_row_error(con: Any, src: SoftmaxSource, check: str, key: int) -> None:
    idx, row = key >> 32, key & 0xFFFFFFFF
    path = src.files[idx]
    cols = ["pred", *[f"p{c}" for c in range(src.k)], *(["label"] if src.has_label else [])]
    values = con.execute(f"SELECT {', '.join(chr(34) + c + chr(34) for c in cols)} FROM {src.scan} "
                         f"WHERE file_idx = {idx} AND file_row = {row}").fetchone()
    row_error(src.k, check, dict(zip(cols, values, strict=True)), path=path, row=row)


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


def _diagnose_failure(src: SoftmaxSource, exc: BaseException) -> NoReturn:
    """DuckDB rejected a file: find the shard and row with a slow Python pass, else report DuckDB's reason."""
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


__all__ = [
    "ARGMAX_TIE_TOLERANCE",
    "CSV_EXT",
    "MEMORY_LIMIT",
    "PARQUET_EXT",
    "SUM_TOLERANCE",
    "SoftmaxSource",
    "check_header",
    "connect",
    "dbl",
    "expected_columns",
    "open_source",
    "read_sidecar",
    "resolve_files",
    "row_error",
    "sidecar_path",
    "sql_path",
]
