"""``analyze_pair`` on streams: the two sources read as aligned record batches, every figure from mergeable aggregates.

One pass (:mod:`.stream_pass`) gives every figure but the calibration cells of a labelled pair
above ``EXACT_MAX_N`` rows, whose adaptive-ECE bins need the confidence histogram of the whole
pass first: a second pass (:mod:`.stream_calib`) adds those. Alignment is by row, or by id when
both files have ids (checked per chunk; ids in another order make the student be read into memory
once, indexed by id). The errors are the SQL engine's, in its order: the teacher's rows, the
student's rows, then the pair (classes, labels, row counts, ids, gold labels).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from confdistill.errors import InputError, setting_name
from confdistill.prediction.softmax_file import SoftmaxOutputs
from confdistill.prediction.sources import SoftmaxSource
from confdistill.prediction.stream import Batch, chunks, open_stream
from confdistill.properties.stream_pass import Aggregates, Rows, derive


class _Memory:
    """In-memory outputs with the interface of :class:`SourceStream` (already checked)."""

    def __init__(self, o: SoftmaxOutputs) -> None:
        self.o = o
        self.src = SoftmaxSource(spec=o.name, files=[o.path or Path(o.name)], k=o.k, has_id=o.ids is not None,
                                 has_label=o.label is not None, shard_rows=[o.n], meta=dict(o.meta),
                                 notes=list(o.notes))

    failed = False

    def batches(self, *, check: bool = True) -> Iterator[Batch]:
        return chunks(self.o.probs, self.o.pred, self.o.label, self.o.ids)

    def finish(self) -> SoftmaxSource:
        return self.src


def open_any(x: SoftmaxOutputs | str | Path) -> Any:
    return _Memory(x) if isinstance(x, SoftmaxOutputs) else open_stream(x)


def aligned(t: Iterator[Batch], s: Iterator[Batch]) -> Iterator[tuple[Batch, Batch]]:
    """Pairs of equal-length parts of two batch streams, in row order; the longer stream's rest is
    read to its end (its rows are checked and counted) but not paired."""
    tb = sb = None
    while True:
        if tb is None or len(tb) == 0:
            tb = next(t, None)
        if sb is None or len(sb) == 0:
            sb = next(s, None)
        if tb is None or sb is None:
            for _ in s if tb is None else t:
                pass
            return
        m = min(len(tb), len(sb))
        yield tb.part(0, m), sb.part(0, m)
        tb, sb = tb.part(m, len(tb)), sb.part(m, len(sb))


def _kind(delta: str, k: int, labelled: bool) -> str:
    if delta == "auto":
        return "p0" if k == 2 else ("label" if labelled else "pred")
    if delta == "label" and not labelled:
        raise InputError(f"{setting_name('delta')} label needs a `label` column; unlabelled logs compare p0 or "
                         "the predicted class")
    if delta in ("p0", "label", "pred"):
        return delta
    raise InputError(f"{setting_name('delta')}: expected 'p0', 'label' or 'pred', got {delta!r}")


def _pair_checks(t: SoftmaxSource, s: SoftmaxSource) -> None:
    """The pair checks that need only the headers and the row counts: classes, labels, rows per shard."""
    if t.k != s.k:
        raise InputError(f"student has {s.k} classes but the teacher ({t.name}) has {t.k}", path=s.name)
    if t.has_label != s.has_label:
        which = "teacher" if t.has_label else "student"
        raise InputError(f"only the {which} file has a `label` column: analyse two labelled files or two "
                         "unlabelled logs, not one of each", path=s.name)
    if t.n != s.n:
        where = s.name
        if len(t.shard_rows) == len(s.shard_rows) > 1:
            i = next(i for i, (a, b) in enumerate(zip(t.shard_rows, s.shard_rows, strict=True)) if a != b)
            where = str(s.files[i])
            detail = f"shard {i + 1} has {s.shard_rows[i]} rows, the teacher's ({t.files[i]}) {t.shard_rows[i]}"
        else:
            detail = f"student has {s.n} rows but the teacher ({t.name}) has {t.n}"
        raise InputError(f"{detail}: the files are not predictions on the same examples (check the split "
                         "and that neither run was cut short)", path=where)


class Spill:
    """The aligned rows of the first pass, as raw float64/int64 bytes in an anonymous temporary file (gone
    when closed, even if the process is killed): a second pass reads them back instead of parsing text
    again (56 bytes a row for two classes, on disk, not in memory)."""

    def __init__(self, k: int, labelled: bool) -> None:
        import tempfile

        self.k, self.labelled = k, labelled
        self.file = tempfile.TemporaryFile(prefix="confdistill-pass-")  # noqa: SIM115 - closed by close()
        self.sizes: list[int] = []

    def write(self, t: Batch, s: Batch) -> None:
        parts = [t.pred, s.pred, *([t.label] if self.labelled else []), t.p, s.p]
        for a in parts:
            self.file.write(np.asfortranarray(a).tobytes(order="F"))
        self.sizes.append(len(t))

    def read(self) -> Iterator[tuple[Batch, Batch]]:
        self.file.seek(0)
        row0 = 0
        for m in self.sizes:
            ints = [np.fromfile(self.file, dtype=np.int64, count=m) for _ in range(3 if self.labelled else 2)]
            ps = [np.fromfile(self.file, dtype=np.float64, count=m * self.k).reshape((m, self.k), order="F")
                  for _ in range(2)]
            label = ints[2] if self.labelled else None
            yield (Batch(row0=row0, pred=ints[0], p=ps[0], label=label, ids=None),
                   Batch(row0=row0, pred=ints[1], p=ps[1], label=label, ids=None))
            row0 += m

    def close(self) -> None:
        self.file.close()


class PairStream:
    """Two opened sources and what the pass found about their pairing."""

    def __init__(self, teacher: SoftmaxOutputs | str | Path, student: SoftmaxOutputs | str | Path,
                 delta: str) -> None:
        self.t, self.s = open_any(teacher), open_any(student)
        ts, ss = self.t.src, self.s.src
        self.k, self.labelled = ts.k, ts.has_label
        self.use_id = ts.has_id and ss.has_id
        self.deferred: InputError | None = None
        try:
            if ts.k != ss.k or ts.has_label != ss.has_label:
                _pair_checks(ts, ss)
            self.kind = _kind(delta, ts.k, ts.has_label)
        except InputError as exc:  # raised after the rows are checked, as the SQL engine did
            self.deferred, self.kind = exc, "p0"
        self.reorder = False
        self.label_bad = 0
        self.label_first: tuple[int, int, int] | None = None
        self.student_by_id: dict[Any, int] | None = None
        self.student_all: Batch | None = None
        # text is costly to parse twice: its rows are spilled for a second pass (ids are not kept, so
        # files with ids are read again instead)
        text = any(d is not None for x in (self.t, self.s) for d in getattr(x, "delims", []))
        self.spill = Spill(ts.k, ts.has_label) if text and not self.use_id else None

    @property
    def teacher(self) -> SoftmaxSource:
        return self.t.src

    @property
    def student(self) -> SoftmaxSource:
        return self.s.src

    def first_pass(self, add: Callable[[Rows], None]) -> None:
        """Read, check and pair every row; ``add`` each aligned chunk (unless the pair is already wrong)."""
        for tb, sb in aligned(self.t.batches(), self.s.batches()):
            if self.deferred is not None or self.reorder or self.t.failed or self.s.failed:
                continue  # finish() or the checks below raise
            if self.use_id and not np.array_equal(tb.ids, sb.ids):
                self.reorder = True  # the ids are in another order: paired by id in a pass of their own
                continue
            self._labels(tb, sb)
            add(derive(tb, sb, self.kind))
            if self.spill is not None:
                self.spill.write(tb, sb)
        t_src, s_src = self.t.finish(), self.s.finish()
        if self.deferred is not None:
            raise self.deferred
        _pair_checks(t_src, s_src)

    def again(self, add: Callable[[Rows], None], *, first: bool = False) -> None:
        """One more pass over the (already checked) rows."""
        if self.reorder:
            self._by_id(add, first=first)
            return
        pairs = self.spill.read() if self.spill is not None else \
            aligned(self.t.batches(check=False), self.s.batches(check=False))
        for tb, sb in pairs:
            add(derive(tb, sb, self.kind))

    def close(self) -> None:
        if self.spill is not None:
            self.spill.close()

    def _labels(self, tb: Batch, sb: Batch) -> None:
        if tb.label is None:
            return
        bad = tb.label != sb.label
        if bad.any():
            i = int(np.argmax(bad))
            self.label_bad += int(bad.sum())
            if self.label_first is None:
                self.label_first = (tb.row0 + i + 1, int(tb.label[i]), int(sb.label[i]))

    def _by_id(self, add: Callable[[Rows], None], *, first: bool) -> None:
        if self.student_all is None:
            parts = list(self.s.batches(check=False))
            whole = parts[0]
            self.student_all = Batch(row0=0, pred=np.concatenate([b.pred for b in parts]),
                                     p=np.concatenate([b.p for b in parts]),
                                     label=None if whole.label is None else np.concatenate([b.label for b in parts]),
                                     ids=np.concatenate([b.ids for b in parts]))
            self.student_by_id = {v: i for i, v in enumerate(self.student_all.ids.tolist())}
        assert self.student_by_id is not None
        whole = self.student_all
        for tb in self.t.batches(check=False):
            pos = [self.student_by_id.get(v, -1) for v in tb.ids.tolist()]
            if -1 in pos:
                i = pos.index(-1)
                raise InputError(f"id {tb.ids[i]!r} of the teacher's row {tb.row0 + i + 1} is not in the student "
                                 "file", path=self.student.name)
            take = np.asarray(pos, dtype=np.int64)
            sb = Batch(row0=tb.row0, pred=whole.pred[take], p=whole.p[take],
                       label=None if whole.label is None else whole.label[take], ids=whole.ids[take])
            if first:
                self._labels(tb, sb)
            add(derive(tb, sb, self.kind))

    def check_labels(self) -> None:
        if self.label_first is None:
            return
        row, t_label, s_label = self.label_first
        f, r = self.student.locate(row) if not self.use_id else (self.student.name, None)
        raise InputError(
            f"label {s_label} differs from the teacher's label {t_label} ({self.teacher.name}, same row"
            f"{'' if not self.use_id else ' id'}): {self.label_bad} row(s) disagree, the files are not aligned",
            path=f, row=r)


def run_passes(pair: PairStream, make: Callable[[], Aggregates]) -> Aggregates:
    """The first pass into a new ``make()`` (a pair in another id order: again, by id)."""
    agg = make()
    pair.first_pass(agg.add)
    if pair.reorder:
        agg, pair.label_bad, pair.label_first = make(), 0, None
        pair.again(agg.add, first=True)
    pair.check_labels()
    return agg


__all__ = ["PairStream", "aligned", "open_any", "run_passes"]
