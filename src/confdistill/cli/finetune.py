"""``confdistill finetune``: fine-tune a teacher on a task (hard-label loss), with the distillation loop."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a model on a task (the teacher), with checkpoints and resume",
        description="Fine-tune a BERT-family classifier with cross-entropy (MSE for STS-B). Writes "
        "OUT/{final,best,checkpoints,metrics.jsonl,loss_curves.png,run.json}.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="model directory to start from")
    p.add_argument("--task", required=True, help="GLUE task name (SST-2, MRPC, STS-B, ...)")
    p.add_argument("--data-dir", required=True, metavar="DIR", help="GLUE root or the task's folder")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (must not hold a run unless --resume)")
    p.add_argument("--epochs", dest="num_train_epochs", type=float, default=3.0, help="epochs (3)")
    p.add_argument("--learning-rate", type=float, default=2e-5, help="learning rate (2e-5)")
    p.add_argument("--batch-size", dest="train_batch_size", type=int, default=32, help="global batch size (32)")
    p.add_argument("--eval-batch-size", type=int, default=64, help="evaluation batch size (64)")
    p.add_argument("--max-seq-length", type=int, default=128, help="truncate inputs to this many tokens (128)")
    p.add_argument("--warmup-proportion", type=float, default=0.1, help="warm-up fraction of steps (0.1)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (0.01)")
    p.add_argument("--eval-step", type=int, default=200, help="evaluate every N steps (200)")
    p.add_argument("--eval-split", default=None, help="evaluation split (default dev; MNLI: dev_matched)")
    p.add_argument("--checkpoint-steps", type=int, default=500, help="checkpoint every N steps, and at epoch ends (500)")
    p.add_argument("--seed", type=int, default=42, help="random seed (42)")
    p.add_argument("--aug-train", default=None, metavar="FILE", help="train on this TSV instead of train.tsv")
    p.add_argument("--no-group-by-length", dest="group_by_length", action="store_false",
                   help="random batches without grouping similar lengths")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its last checkpoint")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is present")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from confdistill.distillation.config import FinetuneConfig
    from confdistill.distillation.trainer import finetune

    names = set(FinetuneConfig.__dataclass_fields__)
    config = FinetuneConfig.from_dict({k: v for k, v in vars(args).items() if k in names})
    result = finetune(config)
    scores = result.get("final_eval") or {}
    print(f"finetune done: {result.get('outputs', {}).get('final')}; "
          + ", ".join(f"{k}={v:.4f}" for k, v in scores.items()), file=sys.stderr)
    return 0
