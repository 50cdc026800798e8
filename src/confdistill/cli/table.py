"""``confdistill table``: the RQ1 table (does φ_cnf hold?) for every task × student × split.

    confdistill table --root DIR --teacher TASK=MODEL [...] --student MODEL [...]
        [--kappa K] [--beta TASK:STUDENT=B ...] [--alpha A] [--temperature T]
        [--bootstrap 1000] [--seed 0] [--threshold 0.9] [--out DIR] [--no-plot]

Reads ``DIR/<model>/<TASK>_on_<train|eval>/eval_results.csv`` and writes ``rq1.md``, ``rq1.csv``,
``rq1.json`` and ``rq1_sigma.png`` into ``--out`` (default ``rq1``), replaced as a whole; an
existing non-empty ``--out`` is refused without ``--overwrite``. ``--kappa`` is the tolerance
every row is judged against (``verdict``, ``verdict_95``); ``--beta`` gives a pair's train row its
``bound_check`` (the β bound is a check, never a verdict). Missing and invalid pairs are listed with
the reason; only usage errors exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "table",
        help="RQ1 table: phi_cnf per task x student x split from the research folder layout",
        description="Analyse DIR/<model>/<TASK>_on_<train|eval>/eval_results.csv for every task (with "
        "its teacher) and student; write the table as Markdown, CSV and JSON plus a summary plot.",
    )
    p.add_argument("--root", required=True, type=Path, metavar="DIR", help="folder with one sub-folder per model")
    p.add_argument("--teacher", required=True, action="append", metavar="TASK=MODEL",
                   help="a task and its teacher model folder (repeatable)")
    p.add_argument("--student", required=True, action="append", metavar="MODEL",
                   help="a student model folder (repeatable)")
    p.add_argument("--kappa", type=float, metavar="K",
                   help="your tolerance on sigma, for every pair and split (without it: no verdict)")
    p.add_argument("--beta", action="append", default=[], metavar="TASK:STUDENT=B",
                   help="total prediction-layer loss of that distillation over the train split: checks the "
                   "bound kappa_beta on the train row (repeatable; never a verdict)")
    p.add_argument("--alpha", type=float, default=0.0, metavar="A", help="hard-label weight (default 0)")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T", help="distillation temperature (default 1)")
    p.add_argument("--threshold", type=float, default=0.9, metavar="P", help="high-confidence threshold (default 0.9)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="bootstrap resamples per pair (default 1000)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="bootstrap seed (default 0)")
    p.add_argument("--out", type=Path, default=Path("rq1"), metavar="DIR",
                   help="output folder (default ./rq1); an existing non-empty one is refused without --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out as a whole, once the new table is complete (default: off)")
    p.add_argument("--no-plots", "--no-plot", dest="no_plot", action="store_true", help="skip the summary plot")
    p.set_defaults(func=run)


def _parse_teachers(values: list[str]) -> dict[str, str]:
    from confdistill.errors import InputError

    out: dict[str, str] = {}
    for v in values:
        task, sep, model = v.partition("=")
        if not sep or not task.strip() or not model.strip():
            raise InputError(f"--teacher: expected TASK=MODEL (e.g. SST-2=bert-base-uncased-finetuned-sst2), got {v!r}")
        if task.strip() in out:
            raise InputError(f"--teacher: task {task.strip()!r} given twice")
        out[task.strip()] = model.strip()
    return out


def _parse_betas(values: list[str], tasks: dict[str, str], students: list[str]) -> dict[tuple[str, str], float]:
    from confdistill.errors import InputError

    out: dict[tuple[str, str], float] = {}
    for v in values:
        key, sep, num = v.partition("=")
        task, sep2, student = key.partition(":")
        if not sep or not sep2:
            raise InputError(f"--beta: expected TASK:STUDENT=B (e.g. SST-2:TinyBERT_4L_312D=1234.5), got {v!r}")
        if task not in tasks:
            raise InputError(f"--beta {v!r}: task {task!r} is not among --teacher tasks {sorted(tasks)}")
        if student not in students:
            raise InputError(f"--beta {v!r}: student {student!r} is not among --student {students}")
        try:
            value = float(num)
        except ValueError:
            raise InputError(f"--beta {v!r}: {num!r} is not a number") from None
        if not (value >= 0 and value != float("inf")):
            raise InputError(f"--beta {v!r}: expected a total loss >= 0")
        out[(task, student)] = value
    return out


def run(args: argparse.Namespace) -> int:
    from confdistill.folders import claim_output

    # One writer per --out, taken before anything is read: a second table stops at once (the lock
    # is beside the folder, which is swapped in whole).
    with claim_output(args.out, overwrite=args.overwrite, beside=True, what="--out"):
        return _write_table(args)


def _write_table(args: argparse.Namespace) -> int:
    from confdistill.errors import InputError
    from confdistill.folders import check_output_target, recover_folder, remove_stale_temps
    from confdistill.io import atomic_directory
    from confdistill.properties.confidence import validate_analysis_options
    from confdistill.properties.verdict import validate_tolerance
    from confdistill.reports.table import build_rq1_table

    teachers = _parse_teachers(args.teacher)
    students = list(dict.fromkeys(args.student))
    betas = _parse_betas(args.beta, teachers, students)
    recover_folder(args.out)  # an earlier table killed mid-swap: its old or new folder first
    check_output_target(args.out, overwrite=args.overwrite, what="--out")
    validate_tolerance(args.kappa)
    validate_analysis_options(threshold=args.threshold, n_bootstrap=args.bootstrap)
    if not (args.temperature >= 1.0 and 0.0 <= args.alpha < 1.0):
        raise InputError(f"--temperature must be >= 1 and --alpha in [0, 1), got T={args.temperature}, "
                         f"alpha={args.alpha}")
    table = build_rq1_table(args.root, teachers, students, kappa=args.kappa, betas=betas, alpha=args.alpha,
                            temperature=args.temperature, threshold=args.threshold,
                            n_bootstrap=args.bootstrap, seed=args.seed, progress=sys.stderr.isatty())
    # Written into a temporary sibling and swapped in whole: never new files beside old ones.
    check_output_target(args.out, overwrite=args.overwrite, what="--out")
    remove_stale_temps(args.out.absolute().parent, recursive=False, names=[args.out.name])
    with atomic_directory(args.out) as tmp:
        written = table.write(tmp, plot=not args.no_plot)
    paths = [args.out / Path(p).name for p in written]
    print(table.to_markdown(), end="")
    print(f"{len(table.ok)} pair(s) analysed, {len(table.missing)} missing, {len(table.invalid)} invalid")
    print("wrote: " + ", ".join(str(p) for p in paths))
    return 0
