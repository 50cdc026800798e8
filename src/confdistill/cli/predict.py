"""``confdistill predict``: a model's softmax outputs on a split, one row per example in file order."""

from __future__ import annotations

import argparse

from confdistill.data.tabular import add_data_arguments


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="write a model's softmax outputs on a split (pred,p0..,label) with a .meta.json sidecar",
        description="Run a classifier over every example of a split (GLUE task or your own CSV/TSV/JSONL "
        "with --task custom) and write pred,p0,...,p{k-1},label in file order: the file that "
        "'confdistill analyze' reads. Regression tasks (STS-B) write pred,label with scores.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="model directory (HF or TinyBERT format)")
    add_data_arguments(p)
    p.add_argument("--split", default="dev",
                   help="split to predict: train, dev (MNLI: dev_matched), dev_mismatched, ... (default dev)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="output file: .csv, .tsv or .parquet (an existing one is refused without --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out and its sidecar, as one unit (default: off)")
    p.add_argument("--eval-batch-size", "--batch-size", dest="eval_batch_size", type=int, default=64, metavar="N",
                   help="examples per batch (default: 64)")
    p.add_argument("--max-seq-length", "--max-length", dest="max_seq_length", type=int, default=128, metavar="N",
                   help="truncate inputs to this many tokens (default: 128)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where to run: auto = a GPU when present (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from confdistill.data.tabular import columns_from_args
    from confdistill.folders import output_lock, remove_stale_temps
    from confdistill.prediction.predict import predict_split
    from confdistill.prediction.softmax_file import sidecar_path

    target = Path(args.out)
    # One writer per prediction file: a second predict onto the same --out stops at once.
    with output_lock(target, kind="file"):
        side = sidecar_path(target)
        # A dead predict's temporaries of this pair (data, sidecar, commit journal) go first.
        remove_stale_temps(target.parent, recursive=False,
                           names=[target.name, target.stem, side.name, side.stem, f".{target.name}.commit"])
        out = predict_split(args.model, args.task, args.data_dir, args.split, target,
                            batch_size=args.eval_batch_size, max_length=args.max_seq_length,
                            device=None if args.device == "auto" else args.device,
                            columns=columns_from_args(args), progress=not args.no_progress,
                            overwrite=args.overwrite)
    meta = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in meta.get("metrics", {}).items())
    print(f"wrote {meta['n_rows']} rows to {out} ({metrics})", file=sys.stderr)
    return 0
