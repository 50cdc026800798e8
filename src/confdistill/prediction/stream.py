"""Softmax sources as a stream of numpy record batches, read with Arrow, with the row checks of docs/formats.md.

A service's prediction logs run to hundreds of millions of rows in shards; the analysis needs each
row once, so the files are read as a stream: ``pyarrow.csv.open_csv`` (CSV/TSV, parsed on Arrow's
threads, blocks yielded in file order) and ``pyarrow.parquet.ParquetFile.iter_batches``. Each batch
becomes a :class:`Batch` of numpy columns and is checked as it passes (:class:`RowChecks`): the
first failing check of each kind is remembered, and :meth:`SourceStream.finish` raises the one
the DuckDB reader raised (the earliest check in the order of docs/formats.md, at its first row),
so the one-line errors are the same. Memory is one batch per source, whatever the row count
(ids aside: their uniqueness check keeps a set).

:func:`chunks` reads in-memory outputs the same way. Imports numpy and pyarrow (never torch).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from confdistill.delimited import FIELD_LIMIT
from confdistill.errors import InputError
from confdistill.prediction.shards import (
    PARQUET_EXT,
    check_header,
    expected_columns,
    read_sidecar,
    resolve_files,
    text_header,
)
from confdistill.prediction.softmax_file import row_max, row_sum, take_class
from confdistill.prediction.sources import ARGMAX_TIE_TOLERANCE, SUM_TOLERANCE, SoftmaxSource

#: Rows per Parquet batch, and the CSV block size (bytes). Arrow needs every row inside one block, so
#: a block holds the longest field confdistill reads (docs/formats.md) and the rest of its row;
#: measured as fast as 8 MiB blocks on a 10^6-row pair.
BATCH_ROWS = 1 << 17
CSV_BLOCK_BYTES = FIELD_LIMIT + (1 << 20)
CHECKS = ("missing", "integer", "nonfinite", "range", "sum", "label", "pred")
_OFFMAX = len(CHECKS)


@dataclass
class Batch:
    """Consecutive rows of one source: ``pred`` (m,) int64, ``p`` (m, k) float64, ``label`` (m,) int64 or
    None, ``ids`` (m,) object or None; ``row0`` the 0-based global row of the first one."""

    row0: int
    pred: np.ndarray
    p: np.ndarray
    label: np.ndarray | None
    ids: np.ndarray | None

    def __len__(self) -> int:
        return int(self.pred.shape[0])

    def part(self, a: int, b: int) -> Batch:
        return replace(self, row0=self.row0 + a, pred=self.pred[a:b], p=self.p[a:b],
                       label=None if self.label is None else self.label[a:b],
                       ids=None if self.ids is None else self.ids[a:b])


def open_stream(spec: str | Path, *, delimiter: str | None = None) -> SourceStream:
    """Resolve a source (file, directory or glob of shards) and check every shard's header."""
    files = resolve_files(spec)
    layout, delims = None, []
    for f in files:
        if f.suffix.lower() in PARQUET_EXT:
            schema = _parquet_schema(f)
            shard = check_header(f, list(schema.names), delimiter=None)
            _check_parquet_types(f, schema)
            delims.append(None)
        else:
            delim, names = text_header(f, delimiter)
            shard = check_header(f, names, delimiter=delim)
            delims.append(delim)
        if layout is None:
            layout = shard
        elif shard != layout:
            raise InputError(f"columns differ from the first shard {files[0]} (expected the same header in "
                             "every shard)", path=f)
    assert layout is not None
    k, has_id, has_label = layout
    src = SoftmaxSource(spec=str(spec), files=files, k=k, has_id=has_id, has_label=has_label)
    return SourceStream(src, delims)


def _parquet_schema(path: Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path)
    except Exception as exc:
        raise InputError(f"not a readable Parquet file ({_first_line(exc)})", path=path) from None


def _check_parquet_types(path: Path, schema: Any) -> None:
    import pyarrow as pa

    for name, t in zip(schema.names, schema.types, strict=True):
        if name in ("pred", "label") and not pa.types.is_integer(t):
            raise InputError(f"column {name!r} must hold integer class indices, got {t}", path=path)
        numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
        if name.startswith("p") and name[1:].isdigit() and not numeric:
            raise InputError(f"column {name!r} must hold numbers, got {t}", path=path)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class RowChecks:
    """The row checks of one source, batch by batch: the first (shard, row) failing each check, and the
    rows whose ``pred`` is not the argmax (a note)."""

    def __init__(self, src: SoftmaxSource) -> None:
        self.src = src
        self.first: dict[int, tuple[int, int]] = {}
        self.n_off = 0
        self.ids: dict[Any, tuple[int, int]] = {}
        self.dup: tuple[int, int, Any] | None = None

    def check(self, raw: dict[str, np.ndarray], p: np.ndarray, file_idx: int, file_row0: int,
              null: np.ndarray | None) -> None:
        """``raw``: pred (and label) as read (float64); ``p`` (m, k); ``null`` (m,) bool: a missing number."""
        k, pred, label, m = self.src.k, raw["pred"], raw.get("label"), p.shape[0]
        ints = [pred, *([label] if label is not None else [])]
        with np.errstate(invalid="ignore"):
            psum, pmax = row_sum(p), row_max(p)
            # whole-batch reductions first (NaN fails every comparison); the per-row pass that finds
            # the failing rows runs only when one of them fails
            clean = null is None and all(x.min() >= 0 and x.max() < k and (x == np.trunc(x)).all() for x in ints) \
                and p.min() >= 0.0 and p.max() <= 1.0 and np.abs(psum - 1.0).max() <= SUM_TOLERANCE
            fine = np.ones(m, dtype=bool) if clean else np.isfinite(pred) & (pred >= 0) & (pred < k)
            own = take_class(p, np.where(fine, pred, 0).astype(np.int64))
            offmax = fine & (own + ARGMAX_TIE_TOLERANCE < pmax)
            if clean:
                conds: list[np.ndarray | None] = [None] * len(CHECKS) + [offmax]
            else:
                conds = [
                    null,
                    np.logical_or.reduce([~np.isfinite(x) | (x != np.trunc(x)) for x in ints]),
                    ~np.isfinite(p).all(axis=1),
                    ((p < 0) | (p > 1)).any(axis=1),
                    np.abs(psum - 1.0) > SUM_TOLERANCE,
                    None if label is None else (label < 0) | (label >= k),
                    (pred < 0) | (pred >= k),
                    offmax,
                ]
        if clean and not offmax.any():
            return
        code = np.full(m, -1, dtype=np.int8)
        for i in range(len(conds) - 1, -1, -1):  # the first failing check of a row wins
            if conds[i] is not None:
                code[conds[i]] = i
        if not (code >= 0).any():
            return
        for c in np.unique(code[code >= 0]).tolist():
            if c == _OFFMAX:
                self.n_off += int((code == c).sum())
            at = (file_idx, file_row0 + int(np.argmax(code == c)) + 1)
            self.first.setdefault(int(c), at)

    def check_ids(self, ids: np.ndarray, file_idx: int, file_row0: int) -> None:
        for i, v in enumerate(ids.tolist()):
            at = self.ids.setdefault(v, (file_idx, file_row0 + i + 1))
            seen_before = at != (file_idx, file_row0 + i + 1)
            if seen_before and (self.dup is None or at < self.dup[:2]):
                self.dup = (*at, v)


class SourceStream:
    """One source read as batches (:meth:`batches`), then :meth:`finish` (row counts, errors, notes, sidecar)."""

    def __init__(self, src: SoftmaxSource, delims: list[str | None]) -> None:
        self.src, self.delims = src, delims
        self.rows = RowChecks(src)
        self.row_values: dict[tuple[int, int], dict[str, Any]] = {}

    @property
    def failed(self) -> bool:
        """A row failed a check so far (its batch must not be analysed: :meth:`finish` raises)."""
        return any(c != _OFFMAX for c in self.rows.first)

    def batches(self, *, check: bool = True) -> Iterator[Batch]:
        """Every row in file order, as :class:`Batch` es (checked unless ``check`` is False: a second pass)."""
        src, row0 = self.src, 0
        counts = []
        for idx, f in enumerate(src.files):
            file_row0 = 0
            for table in self._read(f, self.delims[idx]):
                b, raw, nulls = self._to_batch(table, row0)
                if check:
                    null = np.logical_or.reduce(list(nulls.values())) if nulls else None
                    self.rows.check(raw, b.p, idx, file_row0, null)
                    self._keep_first_values(raw, b.p, nulls, idx, file_row0)
                    if b.ids is not None:
                        self.rows.check_ids(b.ids, idx, file_row0)
                file_row0 += len(b)
                row0 += len(b)
                yield b
            counts.append(file_row0)
        src.shard_rows = counts

    def _keep_first_values(self, raw: dict[str, np.ndarray], p: np.ndarray, nulls: dict[str, np.ndarray],
                           idx: int, file_row0: int) -> None:
        # the values of each check's first failing row, for its message (taken when first seen)
        for at in self.rows.first.values():
            if at not in self.row_values and at[0] == idx and file_row0 < at[1] <= file_row0 + p.shape[0]:
                i = at[1] - file_row0 - 1
                rec = {"pred": raw["pred"][i], **{f"p{c}": p[i, c] for c in range(self.src.k)}}
                if "label" in raw:
                    rec["label"] = raw["label"][i]
                self.row_values[at] = {c: None if c in nulls and nulls[c][i] else float(v) for c, v in rec.items()}

    def _read(self, path: Path, delim: str | None) -> Iterator[Any]:
        import pyarrow as pa

        src = self.src
        cols = expected_columns(src.k, with_id=src.has_id, with_label=src.has_label)
        try:
            if delim is None:
                import pyarrow.parquet as pq

                yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=cols)
                return
            import pyarrow.csv as pc

            types = {c: pa.string() if c == "id" else pa.float64() for c in cols}
            reader = pc.open_csv(
                path, read_options=pc.ReadOptions(column_names=cols, skip_rows=1, block_size=CSV_BLOCK_BYTES),
                parse_options=pc.ParseOptions(delimiter=delim, quote_char='"', double_quote=True),
                convert_options=pc.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True))
            yield from reader
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            from confdistill.prediction.sources import diagnose_failure

            diagnose_failure(replace(src, files=[path]), exc)

    def _to_batch(self, table: Any, row0: int) -> tuple[Batch, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(the batch, pred/label as read (float64), the null masks of the columns that have nulls)."""
        import pyarrow as pa

        k, m = self.src.k, table.num_rows
        names = ["pred", *(f"p{c}" for c in range(k)), *(["label"] if self.src.has_label else [])]
        values, nulls = {}, {}
        for name in names:
            col = table.column(name).cast(pa.float64())
            if col.null_count:
                nulls[name] = col.is_null().to_numpy(zero_copy_only=False)
                col = col.fill_null(float("nan"))
            # the value buffer itself (Arrow's to_numpy imports pandas: 0.15 s of a small run's start-up)
            values[name] = np.frombuffer(col.buffers()[1], dtype=np.float64, count=len(col), offset=col.offset)
        p = np.empty((m, k), dtype=np.float64, order="F")  # column passes are the fast ones
        for c in range(k):
            p[:, c] = values[f"p{c}"]
        ids = None
        if self.src.has_id:
            ids = np.empty(m, dtype=object)
            ids[:] = table.column("id").to_pylist()
        raw = {name: values[name] for name in ("pred", "label") if name in values}
        with np.errstate(invalid="ignore"):  # a bad row's value is never used: finish() raises first
            ints = {name: np.nan_to_num(v).astype(np.int64) for name, v in raw.items()}
        b = Batch(row0=row0, pred=ints["pred"], p=p, label=ints.get("label"), ids=ids)
        return b, raw, nulls

    def finish(self) -> SoftmaxSource:
        """After :meth:`batches`: raise the first row error (as docs/formats.md orders them), add the
        argmax note, read the sidecar."""
        src, rows = self.src, self.rows
        for i, m in enumerate(src.shard_rows):
            if m == 0:
                raise InputError("no data rows after the header (empty file)", path=src.files[i])
        errors = {c: at for c, at in rows.first.items() if c != _OFFMAX}
        if errors:
            c = min(errors)
            self._raise(CHECKS[c], errors[c])
        if rows.n_off:
            idx, row = rows.first[_OFFMAX]
            src.notes.append(f"{src.files[idx]}: {rows.n_off} row(s) have `pred` different from the argmax of "
                             f"p0..p{src.k - 1} (first: row {row}); accuracy uses `pred` as written")
        if rows.dup is not None:
            idx, row, v = rows.dup
            raise InputError(f"duplicate id {v!r} (ids must be unique)", path=src.files[idx], row=row)
        src.meta = read_sidecar(src.files[0], src.shard_rows[0], src.notes)
        return src

    def _raise(self, check: str, at: tuple[int, int]) -> None:
        from confdistill.prediction.sources import row_error

        row_error(self.src.k, check, self.row_values[at], path=self.src.files[at[0]], row=at[1])


def chunks(probs: np.ndarray, pred: np.ndarray, label: np.ndarray | None, ids: np.ndarray | None) -> Iterator[Batch]:
    """In-memory outputs (already checked) as batches of :data:`BATCH_ROWS` rows."""
    n = int(pred.shape[0])
    whole = Batch(row0=0, pred=np.asarray(pred, dtype=np.int64), p=np.asarray(probs, dtype=np.float64),
                  label=None if label is None else np.asarray(label, dtype=np.int64),
                  ids=None if ids is None else np.asarray(ids, dtype=object))
    for a in range(0, n, BATCH_ROWS):
        yield whole.part(a, min(n, a + BATCH_ROWS))


__all__ = ["BATCH_ROWS", "Batch", "SourceStream", "chunks", "open_stream"]
