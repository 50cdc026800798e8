"""The inputs that moved: the rows whose confidence changed most and the decision flips, joined to their text.

A prediction file's sidecar records the task, the data file it predicted and that file's SHA-256
(``confdistill predict``). When the file is still there and unchanged, row i of the predictions
is example i of the file, so the text of a listed row can be shown beside its probabilities.
The data readers are imported lazily (they are only needed when a sidecar names a file).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from confdistill.prediction.sources import dbl
from confdistill.properties.pair import Pair


def worst_rows(pair: Pair, n_worst: int, flip_tau: float | None) -> list[dict[str, Any]]:
    """The ``n_worst`` rows with the largest |Δconf| (all rows), then up to ``n_worst`` decision flips at
    ``flip_tau`` (largest |Δconf| first); ties go to the earlier row, so the same rows every run."""
    if n_worst <= 0:
        return []
    k = pair.k
    cols = ", ".join(["row", "id", "t_pred", "s_pred", "label", "delta", "t_c", "s_c",
                      *(f"t_p{c}" for c in range(k)), *(f"s_p{c}" for c in range(k))])
    queries = [("largest_delta", "")]
    if flip_tau is not None:
        tau = dbl(flip_tau)
        queries.append(("flip", f"WHERE (t_conf >= {tau}) <> (s_conf >= {tau}) OR (t_conf >= {tau} AND "
                                f"s_conf >= {tau} AND t_pred <> s_pred)"))
    out = []
    for kind, where in queries:
        for r in pair.con.execute(f"SELECT {cols} FROM v {where} ORDER BY abs(delta) DESC, row "
                                  f"LIMIT {int(n_worst)}").fetchall():
            out.append({"row": int(r[0]), "id": r[1], "kind": kind, "delta": _f(r[5]),
                        "teacher_conf": _f(r[6]), "student_conf": _f(r[7]),
                        "teacher_pred": int(r[2]), "student_pred": int(r[3]),
                        "teacher_p": [_f(x) for x in r[8:8 + k]], "student_p": [_f(x) for x in r[8 + k:8 + 2 * k]],
                        "label": None if r[4] is None else int(r[4]), "text": None})
    return out


def _f(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def attach_texts(rows: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    """Fill ``row["text"]`` of each listed row from the sidecar's data file; returns notes (why not, if not)."""
    data_file, task = meta.get("data_file"), meta.get("task")
    if not data_file or not task:
        return []
    path = Path(str(data_file))
    if not path.is_file():
        return [f"texts of the listed rows not shown: the data file {path} named by the sidecar is missing"]
    from confdistill.io import sha256_file

    if meta.get("data_sha256") and sha256_file(path) != meta["data_sha256"]:
        return [f"texts of the listed rows not shown: {path} changed since the predictions were made "
                "(SHA-256 differs from the sidecar's)"]
    texts = row_texts(str(task), path, meta)
    if texts is None:
        return []
    for r in rows:
        i = int(r["row"]) - 1
        if 0 <= i < len(texts):
            r["text"] = texts[i]
    return []


def row_texts(task: str, path: Path, meta: dict[str, Any]) -> list[str] | None:
    """The text of every row of the data file (a pair's two texts joined by " ‖ "), None when unreadable."""
    from confdistill.data import TableColumns, get_task, read_glue_file, read_table
    from confdistill.errors import InputError

    try:
        if task.lower() == "custom":
            columns = meta.get("columns")
            if not columns:
                return None
            examples, _ = read_table(path, TableColumns.from_mapping(columns))
        else:
            get_task(task)
            examples = read_glue_file(task, path)
    except (InputError, TypeError, KeyError, ValueError):
        return None
    return [e.text_a if e.text_b is None else f"{e.text_a} ‖ {e.text_b}" for e in examples]


__all__ = ["attach_texts", "row_texts", "worst_rows"]
