"""The inputs that moved, joined to their text (the rows themselves are kept by :class:`.stream_pass.TopRows`).

A prediction file's sidecar records the task, the data file it predicted and that file's SHA-256
(``confdistill predict``). When the file is still there and unchanged, row i of the predictions
is example i of the file, so the text of a listed row can be shown beside its probabilities.
The data readers are imported lazily (they are only needed when a sidecar names a file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


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


__all__ = ["attach_texts", "row_texts"]
