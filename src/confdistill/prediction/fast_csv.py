"""Fast exact reader for CSV/TSV softmax files (the hot path of ``confdistill analyze``).

The C extension ``_native`` (built by ``setup.py`` at install; optional) parses the rows
``[id,]pred,p0,...,p{k-1},label`` of a memory-mapped file in one pass, several threads each on
its own byte range (the C code releases the GIL), straight into the final column-major arrays,
and checks each row as :func:`~confdistill.prediction.softmax_file.validate_arrays` does
(range, row sum, class indices, ``pred`` vs argmax) in the same pass.

Exactness: every probability is bit-identical to Python's ``float()`` of its text (correctly
rounded; Clinger's fast path, Eisel–Lemire with 128-bit powers of five, glibc ``strtod_l`` for
more than 19 significant digits; see ``_native.c``), hence also to pyarrow's parse.

It only accepts the plain grammar (digits, one ``.``, an exponent, a sign; integers as digits;
``\\n`` or ``\\r\\n`` line ends; exactly the expected number of fields per row): anything else
(quotes, spaces, ``nan``, blank lines, wrong field counts...) makes :func:`read_delimited_fast`
return None, and the caller reads the file with pyarrow, whose error messages are the reference.
When a row would fail or warn in validation, the result says so (``needs_check``) and the caller
runs the numpy validation, which produces the exact message.

Imports the standard library and numpy only.
"""

from __future__ import annotations

import itertools
import mmap
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:
    from confdistill.prediction import _native
except ImportError:  # extension not built (no C compiler at install): pyarrow reads the files
    _native = None

#: Files are cut into pieces of about this many bytes (at line starts), which the threads take in
#: turn: on a machine shared with other jobs a thread that gets less CPU simply takes fewer pieces.
CHUNK_BYTES = 8 << 20
MAX_THREADS = 8


def _pow5_table() -> bytes:
    """(hi, lo) uint64 pairs: the 128 most significant bits of 5**q for q = -342..308, as
    Eisel–Lemire needs them (q < 0: reciprocal rounded up; q >= 0: truncated), little-endian.
    The same construction as fast_float's table generator, with Python's exact big integers."""
    out = []
    for q in range(-342, 0):
        power5 = 5**-q
        z = power5.bit_length()  # smallest z with 2**z >= 5**-q (5**-q is no power of two)
        b = z + 127 if q >= -27 else 2 * z + 128
        c = 2**b // power5 + 1
        out.append(c >> max(0, c.bit_length() - 128))  # truncate to the 128 leading bits
    for q in range(0, 309):
        power5 = 5**q
        shift = 128 - power5.bit_length()
        out.append(power5 << shift if shift >= 0 else power5 >> -shift)
    words = np.empty(2 * len(out), dtype="<u8")
    words[0::2] = [c >> 64 for c in out]
    words[1::2] = [c & 0xFFFFFFFFFFFFFFFF for c in out]
    return words.tobytes()


if _native is not None:
    _native.set_pow5_table(_pow5_table())


def available() -> bool:
    """Whether the C parser is built (else :func:`read_delimited_fast` always returns None)."""
    return _native is not None


def parse_float(text: str | bytes) -> float:
    """The C parser's float conversion of one field (for tests). ValueError outside its grammar."""
    if _native is None:
        raise RuntimeError("confdistill.prediction._native is not built")
    return _native.parse_float(text.encode() if isinstance(text, str) else text)


@dataclass
class FastParse:
    """Arrays parsed from a softmax file; ``probs`` (n, k) float64 column-major, ``pred`` and
    ``label`` (n,) int64, ``ids`` (n,) str objects or None; ``needs_check``: some row fails or
    warns in validation (run the numpy validation for the message)."""

    probs: np.ndarray
    pred: np.ndarray
    label: np.ndarray
    ids: np.ndarray | None
    needs_check: bool


def _threads() -> int:
    try:
        return max(1, min(MAX_THREADS, len(os.sched_getaffinity(0))))
    except AttributeError:  # not Linux
        return max(1, min(MAX_THREADS, os.cpu_count() or 1))


def _map_pieces(fn: Any, items: list[Any], nthreads: int, *, failed: Any = None) -> list[Any]:
    """[fn(item) for item in items], computed by ``nthreads`` threads taking items in turn. Once
    a result satisfies ``failed(result)``, the items not yet started are skipped (left None)."""
    results: list[Any] = [None] * len(items)
    todo = iter(range(len(items)))  # shared: next() on it is atomic under the GIL
    stop = threading.Event()

    def worker() -> None:
        for i in todo:
            if stop.is_set():
                break
            results[i] = fn(items[i])
            if failed is not None and failed(results[i]):
                stop.set()

    run_concurrently([worker] * max(1, min(nthreads, len(items))))
    return results


def run_concurrently(calls: list[Any]) -> list[Any]:
    """Run zero-argument callables concurrently, the first in this thread; return their results
    in order (an exception in any is re-raised here). Worth it for work that releases the GIL
    (the C parser, numpy sorts and large elementwise operations)."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(1, len(calls))]
    for t in threads:
        t.start()
    work(0)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def read_delimited_fast(path: Path, data_start: int, delimiter: str, k: int, has_id: bool, *,
                        sum_tolerance: float, tie_tolerance: float,
                        threads: int | None = None) -> FastParse | None:
    """Parse the data rows of ``path`` (from byte ``data_start``, just after the header line).

    Returns None when the extension is missing, the file has no data row, or the text is not in
    the plain grammar (module docstring): the caller then reads the file with pyarrow.
    ``sum_tolerance`` / ``tie_tolerance``: the validation's row-sum and argmax-tie tolerances.
    """
    if _native is None or len(delimiter) != 1 or delimiter in '0123456789+-.eE"\r\n' or ord(delimiter) > 127:
        return None
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size <= data_start:
            return None
        try:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # not mappable (special file, some network file systems)
            return None
    try:
        nthreads = threads or _threads()
        pieces = max(1, min(4096, (size - data_start) // CHUNK_BYTES))
        # Split at line starts: each range begins just after a newline.
        bounds = [data_start]
        for i in range(1, pieces):
            pos = mm.find(b"\n", max(bounds[-1], data_start + (size - data_start) * i // pieces))
            if pos < 0 or pos + 1 >= size:
                break
            bounds.append(pos + 1)
        bounds.append(size)
        ranges = list(itertools.pairwise(bounds))
        # Pass 1 counts the rows of each piece (a fast newline count), so that pass 2 can write
        # every piece's rows straight into their final place in the output arrays.
        counts = _map_pieces(lambda ab: _native.count_rows(mm, *ab), ranges, nthreads)
        n = int(sum(counts))
        flat = np.empty(k * n, dtype=np.float64)
        pred = np.empty(n, dtype=np.int64)
        label = np.empty(n, dtype=np.int64)
        id_off = np.empty(n, dtype=np.int64) if has_id else None
        id_len = np.empty(n, dtype=np.int64) if has_id else None
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()
        delim = ord(delimiter)
        results = _map_pieces(
            lambda job: _native.parse(mm, job[0], job[1], job[1] == size, k, has_id, delim, job[2], n, flat, pred,
                                      label, id_off, id_len, sum_tolerance, tie_tolerance),
            [(a, b, r0) for (a, b), r0 in zip(ranges, starts, strict=True)], nthreads,
            failed=lambda res: res[0] < 0)  # text outside the grammar: stop, pyarrow reads it
        if any(res is None or res[0] != cnt for res, cnt in zip(results, counts, strict=True)):
            return None
        ids = None
        if has_id:
            assert id_off is not None and id_len is not None
            try:
                ids = np.array([mm[o:o + m].decode("utf-8") for o, m in zip(id_off.tolist(), id_len.tolist(),
                                                                            strict=True)], dtype=object)
            except UnicodeDecodeError:
                return None
        needs_check = any(res[1] for res in results)
    finally:
        mm.close()
    probs = flat.reshape(k, n).T  # (n, k) column-major view: column c is contiguous
    return FastParse(probs=probs, pred=pred, label=label, ids=ids, needs_check=needs_check)


def native() -> Any:
    """The C extension module (numeric kernels used by :mod:`confdistill.properties.confidence`),
    or None when it is not built."""
    return _native


__all__ = ["FastParse", "available", "native", "parse_float", "read_delimited_fast", "run_concurrently"]
