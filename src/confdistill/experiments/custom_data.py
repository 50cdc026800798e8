"""A custom task (``task = "custom"``) in the runner: its columns checked, its classes fixed, its subsets.

A custom task reads ``DATA_DIR/{train,dev}.{csv,tsv,jsonl}`` with the columns the task table names
(:class:`confdistill.data.TableColumns`). When the plan is built:

* every named column must be in both split files (an error names the key, e.g.
  ``tasks.reviews.text_column: no column 'txt' in …/train.csv (columns: id, review, label)``);
* the class names, when the table gives no ``label_names``, are taken once from the *full* train
  file (:func:`confdistill.data.infer_label_names`) and written into the task's columns. Every step
  then sees the same classes in the same order — a capped subset that happens to miss a class, the
  teacher, the students, the predictions — and they are part of every step's hash.

Standard library only at module level (the CLI imports the runner for ``--dry-run``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

from confdistill.delimited import Reader
from confdistill.errors import InputError
from confdistill.experiments.config import ExperimentConfig, TaskConfig

#: Task-table key of each TableColumns field, for messages.
_KEYS = {"text": "text_column", "text_pair": "text_pair_column", "label": "label_column"}


def split_file(task: TaskConfig, split: str) -> Path:
    """The file of ``split``: ``DATA_DIR/<split>.{csv,tsv,jsonl}`` (custom) or the GLUE TSV."""
    from confdistill.data import resolve_split_file, resolve_table_file

    return resolve_table_file(task.data_dir, split) if task.is_custom else resolve_split_file(
        task.task, task.data_dir, split)


def resolve_columns(cfg: ExperimentConfig, task: TaskConfig, files: dict[str, Path]) -> TaskConfig:
    """``task`` with its columns checked against ``files`` (role -> split file) and its class names
    fixed from the train file; a GLUE task is returned as it is."""
    if task.columns is None:
        return task
    from confdistill.data import TableColumns, infer_label_names

    columns = TableColumns.from_mapping(task.columns)
    for path in files.values():
        have = _first_record_keys(path)
        for field, key in _KEYS.items():
            name = getattr(columns, field)
            if name is not None and name not in have:
                raise InputError(f"{cfg.source}: tasks.{task.key}.{key}: no column {name!r} in {path} "
                                 f"(columns: {', '.join(have)})")
    if columns.label_names is None:
        try:
            names = infer_label_names(files["train"], columns)
        except InputError as exc:
            raise InputError(f"{cfg.source}: tasks.{task.key}.label_column: {exc}") from None
        if len(names) < 2:
            raise InputError(f"{cfg.source}: tasks.{task.key}.label_column: the train file has one class "
                             f"({names[0]!r}); the analysis needs at least two (or give label_names)")
        columns = dataclasses.replace(columns, label_names=names)
    return dataclasses.replace(task, columns=columns.to_dict())


def _first_record_keys(path: Path) -> list[str]:
    """The column names of a CSV/TSV header, or the keys of a JSONL file's first object."""
    from confdistill.data.tabular import _records  # the reader every command uses

    for _, record in _records(path):
        return list(record)
    if path.suffix.lower() == ".jsonl":
        raise InputError("no data rows: the split is empty", path=path)
    with open(path, encoding="utf-8-sig", newline="") as fh:  # a header without rows
        first = fh.readline()
    return [h.strip() for h in first.rstrip("\r\n").split("\t" if path.suffix.lower() == ".tsv" else ",")]


def labels(task: TaskConfig) -> tuple[int, tuple[str, ...] | None]:
    """(number of classes, class names) of the task's classifier heads."""
    from confdistill.data import get_task

    if task.columns is not None:
        names = tuple(task.columns["label_names"] or ())
        return len(names), names
    spec = get_task(task.task)
    return spec.num_labels, spec.class_names


def texts(task: TaskConfig, data_dir: Path, split: str, n: int) -> list[str]:
    """The first ``n`` inputs of a split as text (a pair joined by a space), e.g. for latency runs."""
    from confdistill.data import load_examples

    examples = load_examples(task.task, data_dir, split, columns=task.columns).examples[:n]
    return [e.text_a if e.text_b is None else f"{e.text_a} {e.text_b}" for e in examples]


def write_csv_subset(src: Path, dst: Path, keep: set[int]) -> None:
    """Copy the header and the records of ``src`` that start on a line in ``keep``, in file order.

    A CSV record may span lines (a quoted field with a newline), so rows are re-written through the
    csv module (same fields; the quoting may be normalised) instead of copied line by line.
    """
    from confdistill.io import atomic_write

    with open(src, encoding="utf-8-sig", newline="") as fh, atomic_write(dst) as out:
        reader, writer = Reader(fh, src), csv.writer(out, lineterminator="\n")
        start, header_done = 1, False
        for fields in reader:
            line, start = start, reader.line_num + 1
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if not header_done or line in keep:
                writer.writerow(fields)
            header_done = True


def record_columns(prediction: Path, columns: dict[str, Any] | None) -> None:
    """Add a custom task's ``columns`` to a prediction file's sidecar, so that the analysis can join
    the listed rows to their text (:func:`confdistill.properties.worst.attach_texts` reads them)."""
    from confdistill.io import atomic_write
    from confdistill.prediction.softmax_file import sidecar_path

    side = sidecar_path(prediction)
    if columns is None or not side.is_file():
        return
    meta = json.loads(side.read_text(encoding="utf-8"))
    if meta.get("columns") == columns:
        return
    meta["columns"] = columns
    with atomic_write(side) as fh:
        json.dump(meta, fh, indent=2)
        fh.write("\n")
