"""The RQ1 table: does φ_cnf hold, per task × student × split, from the research folder layout.

Layout: ``ROOT/<model>/<TASK>_on_<train|eval>/eval_results.csv`` (the paper's ``paper_outputs``).
For each task (with its teacher model), each student and each split, the teacher and student
files are analysed with :func:`confdistill.properties.analyze_pair`. A pair whose files are
absent is *missing*; a pair that cannot be analysed (different row counts, bad values...) is
*invalid* with the reason; the rest of the table still completes.

The verdict is about σ(train) vs κ: κ is ``kappa`` (a tolerance for every pair) or derived
from a per-pair β (``betas[(task, student)]``, total over the train split), else "no verdict".
The eval rows report σ(eval) with the same κ for comparison, and no verdict.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from confdistill.errors import InputError
from confdistill.io import atomic_write, write_json

SPLITS = ("train", "eval")
RESULT_FILE = "eval_results.csv"
COLUMNS = ("task", "student", "split", "status", "n", "n_both", "teacher_accuracy", "student_accuracy",
           "agreement", "sigma", "sigma_ci_low", "sigma_ci_high", "mean_delta", "kappa", "kappa_source",
           "verdict", "teacher", "reason")


@dataclass
class TableRow:
    """One task × student × split row. ``status`` is "ok", "missing" or "invalid"."""

    task: str
    student: str
    split: str
    teacher: str
    status: str
    reason: str = ""
    n: int | None = None
    n_both: int | None = None
    teacher_accuracy: float | None = None
    student_accuracy: float | None = None
    agreement: float | None = None
    sigma: float | None = None
    sigma_ci_low: float | None = None
    sigma_ci_high: float | None = None
    mean_delta: float | None = None
    kappa: float | None = None
    kappa_source: str | None = None
    verdict: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class RQ1Table:
    """All rows of the table, in task / student / split order."""

    rows: list[TableRow]
    root: str

    @property
    def missing(self) -> list[TableRow]:
        return [r for r in self.rows if r.status == "missing"]

    @property
    def invalid(self) -> list[TableRow]:
        return [r for r in self.rows if r.status == "invalid"]

    @property
    def ok(self) -> list[TableRow]:
        return [r for r in self.rows if r.status == "ok"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "rows": [{k: _clean(v) for k, v in asdict(r).items()} for r in self.ok],
            "missing": [{"task": r.task, "student": r.student, "split": r.split, "reason": r.reason}
                        for r in self.missing],
            "invalid": [{"task": r.task, "student": r.student, "split": r.split, "reason": r.reason}
                        for r in self.invalid],
        }

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        for r in self.rows:
            d = asdict(r)
            writer.writerow(["" if d[c] is None else _clean(d[c]) for c in COLUMNS])
        return buf.getvalue()

    def to_markdown(self) -> str:
        lines = [
            "| task | student | split | n | n_both | teacher acc | student acc | σ | 95% CI | κ | verdict |",
            "|---|---|---|---:|---:|---:|---:|---:|---|---:|---|",
        ]
        for r in self.ok:
            kappa = "—" if r.kappa is None else f"{r.kappa:.4f}"
            verdict = r.verdict if r.split == "train" else "—"
            lines.append(
                f"| {r.task} | {r.student} | {r.split} | {r.n} | {r.n_both} | {r.teacher_accuracy:.4f} | "
                f"{r.student_accuracy:.4f} | {r.sigma:.4f} | [{r.sigma_ci_low:.4f}, {r.sigma_ci_high:.4f}] | "
                f"{kappa} | {verdict} |")
        if self.missing:
            lines += ["", "Missing pairs:", ""]
            lines += [f"- {r.task} / {r.student} / {r.split}: {r.reason}" for r in self.missing]
        if self.invalid:
            lines += ["", "Invalid pairs (not analysed):", ""]
            lines += [f"- {r.task} / {r.student} / {r.split}: {r.reason}" for r in self.invalid]
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path, *, plot: bool = True) -> list[Path]:
        """Write ``rq1.md``, ``rq1.csv``, ``rq1.json`` and (``plot``) ``rq1_sigma.png`` into ``out``."""
        out = Path(out)
        paths = []
        for name, text in (("rq1.md", self.to_markdown()), ("rq1.csv", self.to_csv())):
            with atomic_write(out / name) as fh:
                fh.write(text)
            paths.append(out / name)
        write_json(out / "rq1.json", self.to_dict())
        paths.append(out / "rq1.json")
        if plot and self.ok:
            from confdistill.reports.plots import plot_sigma_summary

            entries = [{"group": r.task, "series": f"{r.student} {r.split}", "sigma": r.sigma,
                        "ci": (r.sigma_ci_low, r.sigma_ci_high), "kappa": r.kappa if r.split == "train" else None}
                       for r in self.ok]
            paths.append(plot_sigma_summary(entries, out / "rq1_sigma.png",
                                            title="σ of Δconf per task and student (bars: 95% CI; black: κ)"))
        return paths


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def result_file(root: Path, model: str, task: str, split: str) -> Path:
    """``ROOT/<model>/<TASK>_on_<split>/eval_results.csv``."""
    return root / model / f"{task}_on_{split}" / RESULT_FILE


def build_rq1_table(
    root: str | Path,
    teachers: Mapping[str, str],
    students: Sequence[str],
    *,
    kappa: float | None = None,
    betas: Mapping[tuple[str, str], float] | None = None,
    alpha: float = 0.0,
    temperature: float = 1.0,
    threshold: float = 0.9,
    n_bootstrap: int = 1000,
    seed: int = 0,
    splits: Sequence[str] = SPLITS,
    progress: bool = False,
) -> RQ1Table:
    """Analyse every task × student × split of the research layout under ``root``.

    ``teachers`` maps task → teacher model folder; ``students`` are student model folders;
    ``betas`` maps (task, student) → β (total prediction-layer loss over that task's train split).
    InputError only for a missing ``root``; bad or absent files become invalid/missing rows.
    """
    from confdistill.prediction.softmax_file import read_softmax
    from confdistill.properties.confidence import analyze_pair

    root = Path(root)
    if not root.is_dir():
        raise InputError("--root: expected the folder holding <model>/<TASK>_on_<split>/eval_results.csv",
                         path=root)
    betas = dict(betas or {})
    # Task, then split, then student: consecutive pairs share the teacher file (parsed once).
    jobs = [(task, s, split) for task in teachers for split in splits for s in students]
    teacher_cache: dict[Path, Any] = {}
    rows: list[TableRow] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="pairs", unit="pair", leave=False)
    # Train before eval: the eval row reuses the train row's κ (N and n_both come from train).
    for task, student, split in jobs:
        teacher = teachers[task]
        row = TableRow(task=task, student=student, split=split, teacher=teacher, status="ok")
        rows.append(row)
        if bar is not None:
            bar.set_postfix_str(f"{task}/{student}/{split}")
            bar.update(1)
        t_path, s_path = result_file(root, teacher, task, split), result_file(root, student, task, split)
        absent = [str(p) for p in (t_path, s_path) if not p.exists()]
        if absent:
            row.status, row.reason = "missing", "no " + " and no ".join(absent)
            continue
        beta = betas.get((task, student))
        options: dict[str, Any] = {"kappa": kappa}
        if kappa is None and beta is not None:
            if split == "train":
                options["beta"] = beta
            else:
                train_row = next((r for r in rows if (r.task, r.student, r.split) == (task, student, "train")
                                  and r.status == "ok"), None)
                options["kappa"] = None if train_row is None else train_row.kappa
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # kept in result.warnings instead
                # The teacher's file is shared by every student of the task: parse it once.
                if t_path not in teacher_cache:
                    teacher_cache.clear()
                    teacher_cache[t_path] = read_softmax(t_path)
                result = analyze_pair(teacher_cache[t_path], read_softmax(s_path), alpha=alpha,
                                      temperature=temperature, threshold=threshold, n_bootstrap=n_bootstrap,
                                      seed=seed, split=split, **options)
        except InputError as exc:
            row.status, row.reason = "invalid", str(exc)
            continue
        row.warnings = list(result.warnings)  # the cached teacher's notes included
        row.n, row.n_both = result.n, result.n_both
        row.teacher_accuracy, row.student_accuracy = result.teacher_accuracy, result.student_accuracy
        row.agreement, row.sigma, row.mean_delta = result.agreement, result.sigma, result.mean_delta
        row.sigma_ci_low, row.sigma_ci_high = result.sigma_ci95
        row.kappa = result.kappa
        row.kappa_source = result.kappa_source if split == "train" or result.kappa is None else \
            ("user" if kappa is not None else "beta (train)")
        row.verdict = result.verdict if split == "train" else ""
    if bar is not None:
        bar.close()
    order = {name: i for i, name in enumerate(students)}
    tasks = {name: i for i, name in enumerate(teachers)}
    rows.sort(key=lambda r: (tasks[r.task], order[r.student], list(splits).index(r.split)))
    return RQ1Table(rows=rows, root=str(root))


__all__ = ["COLUMNS", "RQ1Table", "TableRow", "build_rq1_table", "result_file"]
