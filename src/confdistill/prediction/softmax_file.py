"""The softmax output file format: one row per example, ``[id,]pred,p0,...,p{k-1},label``.

This is the research code's ``eval_results.csv`` (``pred,p0,p1,label``) generalised to k classes,
with an optional leading ``id`` column, in CSV (``.csv``), TSV (``.tsv``) or Parquet
(``.parquet``/``.pq``). A sidecar ``<file>.meta.json`` records where the predictions come from.
The full specification is ``docs/formats.md``.

Reading is the hot path of ``confdistill analyze`` (millions of rows). CSV/TSV text is parsed by
the C parser of :mod:`confdistill.prediction.fast_csv` when it is built (one pass, threads,
bit-identical to ``float()``, row checks fused into the pass); text outside its plain grammar,
or a missing extension, falls back to ``pyarrow.csv`` with explicit column types (correctly
rounded float64 parsing, no type inference) and vectorised numpy checks. Only when Arrow rejects
the text does a slow pure-Python pass run, to find and name the first offending row. Whichever
parser reads a file, the arrays, the error messages and the warnings are the same.

Imports: numpy and pyarrow only (never torch), so that the CLI starts fast.
"""

from __future__ import annotations

import codecs
import csv
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from confdistill.errors import InputError

#: Largest allowed |sum(p) - 1| per row.
SUM_TOLERANCE = 1e-3
#: ``pred`` differing from the argmax is only warned about when the written class is less probable
#: than the argmax by more than this: float32 softmax outputs that tie or nearly tie are legitimate.
ARGMAX_TIE_TOLERANCE = 1e-6
FORMAT_VERSION = "confdistill-softmax/1"

_CSV_EXT = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
_PARQUET_EXT = {".parquet", ".pq"}
_DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe", " ": "space"}


class SoftmaxFormatWarning(UserWarning):
    """Something in a softmax file that is suspicious but not wrong (e.g. ``pred`` not the argmax)."""


@dataclass
class SoftmaxOutputs:
    """Softmax outputs of one model on one split, rows in file order.

    Attributes:
        probs: (n, k) float64 class probabilities; every row sums to 1 within ``SUM_TOLERANCE``.
        pred: (n,) int64 predicted class as written in the file (normally the argmax of ``probs``).
        label: (n,) int64 gold class index in ``[0, k)``.
        ids: (n,) example ids as str (object array), or None when the file has no ``id`` column.
        path: the file read, or None for in-memory outputs.
        meta: the sidecar JSON (``<file>.meta.json``) if present, else ``{}``.
        notes: warnings raised while reading (also emitted as :class:`SoftmaxFormatWarning`).
    """

    probs: np.ndarray
    pred: np.ndarray
    label: np.ndarray
    ids: np.ndarray | None = None
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.probs.shape[0])

    @property
    def k(self) -> int:
        """Number of classes."""
        return int(self.probs.shape[1])

    @property
    def correct(self) -> np.ndarray:
        """(n,) bool: ``pred == label``."""
        return self.pred == self.label

    @property
    def name(self) -> str:
        """A short display name: the path, else ``meta['model']``, else ``"<memory>"``."""
        if self.path is not None:
            return str(self.path)
        return str(self.meta.get("model", "<memory>"))


def sidecar_path(path: str | Path) -> Path:
    """The sidecar of ``path``: ``<path>.meta.json`` (e.g. ``eval_results.csv.meta.json``)."""
    path = Path(path)
    return path.with_name(path.name + ".meta.json")


def expected_columns(k: int, *, with_id: bool = False) -> list[str]:
    """Column names of a k-class file: ``[id,]pred,p0,...,p{k-1},label``."""
    return (["id"] if with_id else []) + ["pred"] + [f"p{c}" for c in range(k)] + ["label"]


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_softmax(path: str | Path, *, delimiter: str | None = None) -> SoftmaxOutputs:
    """Read and validate a softmax output file (CSV / TSV / Parquet, chosen by extension).

    ``delimiter`` overrides the one implied by the extension (``.csv`` → comma, ``.tsv`` → tab;
    other extensions are sniffed from the header). Raises :class:`InputError` naming the file and
    the first bad row for: a missing/empty file, missing or extra columns, a wrong delimiter,
    unparsable or missing values, NaN/inf, probabilities outside [0, 1], rows not summing to 1
    (tolerance ``SUM_TOLERANCE``), ``pred``/``label`` outside ``[0, k)``, duplicate ids.
    A ``pred`` that is not the argmax only warns (:class:`SoftmaxFormatWarning`).
    A UTF-8 byte-order mark is accepted.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found (expected a softmax output file `pred,p0,...,label`)", path=path)
    if path.is_dir():
        raise InputError("is a directory, expected a softmax output file", path=path)
    if path.stat().st_size == 0:
        raise InputError("empty file, expected a header `pred,p0,...,p{k-1},label` and one row per example",
                         path=path)
    suffix = path.suffix.lower()
    notes: list[str] = []
    if suffix in _PARQUET_EXT:
        table, k, has_id = _read_parquet(path)
        out = _validate(path, table, k, has_id, notes)
    else:
        out = _read_delimited(path, delimiter, notes)
    out.meta = _read_sidecar(path, out.n, notes)
    out.notes = notes
    for note in notes:
        warnings.warn(note, SoftmaxFormatWarning, stacklevel=2)
    return out


def _check_header(path: Path, names: list[str], *, delimiter: str | None) -> tuple[int, bool]:
    """Validate column names; return (k, has_id). Order must be ``[id,]pred,p0..p{k-1},label``."""
    if len(names) == 1 and delimiter is not None:
        for cand, cname in _DELIMITER_NAMES.items():
            if cand != delimiter and cand in names[0] and "pred" in names[0]:
                expected = _DELIMITER_NAMES[delimiter]
                raise InputError(
                    f"header is {cname}-separated but {expected}-separated values were expected "
                    f"(`.csv` = comma, `.tsv` = tab): rewrite the file with {expected}s or rename it",
                    path=path, row=None)
    stripped = [n.strip() for n in names]
    has_id = bool(stripped) and stripped[0] == "id"
    body = stripped[1:] if has_id else stripped
    pcols = [n for n in body if n.startswith("p") and n[1:].isdigit()]
    k = len(pcols)
    if k < 2:
        raise InputError(
            f"expected columns `[id,]pred,p0,...,p{{k-1}},label` with k >= 2 probability columns, "
            f"got {','.join(stripped)!r}", path=path)
    want = expected_columns(k, with_id=has_id)
    if stripped != want:
        missing = [c for c in want if c not in stripped]
        extra = [c for c in stripped if c not in want]
        detail = []
        if missing:
            detail.append("missing column(s) " + ", ".join(missing))
        if extra:
            detail.append("unexpected column(s) " + ", ".join(repr(c) for c in extra))
        if not detail:
            detail.append("columns out of order")
        raise InputError(f"{'; '.join(detail)}: expected header {','.join(want)!r}, got {','.join(stripped)!r}",
                         path=path)
    return k, has_id


def _sniff_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _read_header_line(path: Path) -> tuple[str, int]:
    """First line of the file, decoded as UTF-8 without BOM; and its length in bytes (incl. newline)."""
    with open(path, "rb") as fh:
        raw = fh.readline(1 << 20)
    nbytes = len(raw)
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"header is not UTF-8 text ({exc.reason}); expected a CSV/TSV softmax file",
                         path=path, row=None) from None
    return text.rstrip("\r\n"), nbytes


def _read_delimited(path: Path, delimiter: str | None, notes: list[str]) -> SoftmaxOutputs:
    """Header checks, then the fast C parser, else Arrow; validated outputs (without sidecar)."""
    header, header_bytes = _read_header_line(path)
    if not header.strip():
        raise InputError("empty header line, expected `pred,p0,...,p{k-1},label`", path=path)
    if delimiter is None:
        delimiter = _CSV_EXT.get(path.suffix.lower()) or _sniff_delimiter(header)
    try:
        names = next(csv.reader([header], delimiter=delimiter))
    except csv.Error as exc:  # e.g. old Mac line ends (\r only): the "header" runs on
        raise InputError(f"cannot read the header line ({exc}): expected `pred,p0,...,p{{k-1}},label` "
                         "followed by a \\n or \\r\\n line end", path=path) from None
    k, has_id = _check_header(path, names, delimiter=delimiter)
    from confdistill.prediction.fast_csv import read_delimited_fast

    fast = read_delimited_fast(path, header_bytes, delimiter, k, has_id, sum_tolerance=SUM_TOLERANCE,
                               tie_tolerance=ARGMAX_TIE_TOLERANCE)
    if fast is None:  # not built, or text outside the fast grammar: Arrow (and its diagnostics)
        table = _read_arrow(path, delimiter, k, has_id)
        return _validate(path, table, k, has_id, notes)
    if fast.needs_check:  # some row fails or warns: the numpy checks give the exact message
        return validate_arrays(fast.probs, fast.pred, fast.label, fast.ids, path=path, notes=notes)
    # Every row passed the same checks in the parse pass; only ids remain to be checked.
    _check_unique_ids(fast.ids, len(fast.pred), path)
    return SoftmaxOutputs(probs=fast.probs, pred=fast.pred, label=fast.label, ids=fast.ids, path=path)


def _read_arrow(path: Path, delimiter: str, k: int, has_id: bool) -> Any:
    """The data rows as an Arrow table with typed columns (InputError naming the row if unparsable)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    cols = expected_columns(k, with_id=has_id)
    types = {"pred": pa.int64(), "label": pa.int64(), **{f"p{c}": pa.float64() for c in range(k)}}
    if has_id:
        types["id"] = pa.string()
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=cols, skip_rows=1, use_threads=True,
                                           block_size=1 << 22),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            # No null markers: an empty field is an error, not a silent NaN.
            convert_options=pacsv.ConvertOptions(column_types=types, null_values=[],
                                                 strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as exc:
        _diagnose_delimited(path, delimiter, cols)  # raises InputError naming the row
        raise InputError(f"cannot parse: {exc}", path=path) from None
    if table.num_rows == 0:
        raise InputError("no data rows after the header (empty file)", path=path)
    return table


def _fill(column: Any, out: np.ndarray) -> None:
    """Copy a null-free fixed-width Arrow ChunkedArray into ``out`` (a (n,) view, possibly strided).

    Reads the chunks' data buffers directly: one copy, straight into the final array, and no
    ``Array.to_numpy`` (which imports pandas, ~0.7 s).
    """
    pos = 0
    for chunk in column.chunks:
        m = len(chunk)
        if m == 0:
            continue
        data = np.frombuffer(chunk.buffers()[1], dtype=out.dtype, count=m, offset=chunk.offset * out.itemsize)
        out[pos:pos + m] = data
        pos += m


def _diagnose_delimited(path: Path, delimiter: str, cols: list[str]) -> None:
    """Slow pass (only after Arrow failed): raise InputError at the first bad row, if found."""
    try:
        _diagnose_rows(path, delimiter, cols)
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason}); expected a "
                         "UTF-8 CSV/TSV softmax file", path=path) from None


def _diagnose_rows(path: Path, delimiter: str, cols: list[str]) -> None:
    ncols = len(cols)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        next(reader, None)
        row_no = 0
        for row in reader:
            if not row:  # blank lines are skipped by the fast reader too
                continue
            row_no += 1
            where = f"(line {reader.line_num})"
            if len(row) != ncols:
                hint = ""
                if len(row) == 1:
                    for cand, cname in _DELIMITER_NAMES.items():
                        if cand != delimiter and cand in row[0]:
                            hint = f"; the row looks {cname}-separated"
                            break
                raise InputError(f"expected {ncols} fields ({','.join(cols)}), got {len(row)} {where}{hint}",
                                 path=path, row=row_no)
            for name, value in zip(cols, row, strict=True):
                if name == "id":
                    continue
                text = value.strip()
                if text == "":
                    raise InputError(f"missing value in column {name!r} {where}", path=path, row=row_no)
                try:
                    if name in ("pred", "label"):
                        int(text)
                    else:
                        float(text)
                except ValueError:
                    kind = "an integer class index" if name in ("pred", "label") else "a number"
                    raise InputError(f"column {name!r}: expected {kind}, got {value!r} {where}",
                                     path=path, row=row_no) from None


class _ParquetColumns:
    """Reads a Parquet softmax file one column at a time (only one Arrow column in memory at once),
    checking and casting each to the in-memory type."""

    def __init__(self, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = path
        try:
            self.file = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"not a readable Parquet file ({exc})", path=path) from None
        self.num_rows = self.file.metadata.num_rows

    def column(self, name: str) -> Any:
        import pyarrow as pa

        # Single-threaded: decoding is cheap, and Arrow's worker threads cost 2x the CPU time for
        # no wall-time gain on the 2 shared cores this was measured on.
        column = self.file.read(columns=[name], use_threads=False).column(0)
        if column.null_count:
            row = 1 + next(i for i, v in enumerate(column.is_null().to_pylist()) if v)
            raise InputError(f"missing value in column {name!r}", path=self.path, row=row)
        if name == "id":
            want = pa.string()
        elif name in ("pred", "label"):
            if not pa.types.is_integer(column.type):
                raise InputError(f"column {name!r} must hold integer class indices, got {column.type}",
                                 path=self.path)
            want = pa.int64()
        else:
            if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
                raise InputError(f"column {name!r} must hold numbers, got {column.type}", path=self.path)
            want = pa.float64()
        return column if column.type == want else column.cast(want)

    def drop_columns(self, names: list[str]) -> _ParquetColumns:
        return self


def _read_parquet(path: Path) -> tuple[Any, int, bool]:
    columns = _ParquetColumns(path)
    k, has_id = _check_header(path, list(columns.file.schema_arrow.names), delimiter=None)
    if columns.num_rows == 0:
        raise InputError("no data rows (empty file)", path=path)
    return columns, k, has_id


def row_sum(probs: np.ndarray) -> np.ndarray:
    """(n,) row sums of (n, k) ``probs``, column by column (fast for any memory order)."""
    out = probs[:, 0].copy()
    for c in range(1, probs.shape[1]):
        out += probs[:, c]
    return out


def row_max(probs: np.ndarray) -> np.ndarray:
    """(n,) row maxima of (n, k) ``probs`` (the confidence of the predicted class)."""
    out = probs[:, 0].copy()
    for c in range(1, probs.shape[1]):
        np.maximum(out, probs[:, c], out=out)
    return out


def take_class(probs: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """(n,) ``probs[i, cls[i]]`` for (n, k) ``probs`` and (n,) int class indices in [0, k)."""
    out = probs[:, 0].copy()
    for c in range(1, probs.shape[1]):
        np.copyto(out, probs[:, c], where=cls == c)
    return out


def _first(mask: np.ndarray) -> int:
    """1-based row number of the first True in a (n,) mask."""
    return int(np.argmax(mask)) + 1


def _validate(path: Path, table: Any, k: int, has_id: bool, notes: list[str]) -> SoftmaxOutputs:
    """Arrow table (or :class:`_ParquetColumns`) with typed columns → validated SoftmaxOutputs;
    each Arrow column is dropped once copied."""
    n = table.num_rows
    # Column-major: each pK column is one contiguous copy from Arrow, and column passes are fast.
    probs = np.empty((n, k), dtype=np.float64, order="F")
    for c in range(k):
        _fill(table.column(f"p{c}"), probs[:, c])
        table = table.drop_columns([f"p{c}"])
    pred = np.empty(n, dtype=np.int64)
    _fill(table.column("pred"), pred)
    label = np.empty(n, dtype=np.int64)
    _fill(table.column("label"), label)
    ids = np.asarray(table.column("id").to_pylist(), dtype=object) if has_id else None
    del table
    import pyarrow as pa

    # Arrow's allocator keeps freed blocks for reuse; hand them back so that the parsed text's
    # buffers do not stay in the process's resident memory next to the numpy arrays.
    pa.default_memory_pool().release_unused()
    return validate_arrays(probs, pred, label, ids, path=path, notes=notes)


def validate_arrays(
    probs: np.ndarray,
    pred: np.ndarray,
    label: np.ndarray,
    ids: np.ndarray | None = None,
    *,
    path: Path | None = None,
    notes: list[str] | None = None,
) -> SoftmaxOutputs:
    """Validate in-memory arrays as :func:`read_softmax` validates a file; return SoftmaxOutputs.

    ``probs`` (n, k) float64, ``pred`` and ``label`` (n,) integers, ``ids`` (n,) or None.
    Row numbers in errors are 1-based data rows (the header is not counted).
    """
    notes = [] if notes is None else notes
    n, k = probs.shape
    line = "" if path is None else " (line {})"
    if n == 0:
        raise InputError("no data rows (empty file)", path=path)
    # Fast whole-array checks first; the per-row pass that finds the row runs only on failure.
    # (numpy reductions along a short axis=1 are ~10x slower than column-wise passes.)
    lo, hi = probs.min(), probs.max()  # NaN propagates, so passing this also means finite
    if not (lo >= 0.0 and hi <= 1.0):
        finite = np.isfinite(probs).all(axis=1)
        if not finite.all():
            r = _first(~finite)
            raise InputError(f"non-finite probability (NaN or inf) in row {probs[r - 1].tolist()}"
                             f"{line.format(r + 1)}", path=path, row=r)
        r = _first(((probs < 0.0) | (probs > 1.0)).any(axis=1))
        raise InputError(f"probability outside [0, 1]: {probs[r - 1].tolist()}{line.format(r + 1)}",
                         path=path, row=r)
    total = row_sum(probs)
    total -= 1.0
    np.abs(total, out=total)
    if total.max() > SUM_TOLERANCE:
        r = _first(total > SUM_TOLERANCE)
        raise InputError(f"probabilities sum to {probs[r - 1].sum():.6g}, expected 1 within {SUM_TOLERANCE:g}"
                         f"{line.format(r + 1)}", path=path, row=r)
    del total
    for name, arr in (("label", label), ("pred", pred)):
        bad = (arr < 0) | (arr >= k)
        if bad.any():
            r = _first(bad)
            raise InputError(f"{name} {int(arr[r - 1])} is not a class index in [0, {k}){line.format(r + 1)}",
                             path=path, row=r)
    # pred vs argmax: compare probabilities, not indices, so that exact and near ties pass silently.
    off = take_class(probs, pred)
    off += ARGMAX_TIE_TOLERANCE
    off = off < row_max(probs)
    if off.any():
        r = _first(off)
        where = "" if path is None else f"{path}: "
        notes.append(f"{where}{int(off.sum())} row(s) have `pred` different from the argmax of p0..p{k - 1} "
                     f"(first: row {r}); accuracy uses `pred` as written")
    if ids is not None:
        ids = np.asarray(ids, dtype=object)
        _check_unique_ids(ids, n, path)
    return SoftmaxOutputs(probs=probs, pred=pred, label=label, ids=ids, path=path)


def _check_unique_ids(ids: np.ndarray | None, n: int, path: Path | None) -> None:
    """InputError naming the first row whose id occurs more than once in (n,) object ``ids``."""
    if ids is None:
        return
    uniq, first_idx, counts = np.unique(ids, return_index=True, return_counts=True)
    if len(uniq) != n:
        dup = int(first_idx[np.argmax(counts > 1)])
        raise InputError(f"duplicate id {ids[dup]!r} (ids must be unique)", path=path, row=dup + 1)


def _read_sidecar(path: Path, n: int, notes: list[str]) -> dict[str, Any]:
    side = sidecar_path(path)
    if not side.exists():
        return {}
    try:
        meta = json.loads(side.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"sidecar is not valid JSON ({exc})", path=side) from None
    if not isinstance(meta, dict):
        raise InputError("sidecar must hold a JSON object", path=side)
    if "n_rows" in meta and meta["n_rows"] != n:
        notes.append(f"{side}: n_rows {meta['n_rows']} in the sidecar but {n} rows in the file "
                     "(sidecar out of date?)")
    return meta


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def parquet_options(k: int) -> dict[str, Any]:
    """``pyarrow.parquet.write_table`` options for softmax files: LZ4 with byte-stream-split
    probabilities (float32-derived values compress ~3x) and no dictionaries (unique values):
    measured the fastest to read back of the standard choices, and smaller than the default."""
    return {"compression": "lz4", "use_dictionary": False,
            "use_byte_stream_split": [f"p{c}" for c in range(k)]}


def write_softmax(
    path: str | Path,
    probs: np.ndarray,
    labels: np.ndarray,
    *,
    ids: np.ndarray | list[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``[id,]pred,p0..p{k-1},label`` atomically; the sidecar too when ``meta`` is given.

    ``probs`` (n, k) probabilities (float32 or float64; written in shortest round-trip form, so
    reading back gives the same float64 values), ``labels`` (n,) int class indices. ``pred`` is
    the argmax of ``probs``. Format by extension: ``.csv``, ``.tsv``, ``.parquet``/``.pq``.
    The sidecar gets ``n_rows``, ``k``, ``format`` and ``file_sha256`` added; file and sidecar are
    put in place as one unit. Without ``meta`` an older sidecar (which would describe other data)
    is removed with it.
    The input is validated like a file being read (InputError on NaN, sums, label range).
    """
    import pyarrow as pa

    path = Path(path)
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise InputError(f"probs must have shape (n, k) with k >= 2, got {probs.shape}", path=path)
    labels = np.asarray(labels)
    if labels.shape != (probs.shape[0],):
        raise InputError(f"labels must have shape ({probs.shape[0]},), got {labels.shape}", path=path)
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be integer class indices, got dtype {labels.dtype}", path=path)
    pred = probs.argmax(axis=1).astype(np.int64)
    probs64 = probs.astype(np.float64, copy=False)
    id_arr = None if ids is None else np.asarray([str(v) for v in ids], dtype=object)
    if id_arr is not None and id_arr.shape != labels.shape:
        raise InputError(f"ids must have shape {labels.shape}, got {id_arr.shape}", path=path)
    validate_arrays(probs64, pred, labels.astype(np.int64), id_arr)
    k = probs.shape[1]
    data: dict[str, Any] = {}
    if id_arr is not None:
        data["id"] = pa.array(id_arr.tolist(), type=pa.string())
    data["pred"] = pred
    for c in range(k):
        # float32 model outputs are widened exactly to float64 and written in shortest round-trip
        # form, as the research code wrote them ("0.6369616985321045"): reading gives the same values.
        data[f"p{c}"] = probs64[:, c]
    data["label"] = labels.astype(np.int64)
    table = pa.table(data)
    suffix = path.suffix.lower()
    if suffix not in _PARQUET_EXT and suffix not in _CSV_EXT:
        raise InputError(f"unknown extension {path.suffix!r}: use .csv, .tsv or .parquet", path=path)

    def write(tmp: Path) -> None:
        if suffix in _PARQUET_EXT:
            import pyarrow.parquet as pq

            pq.write_table(table, tmp, **parquet_options(k))
        else:
            import pyarrow.csv as pacsv

            delim = _CSV_EXT[suffix]
            with open(tmp, "wb") as fh:
                # Header written by hand: Arrow would quote the column names.
                fh.write((delim.join(table.column_names) + "\n").encode())
                pacsv.write_csv(table, fh, write_options=pacsv.WriteOptions(include_header=False,
                                                                           delimiter=delim))

    # The file and its sidecar are one unit (confdistill.commit): after a kill at any point both are
    # the old ones or both the new ones (at worst the file without a sidecar, never a mismatched
    # pair); the sidecar records the file's SHA-256 (file_sha256).
    from confdistill.commit import write_with_sidecar

    side_meta = None if meta is None else {**meta, "n_rows": int(probs.shape[0]), "k": int(k),
                                           "format": FORMAT_VERSION}
    write_with_sidecar(path, sidecar_path(path), write, side_meta)
    return path


def outputs_from_arrays(
    probs: np.ndarray,
    labels: np.ndarray,
    *,
    pred: np.ndarray | None = None,
    ids: np.ndarray | None = None,
    meta: dict[str, Any] | None = None,
) -> SoftmaxOutputs:
    """Build validated :class:`SoftmaxOutputs` from arrays (notebooks, tests); ``pred`` defaults to argmax."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise InputError(f"probs must have shape (n, k) with k >= 2, got {probs.shape}")
    p = probs.argmax(axis=1) if pred is None else np.asarray(pred)
    out = validate_arrays(probs, np.asarray(p, dtype=np.int64), np.asarray(labels, dtype=np.int64), ids)
    out.meta = dict(meta or {})
    return out


__all__ = [
    "ARGMAX_TIE_TOLERANCE",
    "SUM_TOLERANCE",
    "SoftmaxFormatWarning",
    "SoftmaxOutputs",
    "expected_columns",
    "outputs_from_arrays",
    "parquet_options",
    "read_softmax",
    "row_max",
    "row_sum",
    "sidecar_path",
    "take_class",
    "validate_arrays",
    "write_softmax",
]
