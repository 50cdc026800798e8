"""``confdistill finetune``: fine-tune a teacher on a task (hard-label loss), with the distillation loop."""

from __future__ import annotations

import argparse

from confdistill.cli.trainer_args import TRAINER_OPTIONS, add_trainer_arguments, integer
from confdistill.data.tabular import add_data_arguments


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from confdistill.distillation.config import FinetuneConfig

    d = FinetuneConfig()
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a model on a task (the teacher), with checkpoints and resume",
        description="Fine-tune a BERT-family classifier with cross-entropy (MSE for STS-B and --regression). "
        "Writes OUT/{final,best,checkpoints,metrics.jsonl,loss_curves.png,run.json}. Data: a GLUE task, "
        "or --task custom with your own DATA_DIR/{train,dev}.{csv,tsv,jsonl} and the column options.",
    )
    p.add_argument("--model", required=True, metavar="DIR",
                   help="model to start from: a directory, minilm, or a Hub id in the local cache")
    p.add_argument("--num-labels", type=integer, default=None, metavar="K",
                   help="the task's number of classes (1: regression), to replace a classifier head trained for "
                   "another number: the old head is dropped and a new one drawn (default: the head must fit)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (must not hold a run unless --resume)")
    add_data_arguments(p)
    defaults = {name: getattr(d, name) for name in type(d).model_fields if name in TRAINER_OPTIONS}
    add_trainer_arguments(p, defaults=defaults)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from confdistill.data.tabular import columns_from_args
    from confdistill.distillation.config import FinetuneConfig
    from confdistill.distillation.trainer import finetune

    columns = columns_from_args(args)
    names = set(FinetuneConfig.model_fields)
    settings = {k: v for k, v in vars(args).items() if k in names}
    settings["columns"] = None if columns is None else columns.to_dict()
    result = finetune(FinetuneConfig.from_dict(settings))
    scores = result.get("final_eval") or {}
    print(f"finetune done: {result.get('outputs', {}).get('final')}; "
          + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in scores.items()),
          file=sys.stderr)
    return 0
