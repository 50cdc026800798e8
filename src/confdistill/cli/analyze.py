"""``confdistill analyze``: can the student replace the teacher on one split (or on a service's logs)?

    confdistill analyze --teacher T --student S [--kappa K] [--run RUN.json | --beta B | --beta-mean B]
        [--thresholds 0.5,0.9] [--worst 20] [--check] [--out DIR] [--json FILE] [--no-plots] …

T and S are softmax files (CSV/TSV/Parquet), directories or globs of shard files, labelled or
not. Prints the answer first, then the evidence; ``--json FILE`` writes the result (keys in
docs/formats.md); ``--out DIR`` writes ``analysis.json``, ``worst.csv`` and the PNG plots there.
Nothing is written unless both inputs are valid and the analysis completed (bad input → exit 2).
``--check`` makes the exit code the verdict: 1 when φ_cnf fails against ``--kappa`` or the pair is
"not informative" (a collapsed model, a teacher at the majority class, too few rows).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import Any

EXIT_FAILS = 1


def add_parser(subparsers: Any) -> None:
    from confdistill.ranges import WORST_ROWS

    p = subparsers.add_parser(
        "analyze",
        help="can the student replace the teacher? phi_cnf, decision flips, calibration, worst rows",
        description="Compare a teacher's and a student's softmax outputs on the same rows: accuracies, "
        "sigma of the confidence gap (with bootstrap intervals) against your tolerance kappa, decision flips "
        "at operating thresholds, calibration, and the inputs that moved most. Files without a label column "
        "(a service's logs) are compared on the rows where both predict the same class.",
    )
    p.add_argument("--teacher", required=True, metavar="PATH",
                   help="teacher softmax file (CSV/TSV/Parquet), directory or glob of shards")
    p.add_argument("--student", required=True, metavar="PATH", help="student softmax file(s), same rows")
    p.add_argument("--kappa", type=float, metavar="K",
                   help="your tolerance on sigma: phi_cnf holds when sigma <= K (no tolerance: no verdict)")
    b = p.add_mutually_exclusive_group()
    b.add_argument("--run", type=Path, metavar="RUN_JSON",
                   help="a stage-2 distillation run.json: beta, N, alpha and T for the bound check")
    b.add_argument("--beta", type=float, metavar="B",
                   help="prediction-layer distillation loss, TOTAL over the train split (bound check only)")
    b.add_argument("--beta-mean", type=float, metavar="B", help="the same loss as a mean per train example")
    p.add_argument("--alpha", type=float, default=0.0, metavar="A", help="hard-label weight of the distillation (default 0)")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T", help="distillation temperature T >= 1 (default 1)")
    p.add_argument("--n-train", type=int, default=None, metavar="N",
                   help="N = train examples beta was summed over (default: rows analysed; required when "
                   "the analysed split is not train)")
    p.add_argument("--thresholds", default="0.5,0.9", metavar="T1,T2",
                   help="operating thresholds: a model acts when a class has probability >= T (default 0.5,0.9)")
    p.add_argument("--worst", type=int, default=20, metavar="N",
                   help="list the N rows with the largest confidence gap and N flips at the highest threshold "
                   f"(default 20; 0: none; at most {WORST_ROWS.high:,.0f})")
    p.add_argument("--check", action="store_true",
                   help="exit 1 when phi_cnf fails against --kappa, or when the pair is not informative (a model "
                   "predicting one class everywhere, a teacher no better than the majority class, fewer than 30 "
                   "rows in the sigma set) (for CI gates); needs --kappa")
    p.add_argument("--threshold", type=float, default=0.9, metavar="P", help="high-confidence threshold (default 0.9)")
    p.add_argument("--delta", choices=["p0", "label", "pred"], default=None,
                   help="confidence compared: p0 (paper, default for 2 classes), the gold label's probability "
                   "(default for more classes) or the predicted class's (unlabelled, more classes)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="bootstrap resamples for the intervals (default 1000)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="bootstrap seed (default 0)")
    p.add_argument("--split", choices=["train", "dev", "eval"], default=None,
                   help="analysed split: train (X_train, covered by the β bound) or dev/eval (default: from the "
                   "sidecar or a <TASK>_on_<split> folder)")
    p.add_argument("--slice-by", action="append", default=[], metavar="WHAT",
                   help="also report every figure per slice: label, length (word count of the text, in quartiles; "
                   "needs the sidecar's data file) or a column of the prediction file or of its data file; "
                   "repeat for several")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="directory for analysis.json, worst.csv and the plots")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the result as JSON to this file")
    p.add_argument("--no-plots", action="store_true", help="with --out: write no plots")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out folder / --json file (refused otherwise)")
    p.set_defaults(func=run)


def worst_csv(rows: list[dict[str, Any]], k: int) -> str:
    """The listed rows as CSV text (one line per row, probabilities of both models, the text when known)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["kind", "row", "id", "label", "teacher_pred", "student_pred", "teacher_conf", "student_conf",
                "delta", *(f"teacher_p{c}" for c in range(k)), *(f"student_p{c}" for c in range(k)), "text"])
    for r in rows:
        w.writerow([r["kind"], r["row"], r["id"] or "", "" if r["label"] is None else r["label"], r["teacher_pred"],
                    r["student_pred"], repr(r["teacher_conf"]), repr(r["student_conf"]), repr(r["delta"]),
                    *map(repr, r["teacher_p"]), *map(repr, r["student_p"]), r["text"] or ""])
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    import contextlib

    from confdistill.folders import claim_output

    # One writer per --out, taken before anything is computed: a second analyze stops at once (the
    # lock is the sibling .OUT.lock: a lock inside would be swapped away with the folder).
    claim = contextlib.nullcontext() if args.out is None else \
        claim_output(args.out, overwrite=args.overwrite, beside=True, what="--out")
    with claim:
        return _analyze(args)


def _analyze(args: argparse.Namespace) -> int:
    import warnings

    from confdistill.errors import InputError
    from confdistill.folders import check_output_target, output_lock, recover_folder, remove_stale_temps
    from confdistill.io import atomic_directory, write_json
    from confdistill.properties.decisions import parse_thresholds
    from confdistill.properties.stream_analysis import analyze_pair
    from confdistill.properties.verdict import bound_from_options, read_run_json

    def check_targets() -> None:
        # Nothing of an earlier result is replaced unless asked, and a file never becomes a folder.
        if args.out is not None:
            check_output_target(args.out, overwrite=args.overwrite, what="--out")
        if args.json is not None:
            check_output_target(args.json, kind="file", overwrite=args.overwrite, what="--json")

    if args.out is not None:
        recover_folder(args.out)  # an earlier analysis killed mid-swap: its old or new folder first
    check_targets()
    if args.check and args.kappa is None:
        raise InputError("--check needs --kappa: a verdict needs the tolerance you accept")
    thresholds = parse_thresholds(args.thresholds)
    labels = [t.strip() for t in args.thresholds.split(",")]
    bound = read_run_json(args.run) if args.run is not None else bound_from_options(
        beta=args.beta, beta_mean=args.beta_mean, n_train=args.n_train, alpha=args.alpha,
        temperature=args.temperature)
    from confdistill.reports.plots import write_analysis_plots

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = analyze_pair(
            args.teacher, args.student, kappa=args.kappa, bound=bound, thresholds=thresholds,
            threshold_labels=labels, worst=args.worst, threshold=args.threshold, delta=args.delta or "auto",
            n_bootstrap=args.bootstrap, seed=args.seed,
            split="eval" if args.split == "dev" else args.split, slice_by=args.slice_by)
    for w in caught:
        print(f"confdistill analyze: warning: {w.message}", file=sys.stderr)
    for note in result.warnings:
        print(f"confdistill analyze: warning: {note}", file=sys.stderr)
    data = result.to_dict()
    # Everything is computed: only now write (a failed analysis leaves earlier results alone).
    check_targets()
    written: list[Path] = []
    if args.json is not None:
        write_json(args.json, data)
        written.append(args.json)
    if args.out is not None:
        # The folder is filled beside the target and swapped in whole (plots, worst.csv and
        # analysis.json are one unit), under the folder's lock (one writer at a time).
        remove_stale_temps(args.out.absolute().parent, recursive=False, names=[args.out.name])
        # (The lock is a sibling file: a lock inside the folder would be swapped away with it.)
        with output_lock(args.out, kind="file", what="--out"), atomic_directory(args.out) as tmp:
            files = [] if args.no_plots else write_analysis_plots(data, tmp)
            (tmp / "worst.csv").write_text(worst_csv(result.worst, result.k), encoding="utf-8")
            write_json(tmp / "analysis.json", data)
            files += [tmp / "worst.csv", tmp / "analysis.json"]
        written += [args.out / p.name for p in files]
    print(result.summary())
    if written:
        print("wrote: " + ", ".join(str(p) for p in written))
    if args.check and data["verdict"] == "not informative":
        # A release gate must not pass what it cannot judge.
        print(f"confdistill analyze: φ_cnf not informative: {'; '.join(data['not_informative'])} (exit {EXIT_FAILS})",
              file=sys.stderr)
        return EXIT_FAILS
    if args.check and data["verdict"] == "fails":
        print(f"confdistill analyze: φ_cnf fails: σ = {data['sigma']:.6f} > κ = {data['kappa']:g} (exit {EXIT_FAILS})",
              file=sys.stderr)
        return EXIT_FAILS
    return 0
