"""The RQ1 table: does φ_cnf hold, per task × student × split, from the research folder layout.

Layout: ``ROOT/<model>/<TASK>_on_<train|eval>/eval_results.csv`` (the paper's ``paper_outputs``).
For each task (with its teacher model), each student and each split, the teacher and student
files are analysed with :func:`confdistill.properties.analyze_pair`. A pair whose files are
absent is *missing*; a pair that cannot be analysed (different row counts, bad values...) is
*invalid* with the reason; the rest of the table still completes.

Verdicts come from :func:`confdistill.properties.verdict.judge` (through ``analyze_pair``): φ_cnf
is judged against ``kappa``, the user's tolerance for every pair (``verdict``: the paper's point
verdict σ ≤ κ; ``verdict_95``: from the one-sided 95% bootstrap bounds), else "no verdict". A
per-pair β (``betas[(task, student)]``, total over the train split) gives ``bound_check`` on the
train row ("consistent" / "violated", κ_β beside it), never a verdict. The eval rows judge σ(eval)
against the same tolerance and are labelled "not covered" by the bound.
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

from confdistill.console import quiet
from confdistill.errors import InputError
from confdistill.io import atomic_write, write_json

SPLITS = ("train", "eval")
RESULT_FILE = "eval_results.csv"
COLUMNS = ("task", "student", "split", "status", "n", "n_both", "teacher_accuracy", "student_accuracy",
           "agreement", "sigma", "sigma_ci_low", "sigma_ci_high", "sigma_lower95", "sigma_upper95", "mean_delta",
           "kappa", "kappa_source", "verdict", "verdict_95", "bound_check", "kappa_from_beta", "teacher", "reason",
           "notes")


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
    sigma_lower95: float | None = None   # one-sided 95% bootstrap bounds on σ (verdict_95 reads them)
    sigma_upper95: float | None = None
    mean_delta: float | None = None
    kappa: float | None = None           # the user's tolerance (the same for every row)
    kappa_source: str | None = None      # "user" or None
    verdict: str = ""                    # σ vs the tolerance: holds | fails | no verdict | not informative
    verdict_95: str = ""                 # holds | fails | undecided | no verdict | not informative
    bound_check: str | None = None       # consistent | violated | not covered | None (no β)
    kappa_from_beta: float | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    not_informative: list[str] = field(default_factory=list)  # why the pair cannot be judged (issue 18)


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
            d["notes"] = "; ".join(r.notes)
            writer.writerow(["" if d[c] is None else _clean(d[c]) for c in COLUMNS])
        return buf.getvalue()

    def to_markdown(self) -> str:
        lines = [
            "| task | student | split | n | n_both | teacher acc | student acc | σ | 95% CI | κ (tolerance) | "
            "verdict | verdict_95 | β bound (κ_β) |",
            "|---|---|---|---:|---:|---:|---:|---:|---|---:|---|---|---|",
        ]
        for r in self.ok:
            kappa = "—" if r.kappa is None else f"{r.kappa:.4f}"
            lines.append(
                f"| {r.task} | {r.student} | {r.split} | {r.n} | {_md(r.n_both)} | {_md(r.teacher_accuracy)} | "
                f"{_md(r.student_accuracy)} | {_md(r.sigma)} | [{_md(r.sigma_ci_low)}, {_md(r.sigma_ci_high)}] | "
                f"{kappa} | {r.verdict} | {r.verdict_95} | {_bound_cell(r)} |")
        lines += ["", "κ is your tolerance on σ: `verdict` compares σ with it, `verdict_95` its one-sided 95% "
                  "bootstrap bounds (undecided when they straddle κ). The β bound is a consistency check of the "
                  "distillation's β on the train split, never a verdict; eval rows are not covered by it."]
        unjudged = [r for r in self.ok if r.not_informative]
        if unjudged:
            lines += ["", "Not informative (the check cannot judge these pairs; never a pass):", ""]
            lines += [f"- {r.task} / {r.student} / {r.split}: " + "; ".join(r.not_informative) for r in unjudged]
        violated = [r for r in self.ok if r.bound_check == "violated"]
        if violated:
            lines += ["", "β bound violated (β mis-measured):", ""]
            lines += [f"- {r.task} / {r.student} / {r.split}: " + " ".join(n for n in r.notes if "violated" in n)
                      for r in violated]
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

            # κ drawn is the tolerance, the same on train and eval rows (never the β bound)
            entries = [{"group": r.task, "series": f"{r.student} {r.split}", "sigma": r.sigma,
                        "ci": (r.sigma_ci_low, r.sigma_ci_high), "kappa": r.kappa} for r in self.ok]
            paths.append(plot_sigma_summary(entries, out / "rq1_sigma.png",
                                            title="σ of Δconf per task and student (bars: 95% CI; black: your "
                                            "tolerance κ)"))
        return paths


def _md(v: Any) -> str:
    if v is None:
        return "—"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _bound_cell(r: TableRow) -> str:
    if r.bound_check is None:
        return "—"
    return r.bound_check if r.kappa_from_beta is None else f"{r.bound_check} ({r.kappa_from_beta:.4f})"


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _fill(row: TableRow, d: dict[str, Any]) -> None:
    """Copy an analysis (``PairAnalysis.to_dict()`` keys, docs/formats.md) into a table row."""
    row.warnings = list(d.get("warnings") or [])  # the cached teacher's notes included
    row.n, row.n_both = d["n"], d.get("n_both")
    row.teacher_accuracy, row.student_accuracy = d.get("teacher_accuracy"), d.get("student_accuracy")
    row.agreement, row.sigma, row.mean_delta = d["agreement"], d["sigma"], d["mean_delta"]
    row.sigma_ci_low, row.sigma_ci_high = d["sigma_ci95"]
    row.sigma_lower95, row.sigma_upper95 = d["sigma_one_sided95"]
    row.kappa, row.kappa_source = d["kappa"], d["kappa_source"]
    row.verdict, row.verdict_95 = d["verdict"], d["verdict_95"]
    row.bound_check, row.kappa_from_beta = d["bound_check"], d["kappa_from_beta"]
    row.notes = list(d.get("judgement_notes") or [])
    row.not_informative = list(d.get("not_informative") or [])


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
    ``kappa`` is the user's tolerance on σ (every pair, both splits; None: no verdict);
    ``betas`` maps (task, student) → β (total prediction-layer loss over that task's train split,
    N = the train file's rows), giving each train row its ``bound_check``.
    InputError only for a missing ``root`` or a bad ``kappa``; bad or absent files become
    invalid/missing rows.
    """
    from confdistill.prediction.softmax_file import read_softmax
    from confdistill.properties.stream_analysis import analyze_pair
    from confdistill.properties.verdict import BoundInputs, validate_tolerance

    root = Path(root)
    if not root.is_dir():
        raise InputError("--root: expected the folder holding <model>/<TASK>_on_<split>/eval_results.csv",
                         path=root)
    kappa = validate_tolerance(kappa)
    betas = dict(betas or {})
    # Task, then split, then student: consecutive pairs share the teacher file (parsed once).
    jobs = [(task, s, split) for task in teachers for split in splits for s in students]
    teacher_cache: dict[Path, Any] = {}
    rows: list[TableRow] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="pairs", unit="pair", leave=False, disable=quiet())
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
        # β was summed over the train file: on the train row N is its row count (judge's default);
        # on the eval row the bound is "not covered" (no N given: no κ_β number to misread).
        bound = None if beta is None else BoundInputs(beta=float(beta), alpha=alpha, temperature=temperature,
                                                      source=f"--beta {task}:{student}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # kept in result.warnings instead
                # The teacher's file is shared by every student of the task: parse it once.
                if t_path not in teacher_cache:
                    teacher_cache.clear()
                    teacher_cache[t_path] = read_softmax(t_path)
                result = analyze_pair(teacher_cache[t_path], read_softmax(s_path), kappa=kappa, bound=bound,
                                      threshold=threshold, n_bootstrap=n_bootstrap, seed=seed, split=split)
        except InputError as exc:
            row.status, row.reason = "invalid", str(exc)
            continue
        _fill(row, result.to_dict())
    if bar is not None:
        bar.close()
    order = {name: i for i, name in enumerate(students)}
    tasks = {name: i for i, name in enumerate(teachers)}
    rows.sort(key=lambda r: (tasks[r.task], order[r.student], list(splits).index(r.split)))
    return RQ1Table(rows=rows, root=str(root))


__all__ = ["COLUMNS", "RQ1Table", "TableRow", "build_rq1_table", "result_file"]
