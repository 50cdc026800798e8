"""Users' own data (CSV / TSV / JSONL with named columns), and the ONE entry point for "which
examples of which split" shared by every command (distill, finetune, predict, run…).

* :func:`read_table` reads one file: a text column, an optional text-pair column and a label
  column, chosen by name (:class:`TableColumns`).
* :func:`load_examples` is the dispatcher: a GLUE task name reads the GLUE TSVs
  (:mod:`confdistill.data.glue`); the task name ``custom`` reads ``DATA_DIR/<split>.{csv,tsv,jsonl}``
  with the given columns.
* :func:`add_data_arguments` / :func:`load_examples_from_args` give CLI commands the same options
  (``--task --data-dir --text-column --text-pair-column --label-column --label-names --regression``)
  and the same loading code.

Label names of a custom classification task are ``--label-names`` when given, else the sorted
distinct labels of the *train* file beside the split (numerically sorted when all are integers),
so train and dev map labels to the same indices; a label of another split that train lacks is an
error. These names are also the task's ``class_names`` (the ``id2label`` of saved classifiers).
Formats by extension: ``.csv`` (standard CSV quoting), ``.tsv`` (tabs, *no* quoting, as
GLUE), ``.jsonl`` (one JSON object per line). Standard library only at module level.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confdistill.data.glue import Example, TaskSpec, get_task, read_glue_file, resolve_split_file
from confdistill.delimited import Reader
from confdistill.errors import InputError

__all__ = [
    "CUSTOM_TASK",
    "SplitData",
    "TableColumns",
    "add_data_arguments",
    "columns_from_args",
    "infer_label_names",
    "load_examples",
    "load_examples_from_args",
    "read_table",
    "resolve_table_file",
]

#: Task name that selects users' own tabular data.
CUSTOM_TASK = "custom"
_EXTENSIONS = (".csv", ".tsv", ".jsonl")


@dataclass(frozen=True)
class TableColumns:
    """Which columns of a user's table hold the inputs and the label.

    ``label_names``: class names in index order (``None``: inferred, see the module docstring).
    ``regression``: labels are real numbers (one output), not classes.
    """

    text: str
    label: str
    text_pair: str | None = None
    label_names: tuple[str, ...] | None = None
    regression: bool = False

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TableColumns:
        """Build from plain data (a TOML/JSON table): keys as the fields, ``label_names`` a list."""
        unknown = set(data) - {"text", "label", "text_pair", "label_names", "regression"}
        if unknown:
            raise InputError(f"unknown column setting(s) {sorted(unknown)}: expected text, label, "
                             "text_pair, label_names, regression")
        if not data.get("text") or not data.get("label"):
            raise InputError("custom data needs a text column and a label column")
        names = data.get("label_names")
        return cls(
            text=str(data["text"]),
            label=str(data["label"]),
            text_pair=str(data["text_pair"]) if data.get("text_pair") else None,
            label_names=tuple(str(n) for n in names) if names else None,
            regression=bool(data.get("regression", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML data (``label_names`` a list or None); ``from_mapping(c.to_dict()) == c``."""
        return {"text": self.text, "label": self.label, "text_pair": self.text_pair,
                "label_names": None if self.label_names is None else list(self.label_names),
                "regression": self.regression}


@dataclass(frozen=True)
class SplitData:
    """The examples of one split, with the task they belong to and the file they came from."""

    task: TaskSpec
    examples: list[Example]
    path: Path


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(1-based line, {column: value})`` for each record of a CSV/TSV/JSONL file."""
    suffix = path.suffix.lower()
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            if suffix == ".jsonl":
                for line_no, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise InputError(f"invalid JSON ({exc.msg})", path=path, row=line_no) from None
                    if not isinstance(record, dict):
                        raise InputError(f"expected a JSON object per line, got {type(record).__name__}",
                                         path=path, row=line_no)
                    yield line_no, record
                return
            if suffix == ".tsv":
                reader = Reader(fh, path, delimiter="\t", quoting=csv.QUOTE_NONE)
            else:
                reader = Reader(fh, path)
            header: list[str] | None = None
            start = 1
            for fields in reader:
                line_no, start = start, reader.line_num + 1   # a quoted CSV field may span lines
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if header is None:
                    header = [h.strip() for h in fields]
                    continue
                if len(fields) != len(header):
                    raise InputError(f"expected {len(header)} columns as in the header, got {len(fields)}",
                                     path=path, row=line_no)
                yield line_no, dict(zip(header, fields, strict=True))
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror}", path=path) from None


def _label_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _sorted_labels(labels: set[str]) -> tuple[str, ...]:
    try:
        return tuple(sorted(labels, key=int))
    except ValueError:
        return tuple(sorted(labels))


def infer_label_names(path: str | Path, columns: TableColumns) -> tuple[str, ...]:
    """Sorted distinct labels of one file (numeric order when all are integers)."""
    path = Path(path)
    seen: set[str] = set()
    for line_no, record in _records(path):
        if columns.label not in record:
            raise InputError(f"no label column {columns.label!r}: columns are {sorted(record)}",
                             path=path, row=line_no)
        seen.add(_label_text(record[columns.label]))
    if not seen:
        raise InputError("no data rows: the split is empty (cannot infer the label names)", path=path)
    return _sorted_labels(seen)


def read_table(
    path: str | Path, columns: TableColumns, *, label_names: tuple[str, ...] | None = None
) -> tuple[list[Example], TaskSpec]:
    """Read every row of a CSV/TSV/JSONL file, in file order.

    ``label_names`` (or ``columns.label_names``) fixes the class order; if both are ``None`` the
    sorted distinct labels of this file are used. Returns the examples and a ``custom``
    :class:`TaskSpec` (metric ``accuracy``, or ``corr`` for regression).
    """
    path = Path(path)
    if path.suffix.lower() not in _EXTENSIONS:
        raise InputError(f"unsupported file type {path.suffix!r}: expected .csv, .tsv or .jsonl", path=path)
    if not path.is_file():
        raise InputError("data file does not exist", path=path)
    names = label_names or columns.label_names
    if not columns.regression and names is None:
        names = infer_label_names(path, columns)
    index = {name: i for i, name in enumerate(names or ())}
    wanted = [c for c in (columns.text, columns.text_pair, columns.label) if c]
    examples = []
    for line_no, record in _records(path):
        missing = [c for c in wanted if c not in record]
        if missing:
            raise InputError(f"missing column(s) {', '.join(map(repr, missing))}: columns are "
                             f"{sorted(record)}", path=path, row=line_no)
        raw = record[columns.label]
        if columns.regression:
            try:
                label: int | float = float(raw)
            except (TypeError, ValueError):
                raise InputError(f"expected a numeric label, got {raw!r}", path=path, row=line_no) from None
            if not math.isfinite(label):
                raise InputError(f"expected a finite numeric label, got {raw!r}", path=path, row=line_no)
        else:
            key = _label_text(raw)
            if key not in index:
                raise InputError(f"unknown label {key!r}: expected one of {', '.join(index)} "
                                 "(set --label-names to list every class)", path=path, row=line_no)
            label = index[key]
        # JSON null reads as an empty text.
        text_b = str(record[columns.text_pair] or "") if columns.text_pair else None
        examples.append(Example(str(record[columns.text] or ""), text_b, label, line_no))
    if not examples:
        raise InputError("no data rows: the split is empty", path=path)
    spec = TaskSpec(
        name=CUSTOM_TASK,
        label_names=() if columns.regression else tuple(names or ()),
        is_regression=columns.regression,
        metric="corr" if columns.regression else "accuracy",
    )
    return examples, spec


def resolve_table_file(data_dir: str | Path, split: str) -> Path:
    """``data_dir/<split>.csv|.tsv|.jsonl`` (exactly one must exist), or ``split`` itself if it is a file."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise InputError("data directory does not exist or is not a directory", path=root)
    found = [root / f"{split}{ext}" for ext in _EXTENSIONS if (root / f"{split}{ext}").is_file()]
    if len(found) > 1:
        raise InputError(f"several files for split {split!r}: {', '.join(p.name for p in found)}; keep one",
                         path=root)
    if not found:
        raise InputError(f"no {split}.csv, {split}.tsv or {split}.jsonl for split {split!r}", path=root)
    return found[0]


def load_examples(
    task: str,
    data_dir: str | Path,
    split: str,
    *,
    columns: TableColumns | Mapping[str, Any] | None = None,
) -> SplitData:
    """Every example of ``split`` in file order, for a GLUE task or ``task="custom"``.

    For ``custom``, ``columns`` names the columns (a :class:`TableColumns` or a plain mapping
    from a config file) and the split file is ``data_dir/<split>.{csv,tsv,jsonl}``.
    """
    if str(task).strip().lower() != CUSTOM_TASK:
        if columns is not None:
            raise InputError(f"column options apply to --task {CUSTOM_TASK} only, not to {task!r}")
        spec = get_task(task)
        path = resolve_split_file(task, data_dir, split)
        return SplitData(spec, read_glue_file(task, path), path)
    if columns is None:
        raise InputError(f"--task {CUSTOM_TASK} needs --text-column and --label-column")
    if not isinstance(columns, TableColumns):
        columns = TableColumns.from_mapping(columns)
    path = resolve_table_file(data_dir, split)
    names = columns.label_names
    if names is None and not columns.regression:
        # Class indices must agree between splits: take them from the training file.
        train = path if split == "train" else None
        if train is None:
            try:
                train = resolve_table_file(data_dir, "train")
            except InputError:
                train = path
        names = infer_label_names(train, columns)
    examples, spec = read_table(path, columns, label_names=names)
    return SplitData(spec, examples, path)


def add_data_arguments(parser: argparse.ArgumentParser, *, task_required: bool = True) -> None:
    """Add ``--task --data-dir`` and the custom-data column options to a sub-command's parser."""
    group = parser.add_argument_group("data")
    group.add_argument("--task", required=task_required,
                       help="GLUE task (CoLA, SST-2, MRPC, STS-B, QQP, MNLI, MNLI-MM, QNLI, RTE, WNLI) "
                            "or 'custom' for your own CSV/TSV/JSONL files")
    group.add_argument("--data-dir", required=task_required, metavar="DIR",
                       help="GLUE root (DIR/TASK/split.tsv) or task folder; for custom data the folder "
                            "holding <split>.csv|.tsv|.jsonl")
    group.add_argument("--text-column", metavar="NAME", help="custom data: column with the text")
    group.add_argument("--text-pair-column", metavar="NAME",
                       help="custom data: column with the second text of a pair (optional)")
    group.add_argument("--label-column", metavar="NAME", help="custom data: column with the label")
    group.add_argument("--label-names", metavar="A,B,...",
                       help="custom data: class names in index order (default: sorted labels of train)")
    group.add_argument("--regression", action="store_true",
                       help="custom data: the label is a real number (one output)")


def columns_from_args(args: argparse.Namespace) -> TableColumns | None:
    """The :class:`TableColumns` given on the command line (``None`` for a GLUE task)."""
    text = getattr(args, "text_column", None)
    label = getattr(args, "label_column", None)
    pair = getattr(args, "text_pair_column", None)
    names = getattr(args, "label_names", None)
    regression = bool(getattr(args, "regression", False))
    is_custom = str(getattr(args, "task", "") or "").strip().lower() == CUSTOM_TASK
    if not is_custom:
        given = [opt for opt, v in (("--text-column", text), ("--text-pair-column", pair),
                                    ("--label-column", label), ("--label-names", names),
                                    ("--regression", regression)) if v]
        if given:
            raise InputError(f"{', '.join(given)} apply to --task {CUSTOM_TASK} only")
        return None
    if not text or not label:
        raise InputError(f"--task {CUSTOM_TASK} needs --text-column and --label-column")
    label_names = tuple(n.strip() for n in names.split(",") if n.strip()) if names else None
    if label_names is not None and len(set(label_names)) != len(label_names):
        raise InputError(f"--label-names has duplicates: {names}")
    return TableColumns(text=text, label=label, text_pair=pair, label_names=label_names,
                        regression=regression)


def load_examples_from_args(args: argparse.Namespace, split: str) -> SplitData:
    """:func:`load_examples` with the options added by :func:`add_data_arguments`."""
    return load_examples(args.task, args.data_dir, split, columns=columns_from_args(args))
