"""Slices: the figures per subgroup, because a student can hold overall and move by ±20 points on one class.

``--slice-by`` (an experiment's ``[analysis] slice_by``) names what to group the rows by:

- ``label``: the gold label (labelled files only);
- ``length``: the word count of the input text (both texts of a pair), in quartile buckets: the
  text of row i is example i of the data file the teacher's sidecar names (``confdistill
  predict`` writes it), as for the inputs that moved;
- ``COLUMN``: a column of the teacher's prediction file (``pred``: the teacher's prediction, ``id``,
  ``label``) or of that data file (e.g. a ``source`` or ``language`` column of custom data).

Per slice value, one more pass over the pair (:mod:`.stream_slices`) gives n, the σ set's size, σ (population, over the
set rows of the slice), the point verdict against κ ("not informative" below 30 set rows, as for
the whole pair), the negative-flip rate, the flip rate at each operating threshold and both
accuracies. A slice column with more than :data:`MAX_VALUES` distinct values is refused (one line,
exit 2): that is an identifier, not a subgroup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from confdistill.errors import InputError
from confdistill.prediction.sources import SoftmaxSource
from confdistill.properties.informative import MIN_SET_ROWS
from confdistill.properties.verdict import NOT_INFORMATIVE

MAX_VALUES = 1000
LENGTH_BUCKETS = 4


@dataclass
class Pair:
    """What the slice readers ask of a pair: the teacher's source (sidecar), rows, classes, labels, alignment."""

    teacher: SoftmaxSource
    n: int
    k: int
    labelled: bool
    aligned_by: str


def _data_file(pair: Pair, spec: str) -> Path:
    """The data file the teacher's sidecar names, unchanged since the predictions (InputError otherwise)."""
    meta = pair.teacher.meta
    what = f"--slice-by {spec}"
    if not meta.get("data_file"):
        raise InputError(f"{what}: needs the data file of the rows, named by the teacher's prediction sidecar "
                         f"(`data_file`); {pair.teacher.name} has no sidecar naming one")
    path = Path(str(meta["data_file"]))
    if not path.is_file():
        raise InputError(f"{what}: the data file {path} named by the teacher's sidecar is missing")
    if meta.get("data_sha256"):
        from confdistill.io import sha256_file

        if sha256_file(path) != meta["data_sha256"]:
            raise InputError(f"{what}: {path} changed since the predictions were made (SHA-256 differs from the "
                             "sidecar's), so its rows may not be the predicted ones")
    return path


def length_keys(pair: Pair, spec: str) -> list[str]:
    from confdistill.properties.worst import row_texts

    path = _data_file(pair, spec)
    texts = row_texts(str(pair.teacher.meta.get("task", "")), path, pair.teacher.meta)
    if texts is None:
        raise InputError(f"--slice-by {spec}: cannot read the texts of {path} (task "
                         f"{pair.teacher.meta.get('task')!r} in the sidecar)")
    _same_rows(pair, spec, path, len(texts))
    # (row_texts joins a pair's two texts with " ‖ ": the separator is not a word)
    words = np.array([len(t.replace(" ‖ ", " ").split()) for t in texts], dtype=np.int64)
    edges = np.quantile(words, np.linspace(0.0, 1.0, LENGTH_BUCKETS + 1)[1:-1])
    # bucket i holds the words w with edges[i-1] < w <= edges[i] (ties stay together)
    bucket = np.searchsorted(edges, words, side="left")
    names = {}
    for b in np.unique(bucket).tolist():
        w = words[bucket == b]
        names[b] = f"Q{b + 1}: {int(w.min())}-{int(w.max())} words"
    return [names[b] for b in bucket.tolist()]


def _same_rows(pair: Pair, spec: str, path: Path, m: int) -> None:
    if m != pair.n:
        raise InputError(f"--slice-by {spec}: {path} has {m} rows but the predictions have {pair.n}: not the "
                         "predicted data file")


def column_keys(pair: Pair, spec: str) -> tuple[str, list[Any] | None]:
    """(the prediction-file column's name in the pass — t_pred, id, label, t_p0… — or per-row values from
    the data file)."""
    own = {"pred": "t_pred", "id": "id", **{f"p{c}": f"t_p{c}" for c in range(pair.k)}}
    if pair.labelled:
        own["label"] = "label"
    if pair.aligned_by == "row" and not pair.teacher.has_id:
        own.pop("id")
    if spec in own:
        return own[spec], None
    path = None if not pair.teacher.meta.get("data_file") else Path(str(pair.teacher.meta["data_file"]))
    if path is not None and path.is_file():
        from confdistill.data.tabular import _records  # the reader of every command

        records = [r for _, r in _records(_data_file(pair, spec))]
        columns = list(records[0]) if records else []
        if spec in columns:
            _same_rows(pair, spec, path, len(records))
            return "", [r[spec] for r in records]
        where = f"; the data file {path} has {', '.join(columns)}"
    else:
        where = "; no data file (the teacher's sidecar names none, or it is missing)"
    raise InputError(f"--slice-by {spec}: no such column: expected label, length, a column of the prediction "
                     f"file ({', '.join(own)}) or of its data file{where}")


def slice_verdict(sigma: float, n_set: int, kappa: float | None) -> str:
    """The point verdict of one slice (no bootstrap per slice): not informative below 30 set rows."""
    if n_set < MIN_SET_ROWS:
        return NOT_INFORMATIVE
    if kappa is None:
        return "no verdict"
    return "holds" if sigma <= kappa else "fails"


def moves_most(slices: Sequence[dict[str, Any]]) -> int | None:
    """Index of the informative slice with the largest σ (where the confidence moves most), or None."""
    best = [(s["sigma"], -i) for i, s in enumerate(slices)
            if s.get("verdict") != NOT_INFORMATIVE and s.get("sigma") is not None and math.isfinite(s["sigma"])]
    return -max(best)[1] if best else None


__all__ = ["LENGTH_BUCKETS", "MAX_VALUES", "Pair", "column_keys", "length_keys", "moves_most", "slice_verdict"]
