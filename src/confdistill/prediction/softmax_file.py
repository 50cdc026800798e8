"""The softmax output file format: one row per example, ``[id,]pred,p0,...,p{k-1}[,label]``.

This is the research code's ``eval_results.csv`` (``pred,p0,p1,label``) generalised to k classes,
with an optional leading ``id`` column and an optional ``label`` (a service's logs have none),
in CSV (``.csv``), TSV (``.tsv``) or Parquet (``.parquet``/``.pq``). A sidecar
``<file>.meta.json`` records where the predictions come from. The full specification is
``docs/formats.md``.

Reading goes through Arrow's streaming readers (:mod:`confdistill.prediction.stream`: parsing, the row
checks batch by batch, shards); :func:`read_softmax` brings one model's outputs into memory as numpy arrays.
Writing is pyarrow (atomic, with the sidecar). Imports numpy only at module level (never torch).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from confdistill.errors import InputError
from confdistill.prediction.shards import expected_columns, sidecar_path
from confdistill.prediction.sources import (
    ARGMAX_TIE_TOLERANCE,
    CSV_EXT,
    PARQUET_EXT,
    SUM_TOLERANCE,
)

FORMAT_VERSION = "confdistill-softmax/1"


class SoftmaxFormatWarning(UserWarning):
    """Something in a softmax file that is suspicious but not wrong (e.g. ``pred`` not the argmax)."""


@dataclass
class SoftmaxOutputs:
    """Softmax outputs of one model on one split, rows in file order.

    Attributes:
        probs: (n, k) float64 class probabilities; every row sums to 1 within ``SUM_TOLERANCE``.
        pred: (n,) int64 predicted class as written in the file (normally the argmax of ``probs``).
        label: (n,) int64 gold class index in ``[0, k)``, or None for unlabelled logs.
        ids: (n,) example ids as str (object array), or None when the file has no ``id`` column.
        path: the file read, or None for in-memory outputs.
        meta: the sidecar JSON (``<file>.meta.json``) if present, else ``{}``.
        notes: warnings raised while reading (also emitted as :class:`SoftmaxFormatWarning`).
    """

    probs: np.ndarray
    pred: np.ndarray
    label: np.ndarray | None
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


def read_softmax(path: str | Path, *, delimiter: str | None = None) -> SoftmaxOutputs:
    """Read and validate a softmax output file (CSV / TSV / Parquet, chosen by extension) into memory.

    ``path`` may also be a directory or a glob of shard files (concatenated in name order).
    ``delimiter`` overrides the one implied by the extension (``.csv`` → comma, ``.tsv`` → tab;
    other extensions are sniffed from the header). Raises :class:`InputError` naming the file and
    the first bad row for: a missing/empty file, missing or extra columns, a wrong delimiter,
    unparsable or missing values, NaN/inf, probabilities outside [0, 1], rows not summing to 1
    (tolerance ``SUM_TOLERANCE``), ``pred``/``label`` outside ``[0, k)``, duplicate ids.
    A ``pred`` that is not the argmax only warns (:class:`SoftmaxFormatWarning`).
    A UTF-8 byte-order mark is accepted. Files without a ``label`` column (unlabelled logs) give
    ``label = None``. For logs too large for memory, analyse the files directly
    (:func:`confdistill.properties.analyze_files`): that path streams.
    """
    from confdistill.prediction.stream import open_stream

    stream = open_stream(path, delimiter=delimiter)
    parts = list(stream.batches())
    src = stream.finish()
    probs = np.asfortranarray(np.concatenate([b.p for b in parts]))  # column passes are the fast ones
    pred = np.concatenate([b.pred for b in parts])
    label = np.concatenate([b.label for b in parts]) if src.has_label else None  # type: ignore[misc]
    ids = np.concatenate([b.ids for b in parts]) if src.has_id else None  # type: ignore[misc]
    out = SoftmaxOutputs(probs=probs, pred=pred, label=label, ids=ids,
                         path=src.path if src.path is not None else Path(src.spec), meta=src.meta,
                         notes=src.notes)
    for note in src.notes:
        warnings.warn(note, SoftmaxFormatWarning, stacklevel=2)
    return out


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
    if suffix not in PARQUET_EXT and suffix not in CSV_EXT:
        raise InputError(f"unknown extension {path.suffix!r}: use .csv, .tsv or .parquet", path=path)

    def write(tmp: Path) -> None:
        if suffix in PARQUET_EXT:
            import pyarrow.parquet as pq

            pq.write_table(table, tmp, **parquet_options(k))
        else:
            import pyarrow.csv as pacsv

            delim = CSV_EXT[suffix]
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
