"""GLUE task readers: one :class:`Example` per data row, in file order, every split (train included).

The files are the original GLUE TSVs (``DIR/TASK/{train,dev}.tsv``, MNLI's
``dev_matched.tsv`` / ``dev_mismatched.tsv``). GLUE TSVs use *no quoting*: a field may contain
``"`` characters that are plain text (MRPC, RTE, STS-B…), so lines are split on tabs only
(``csv.QUOTE_NONE``). Files are decoded as ``utf-8-sig`` so that the byte-order mark at the
start of MRPC's header is dropped.

Columns are found by their header name for every task that has a header (so MNLI train, with
12 columns, and MNLI dev, with 16, are both read right); CoLA has no header and uses GLUE's
fixed positions (label in column 2, sentence in column 4, 1-based). Label lists follow the order
of GLUE/TinyBERT's processors, so label index ``i`` means the same class as in those models'
classifier heads. ``TaskSpec.class_names`` gives readable names for the tasks whose raw labels are
``0``/``1`` (the GLUE benchmark's names: CoLA unacceptable/acceptable, SST-2 negative/positive,
MRPC not_equivalent/equivalent, QQP not_duplicate/duplicate, WNLI not_entailment/entailment), for
the ``id2label`` of saved classifiers.

Only the standard library is imported at module level (the CLI imports this at start-up);
numpy/scipy are imported inside :func:`compute_metrics`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from confdistill.delimited import Reader
from confdistill.errors import InputError

__all__ = [
    "TASKS",
    "Example",
    "TaskSpec",
    "compute_metrics",
    "get_task",
    "known_task_names",
    "load_split",
    "read_glue_file",
    "resolve_split_file",
]


@dataclass(frozen=True)
class Example:
    """One input of a task.

    ``label`` is the class index (``int``) for classification, the score (``float``) for
    regression. ``line`` is the 1-based physical line of the row in its file (the header, when
    there is one, is line 1), so errors and outputs can point back to the data.
    """

    text_a: str
    text_b: str | None
    label: int | float
    line: int


@dataclass(frozen=True)
class TaskSpec:
    """What a task predicts and how it is scored.

    ``label_names`` are the raw label strings in class-index order (empty for regression);
    ``metric`` is the key of :func:`compute_metrics`'s result used to pick the best checkpoint;
    ``display_names``: readable class names in the same order where the raw strings are bare
    indices (SST-2's ``0``/``1`` are ``negative``/``positive``), empty when the raw strings are
    the names. :attr:`class_names` is what a saved classifier's ``id2label`` says.
    """

    name: str
    label_names: tuple[str, ...]
    is_regression: bool
    metric: str
    display_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.display_names and len(self.display_names) != len(self.label_names):
            raise ValueError(f"{self.name}: {len(self.display_names)} display names for "
                             f"{len(self.label_names)} labels")

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names in class-index order (``display_names``, else ``label_names``; empty for regression)."""
        return self.display_names or self.label_names

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The keys :func:`compute_metrics` returns for this task (what ``--best-metric`` may name)."""
        if self.is_regression:
            return ("pearson", "spearman", "corr")
        names = ["accuracy"]
        if self.metric == "f1" or self.name in ("MRPC", "QQP"):
            names += ["f1", "acc_and_f1"]
        if self.metric == "matthews_corr":
            names.append("matthews_corr")
        return tuple(names)

    @property
    def num_labels(self) -> int:
        """Width of the classifier head: 1 for regression, else the number of classes."""
        return 1 if self.is_regression else len(self.label_names)


@dataclass(frozen=True)
class _Layout:
    """Where a task's fields are in its TSV files."""

    folder: str                      # the GLUE folder name, e.g. "SST-2"
    header: bool
    text_a: str | int                # header name, or 0-based column index when header=False
    text_b: str | int | None
    label: str | int
    n_columns: int | None = None     # fixed column count for header-less files
    dev_file: str = "dev"            # file stem read for split "dev"


_TASK_TABLE: dict[str, tuple[TaskSpec, _Layout]] = {
    "CoLA": (
        TaskSpec("CoLA", ("0", "1"), False, "matthews_corr", ("unacceptable", "acceptable")),
        # source, label, original label (empty), sentence
        _Layout("CoLA", header=False, text_a=3, text_b=None, label=1, n_columns=4),
    ),
    "SST-2": (
        TaskSpec("SST-2", ("0", "1"), False, "accuracy", ("negative", "positive")),
        _Layout("SST-2", header=True, text_a="sentence", text_b=None, label="label"),
    ),
    "MRPC": (
        TaskSpec("MRPC", ("0", "1"), False, "f1", ("not_equivalent", "equivalent")),
        _Layout("MRPC", header=True, text_a="#1 String", text_b="#2 String", label="Quality"),
    ),
    "STS-B": (
        TaskSpec("STS-B", (), True, "corr"),
        _Layout("STS-B", header=True, text_a="sentence1", text_b="sentence2", label="score"),
    ),
    "QQP": (
        TaskSpec("QQP", ("0", "1"), False, "f1", ("not_duplicate", "duplicate")),
        _Layout("QQP", header=True, text_a="question1", text_b="question2", label="is_duplicate"),
    ),
    "MNLI": (
        TaskSpec("MNLI", ("contradiction", "entailment", "neutral"), False, "accuracy"),
        _Layout("MNLI", header=True, text_a="sentence1", text_b="sentence2", label="gold_label",
                dev_file="dev_matched"),
    ),
    "MNLI-MM": (
        TaskSpec("MNLI-MM", ("contradiction", "entailment", "neutral"), False, "accuracy"),
        _Layout("MNLI", header=True, text_a="sentence1", text_b="sentence2", label="gold_label",
                dev_file="dev_mismatched"),
    ),
    "QNLI": (
        TaskSpec("QNLI", ("entailment", "not_entailment"), False, "accuracy"),
        _Layout("QNLI", header=True, text_a="question", text_b="sentence", label="label"),
    ),
    "RTE": (
        TaskSpec("RTE", ("entailment", "not_entailment"), False, "accuracy"),
        _Layout("RTE", header=True, text_a="sentence1", text_b="sentence2", label="label"),
    ),
    "WNLI": (
        TaskSpec("WNLI", ("0", "1"), False, "accuracy", ("not_entailment", "entailment")),
        _Layout("WNLI", header=True, text_a="sentence1", text_b="sentence2", label="label"),
    ),
}

#: Every GLUE task this module reads, by canonical name.
TASKS: dict[str, TaskSpec] = {name: spec for name, (spec, _) in _TASK_TABLE.items()}

# STS-B scores are similarity judgements on a 0-5 scale.
_STSB_RANGE = (0.0, 5.0)


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


_ALIASES: dict[str, str] = {_key(name): name for name in _TASK_TABLE}
_ALIASES.update({"mnlim": "MNLI", "mnlimatched": "MNLI", "mnlimismatched": "MNLI-MM", "sst": "SST-2"})


def known_task_names() -> list[str]:
    """Canonical GLUE task names, in GLUE's order."""
    return list(_TASK_TABLE)


def _canonical(name: str) -> str:
    canonical = _ALIASES.get(_key(str(name)))
    if canonical is None:
        raise InputError(
            f"unknown task {name!r}: expected one of {', '.join(known_task_names())} "
            "(or 'custom' with --text-column/--label-column for your own CSV/TSV/JSONL data)"
        )
    return canonical


def get_task(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of a GLUE task; names are case- and punctuation-insensitive (``sst2``).

    Raises :class:`InputError` listing the known tasks when ``name`` is not one.
    """
    return TASKS[_canonical(name)]


def _split_stem(task: str, layout: _Layout, split: str) -> str:
    split = str(split).strip()
    if not split:
        raise InputError("empty split name: expected train, dev or another file stem such as dev_matched")
    if split == "dev":
        return layout.dev_file
    if split.endswith(".tsv"):
        split = split[: -len(".tsv")]
    return split


def resolve_split_file(task: str, data_dir: str | Path, split: str) -> Path:
    """The TSV file of ``split`` for ``task``.

    ``data_dir`` is either a GLUE root (the file is ``data_dir/TASK/split.tsv``, the task folder
    matched case-insensitively) or the task folder itself (``data_dir/split.tsv``). ``split`` is
    ``train``, ``dev`` (MNLI: ``dev_matched``; MNLI-MM: ``dev_mismatched``) or any other file
    stem (``dev_matched``, ``dev_mismatched``, ``test``…).
    """
    canonical = _canonical(task)
    layout = _TASK_TABLE[canonical][1]
    stem = _split_stem(canonical, layout, split)
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise InputError(f"data directory does not exist: expected a GLUE root or a {layout.folder} folder",
                         path=root)
    if not root.is_dir():
        raise InputError("expected a directory (a GLUE root or a task folder), got a file", path=root)
    candidates = [root / layout.folder / f"{stem}.tsv"]
    if root.is_dir():
        # Task folders are spelled differently in the wild (SST-2, sst2, STS-B, stsb...).
        candidates += [child / f"{stem}.tsv" for child in sorted(root.iterdir())
                       if child.is_dir() and _key(child.name) == _key(layout.folder)]
    candidates.append(root / f"{stem}.tsv")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(dict.fromkeys(str(c) for c in candidates))
    raise InputError(f"no {stem}.tsv for task {canonical} (split {split!r}): tried {tried}")


def _read_tsv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """``(1-based line, fields)`` for every non-blank line; tabs only, no quoting, BOM dropped."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = Reader(fh, path, delimiter="\t", quoting=csv.QUOTE_NONE)
            rows = []
            for fields in reader:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # blank line (e.g. a trailing newline pair)
                rows.append((reader.line_num, fields))
            return rows
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror}", path=path) from None


def _parse_label(raw: str, spec: TaskSpec, path: Path, line: int) -> int | float:
    value = raw.strip()
    if spec.is_regression:
        try:
            score = float(value)
        except ValueError:
            raise InputError(f"expected a numeric score, got {raw!r}", path=path, row=line) from None
        lo, hi = _STSB_RANGE
        if not (math.isfinite(score) and lo <= score <= hi):
            raise InputError(f"expected a score between {lo:g} and {hi:g}, got {raw!r}", path=path, row=line)
        return score
    try:
        return spec.label_names.index(value)
    except ValueError:
        raise InputError(
            f"unknown label {raw!r} for {spec.name}: expected one of {', '.join(spec.label_names)}",
            path=path, row=line,
        ) from None


def read_glue_file(task: str, path: str | Path) -> list[Example]:
    """Read one GLUE TSV of ``task``: every row, in file order.

    Raises :class:`InputError` naming the file and line for a wrong column count, a missing header
    column or an unknown label, and for a file without data rows.
    """
    canonical = _canonical(task)
    spec, layout = _TASK_TABLE[canonical]
    path = Path(path)
    rows = _read_tsv_rows(path)
    if layout.header:
        if not rows:
            raise InputError(f"empty file: expected a header row and data rows for {canonical}", path=path)
        header_line, header = rows[0]
        header = [h.strip() for h in header]
        wanted = [c for c in (layout.text_a, layout.text_b, layout.label) if c is not None]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise InputError(
                f"header lacks column(s) {', '.join(map(repr, missing))} expected for {canonical}; "
                f"got {header[:12]}", path=path, row=header_line,
            )
        i_a = header.index(layout.text_a)
        i_b = header.index(layout.text_b) if layout.text_b is not None else None
        i_label = header.index(layout.label)
        n_columns = len(header)
        rows = rows[1:]
    else:
        i_a, i_b, i_label = int(layout.text_a), layout.text_b, int(layout.label)
        n_columns = int(layout.n_columns or 0)
    if not rows:
        raise InputError(f"no data rows: the {canonical} split is empty", path=path)
    examples = []
    for line, fields in rows:
        if len(fields) != n_columns:
            raise InputError(
                f"expected {n_columns} tab-separated columns for {canonical}, got {len(fields)}",
                path=path, row=line,
            )
        label = _parse_label(fields[i_label], spec, path, line)
        text_b = fields[int(i_b)] if i_b is not None else None
        examples.append(Example(fields[i_a], text_b, label, line))
    return examples


def load_split(task: str, data_dir: str | Path, split: str) -> list[Example]:
    """Every example of ``split`` (``train``, ``dev``, ``dev_matched``, ``dev_mismatched``…) in file order.

    See :func:`resolve_split_file` for how ``data_dir`` is searched.
    """
    return read_glue_file(task, resolve_split_file(task, data_dir, split))


def compute_metrics(
    task: str | TaskSpec, predictions: Sequence[float] | object, labels: Sequence[float] | object
) -> dict[str, float]:
    """Scores of ``predictions`` against ``labels``, both shape ``(n,)``.

    Classification (class indices): ``accuracy`` always; ``f1`` (positive class 1) for MRPC and
    QQP, with ``acc_and_f1`` their mean; ``matthews_corr`` for CoLA. Regression (STS-B scores):
    ``pearson``, ``spearman`` and ``corr`` (their mean, TinyBERT's model-selection key). The task's
    primary key is ``get_task(task).metric``.
    """
    import numpy as np

    spec = task if isinstance(task, TaskSpec) else get_task(task)
    pred = np.asarray(predictions)
    gold = np.asarray(labels)
    if pred.shape != gold.shape or pred.ndim != 1:
        raise ValueError(f"predictions {pred.shape} and labels {gold.shape} must be equal 1-d shapes")
    if pred.size == 0:
        raise InputError("no predictions to score")
    if spec.is_regression:
        from scipy.stats import pearsonr, spearmanr

        pred = pred.astype(np.float64)
        gold = gold.astype(np.float64)
        pearson = float(pearsonr(pred, gold)[0]) if pred.size > 1 else float("nan")
        spearman = float(spearmanr(pred, gold)[0]) if pred.size > 1 else float("nan")
        return {"pearson": pearson, "spearman": spearman, "corr": (pearson + spearman) / 2}
    pred = pred.astype(np.int64)
    gold = gold.astype(np.int64)
    out = {"accuracy": float(np.mean(pred == gold))}
    if spec.metric == "f1" or spec.name in ("MRPC", "QQP"):
        tp = float(np.sum((pred == 1) & (gold == 1)))
        fp = float(np.sum((pred == 1) & (gold != 1)))
        fn = float(np.sum((pred != 1) & (gold == 1)))
        out["f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        out["acc_and_f1"] = (out["accuracy"] + out["f1"]) / 2
    if spec.metric == "matthews_corr":
        out["matthews_corr"] = _matthews(pred, gold)
    return out


def _matthews(pred: object, gold: object) -> float:
    """Matthews correlation for any number of classes (Gorodkin's R_K; = the binary MCC)."""
    import numpy as np

    pred = np.asarray(pred)
    gold = np.asarray(gold)
    classes = np.union1d(pred, gold)
    idx_p = np.searchsorted(classes, pred)
    idx_g = np.searchsorted(classes, gold)
    conf = np.zeros((classes.size, classes.size), dtype=np.float64)
    np.add.at(conf, (idx_g, idx_p), 1.0)
    t = conf.sum(axis=1)   # true occurrences per class
    p = conf.sum(axis=0)   # predicted occurrences per class
    c = np.trace(conf)
    s = conf.sum()
    cov_ytyp = c * s - t @ p
    cov_ypyp = s * s - p @ p
    cov_ytyt = s * s - t @ t
    denom = math.sqrt(cov_ytyt * cov_ypyp)
    return float(cov_ytyp / denom) if denom else 0.0
