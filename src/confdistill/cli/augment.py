"""``confdistill augment``: TinyBERT-style offline data augmentation of a task's train split."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "augment",
        help="write an augmented train set (TinyBERT word replacement) for distill --aug-train",
        description="For each train example write N variants in which words are replaced, with "
        "probability P, by a masked-LM head's predictions (single-piece words, when the model has "
        "an MLM head) or by their nearest neighbours in the model's word-embedding matrix. The "
        "output has the train file's format: the original rows first, then the variants. Your own data: "
        "--task custom --text-column C [--text-pair-column C2] --label-column L reads DIR/train.{csv,tsv,jsonl} "
        "and augments the text column(s), copying every other column.",
    )
    # --task, --data-dir and the custom-data columns, as distill / finetune / predict take them.
    from confdistill.data.tabular import add_data_arguments

    add_data_arguments(p)
    p.add_argument("--model", default="minilm", metavar="DIR",
                   help="teacher directory whose vocabulary/embeddings (and MLM head) give the candidates "
                   "(default: the MiniLM-L6 package model)")
    p.add_argument("--n-aug", type=int, default=20, help="variants per example (default 20, TinyBERT's N)")
    p.add_argument("--p", type=float, default=0.4, help="replacement probability per word (default 0.4)")
    p.add_argument("--top-k", type=int, default=15, help="candidates per word (default 15, TinyBERT's M)")
    p.add_argument("--mlm", dest="use_mlm", action="store_true", default=None,
                   help="require the masked-LM head (error if the model has none); default: use it if present")
    p.add_argument("--no-mlm", dest="use_mlm", action="store_false", help="embedding neighbours only")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", default=None, metavar="FILE",
                   help="output file (default: train_aug.tsv beside train.tsv; custom data: train_aug.<ext> "
                   "in the train file's format); an existing one is refused without --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (default: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from confdistill.data.augment import augment_file
    from confdistill.data.tabular import columns_from_args
    from confdistill.models.hub import resolve_model_dir

    columns = columns_from_args(args)  # before the model is loaded: wrong options fail at once
    model_dir = resolve_model_dir(args.model, what="--model")
    summary = augment_file(
        args.task, args.data_dir, args.out, model_dir=model_dir, n_aug=args.n_aug, p=args.p, k=args.top_k,
        seed=args.seed, use_mlm=args.use_mlm, log=lambda m: print(m, file=sys.stderr), overwrite=args.overwrite,
        columns=columns,
    )
    print(json.dumps(summary, indent=2))
    return 0
