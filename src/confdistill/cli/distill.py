"""``confdistill distill``: TinyBERT task distillation (stage 1, stage 2, or both).

Runs on one CPU/GPU as is, or on several processes with
``accelerate launch --num_processes N -m confdistill distill …`` (same arguments).
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "distill",
        help="distill a teacher into a student with TinyBERT (intermediate layers, prediction layer, or both)",
        description="TinyBERT task distillation. Writes OUT/{final,best,checkpoints,metrics.jsonl,"
        "loss_curves.png,run.json}; --stage both runs stage 1 in OUT/intermediate first. "
        "Defaults are TinyBERT's.",
    )
    p.add_argument("--stage", choices=["intermediate", "prediction", "both"], default="prediction",
                   help="intermediate = stage 1 (attention scores + hidden states), prediction = stage 2 "
                   "(soft cross-entropy on logits), both = stage 1 then stage 2 (default: prediction)")
    p.add_argument("--teacher", required=True, metavar="DIR", help="teacher model directory (fine-tuned on TASK)")
    p.add_argument("--student", required=True, metavar="DIR", help="student model directory (e.g. from make-student)")
    p.add_argument("--task", required=True, help="GLUE task name (SST-2, MRPC, STS-B, ...)")
    p.add_argument("--data-dir", required=True, metavar="DIR", help="GLUE root or the task's folder")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (must not hold a run unless --resume)")
    p.add_argument("--learning-rate", type=float, default=5e-5, help="learning rate of a single stage (5e-5)")
    p.add_argument("--num-train-epochs", type=float, default=3.0, help="epochs of a single stage (3)")
    p.add_argument("--intermediate-epochs", type=float, default=10.0, help="--stage both: stage 1 epochs (10)")
    p.add_argument("--intermediate-lr", type=float, default=5e-5, help="--stage both: stage 1 learning rate (5e-5)")
    p.add_argument("--prediction-epochs", type=float, default=3.0, help="--stage both: stage 2 epochs (3)")
    p.add_argument("--prediction-lr", type=float, default=3e-5, help="--stage both: stage 2 learning rate (3e-5)")
    p.add_argument("--train-batch-size", type=int, default=32, help="global batch size (32)")
    p.add_argument("--eval-batch-size", type=int, default=64, help="batch size for evaluation and teacher logits (64)")
    p.add_argument("--max-seq-length", type=int, default=128, help="truncate inputs to this many tokens (128)")
    p.add_argument("--temperature", type=float, default=1.0, help="stage 2 softmax temperature T (1)")
    p.add_argument("--alpha", type=float, default=0.0, help="stage 2 weight of the hard-label loss (0)")
    p.add_argument("--lambda-conf", type=float, default=0.0,
                   help="stage 2 weight of the confidence-gap term ½Σ(p_t−p_s)² (0 = off)")
    p.add_argument("--warmup-proportion", type=float, default=0.1, help="stage 2 warm-up fraction of steps (0.1)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay, not on biases/LayerNorm (0.01)")
    p.add_argument("--eval-step", type=int, default=50, help="evaluate on dev every N steps in stage 2 (50)")
    p.add_argument("--eval-split", default=None, help="evaluation split (default dev; MNLI: dev_matched)")
    p.add_argument("--checkpoint-steps", type=int, default=500, help="checkpoint every N steps, and at epoch ends (500)")
    p.add_argument("--seed", type=int, default=42, help="random seed (42)")
    p.add_argument("--aug-train", default=None, metavar="FILE",
                   help="train on this (augmented) TSV instead of the task's train.tsv")
    p.add_argument("--no-group-by-length", dest="group_by_length", action="store_false",
                   help="random batches without grouping similar lengths (slower; TinyBERT's batches)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its last checkpoint")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is present")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from confdistill.distillation.config import DistillConfig
    from confdistill.distillation.trainer import distill

    names = {f for f in DistillConfig.__dataclass_fields__}
    config = DistillConfig.from_dict({k: v for k, v in vars(args).items() if k in names})
    result = distill(config)
    _print_summary(result)
    return 0


def _print_summary(result: dict) -> None:
    import sys

    parts = [f"{result.get('stage')} done: {result.get('outputs', {}).get('final')}"]
    if result.get("final_eval"):
        parts.append("eval " + ", ".join(f"{k}={v:.4f}" for k, v in result["final_eval"].items()))
    if result.get("beta") is not None:
        parts.append(f"beta={result['beta']:.4g} (mean {result['beta_mean']:.4g} over {result['n_train']} rows)")
    print("; ".join(parts), file=sys.stderr)
