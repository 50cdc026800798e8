"""``confdistill run EXPERIMENT.toml``: the whole experiment, skipping the steps that are done."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run an experiment file (teacher, students, predictions, analysis, report)",
        description="Run every step of an experiment TOML file: teacher fine-tuning (if asked), teacher "
        "predictions, then for every student make-student -> stage 1 -> stage 2 -> predictions -> analysis, "
        "the footprint, and the report (report.html, report.md, results.json in the output directory). "
        "Finished steps whose outputs are intact and whose inputs are unchanged are skipped, so a killed "
        "run picks up where it stopped and a changed setting re-runs only what it affects.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT.toml", help="experiment file (see examples/README.md)")
    p.add_argument("--out", metavar="DIR", help="output directory (overrides experiment.output_dir)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="data directory for every task (overrides the file's data_dir), e.g. ../shared/data/glue")
    p.add_argument("--overwrite", action="store_true",
                   help="empty the output folder first and start afresh (without it an experiment's folder is "
                   "continued and any other non-empty folder is refused; default: off)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (which steps would run and why, which are up to date) and stop")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from confdistill.experiments.config import load_experiment
    from confdistill.experiments.runner import run_experiment

    cfg = load_experiment(args.experiment, out=args.out, data_dir=args.data_dir)
    summary = run_experiment(cfg, dry_run=args.dry_run, overwrite=args.overwrite)
    if args.dry_run:
        print(f"plan: {len(summary.ran)} step(s) to run, {len(summary.skipped)} up to date "
              f"(output: {cfg.output_dir})")
        return 0
    print(f"ran {len(summary.ran)} step(s), skipped {len(summary.skipped)} up to date")
    print(f"report: {cfg.output_dir / 'report.html'}")
    print(f"        {cfg.output_dir / 'report.md'}")
    print(f"data:   {cfg.output_dir / 'results.json'}")
    return 0
