"""``confdistill analyze``: does the student preserve the teacher's confidence (φ_cnf) on one split?

    confdistill analyze --teacher T.csv --student S.csv [--kappa K | --beta B | --beta-mean B]
        [--alpha A] [--temperature T] [--n-train N] [--threshold 0.9] [--delta p0|label]
        [--bootstrap 1000] [--seed 0] [--split train|eval] [--out DIR] [--json FILE] [--no-plots]

Prints a readable summary; ``--json FILE`` writes the machine-readable result (keys in
docs/formats.md); ``--out DIR`` writes ``analysis.json`` and the PNG plots there. Nothing is
written unless both files are valid and the analysis completed (bad input → exit 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

PLOT_FILES = ("confidence_teacher.png", "confidence_student.png", "delta_conf.png", "reliability.png")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="confidence preservation (phi_cnf) of a teacher/student pair of softmax files",
        description="Compare a teacher's and a student's softmax outputs on the same split: accuracies, "
        "agreement, sigma of the confidence gap on the rows both classify correctly (with a bootstrap "
        "CI), and the phi_cnf verdict sigma <= kappa.",
    )
    p.add_argument("--teacher", required=True, type=Path, metavar="FILE", help="teacher softmax file (CSV/TSV/Parquet)")
    p.add_argument("--student", required=True, type=Path, metavar="FILE", help="student softmax file, same examples")
    k = p.add_mutually_exclusive_group()
    k.add_argument("--kappa", type=float, metavar="K", help="your tolerance on sigma (instead of a bound from beta)")
    k.add_argument("--beta", type=float, metavar="B",
                   help="prediction-layer distillation loss, TOTAL over the train split (run.json 'beta')")
    k.add_argument("--beta-mean", type=float, metavar="B", help="the same loss as a mean per train example")
    p.add_argument("--alpha", type=float, default=0.0, metavar="A", help="hard-label weight of the distillation (default 0)")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T", help="distillation temperature T >= 1 (default 1)")
    p.add_argument("--n-train", type=int, default=None, metavar="N",
                   help="N = train examples beta was summed over (default: rows analysed; required when "
                   "the analysed split is not train)")
    p.add_argument("--threshold", type=float, default=0.9, metavar="P", help="high-confidence threshold (default 0.9)")
    p.add_argument("--delta", choices=["p0", "label"], default=None,
                   help="confidence compared: p0 (paper, default for 2 classes) or the gold label's "
                   "probability (default for more classes)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="bootstrap resamples for the CI (default 1000)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="bootstrap seed (default 0)")
    p.add_argument("--split", choices=["train", "eval"], default=None,
                   help="analysed split (default: from the sidecar or a <TASK>_on_<split> folder)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="directory for analysis.json and the PNG plots")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the result as JSON to this file")
    p.add_argument("--no-plots", action="store_true", help="with --out: write no plots")
    p.set_defaults(func=run)


def write_plots(result: Any, out: Path) -> list[Path]:
    """Write the analysis plots of a :class:`PairAnalysis` into ``out``; returns the paths."""
    from confdistill.reports.plots import (
        plot_confidence_histogram,
        plot_delta_histogram,
        plot_reliability,
    )

    what = "p0" if result.delta_kind == "p0" else "probability of the gold label"
    paths = [
        plot_confidence_histogram(result.teacher_conf, out / PLOT_FILES[0], xlabel=what, color="tab:blue",
                                  title="teacher confidence, both-correct rows"),
        plot_confidence_histogram(result.student_conf, out / PLOT_FILES[1], xlabel=what, color="tab:orange",
                                  title="student confidence, both-correct rows"),
        plot_delta_histogram(result.delta, out / PLOT_FILES[2], sigma=result.sigma, mean=result.mean_delta,
                             kappa=result.kappa),
        plot_reliability({"teacher": (result.teacher_maxprob, result.teacher_correct),
                          "student": (result.student_maxprob, result.student_correct)},
                         out / PLOT_FILES[3], title="Reliability (all rows)"),
    ]
    return paths


def run(args: argparse.Namespace) -> int:
    import warnings

    from confdistill.errors import InputError
    from confdistill.io import write_json
    from confdistill.prediction.softmax_file import read_softmax
    from confdistill.properties.confidence import analyze_pair

    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise InputError("--out: expected a directory, got an existing file", path=args.out)
    if args.json is not None and args.json.is_dir():
        raise InputError("--json: expected a file name, got a directory", path=args.json)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        teacher = read_softmax(args.teacher)
        student = read_softmax(args.student)
    for w in caught:
        print(f"confdistill analyze: warning: {w.message}", file=sys.stderr)
    result = analyze_pair(
        teacher, student, kappa=args.kappa, beta=args.beta, beta_mean=args.beta_mean, alpha=args.alpha,
        temperature=args.temperature, n_train=args.n_train, threshold=args.threshold,
        delta=args.delta or "auto", n_bootstrap=args.bootstrap, seed=args.seed, split=args.split,
    )
    del teacher, student
    data = result.to_dict()
    # Everything is computed: only now write (a failed analysis leaves earlier results alone).
    written: list[Path] = []
    if args.json is not None:
        write_json(args.json, data)
        written.append(args.json)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        if not args.no_plots:
            written += write_plots(result, args.out)
        write_json(args.out / "analysis.json", data)
        written.append(args.out / "analysis.json")
    print(result.summary())
    if written:
        print("wrote: " + ", ".join(str(p) for p in written))
    return 0
