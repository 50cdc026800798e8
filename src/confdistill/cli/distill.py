"""``confdistill distill``: TinyBERT task distillation (stage 1, stage 2, or both).

Runs on one CPU/GPU as is, or on several processes with
``accelerate launch --num_processes N -m confdistill distill …`` (same arguments).
"""

from __future__ import annotations

import argparse

from confdistill.cli.trainer_args import TRAINER_OPTIONS, add_trainer_arguments, choice, number
from confdistill.data.tabular import add_data_arguments


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    # The settings module needs no torch: one source for the defaults.
    from confdistill.distillation.config import LAYER_MAPPINGS, STAGES, DistillConfig

    d = DistillConfig()
    p = subparsers.add_parser(
        "distill",
        help="distill a teacher into a student with TinyBERT (intermediate layers, prediction layer, or both)",
        description="TinyBERT task distillation. Writes OUT/{final,best,checkpoints,metrics.jsonl,"
        "loss_curves.png,run.json}; --stage both runs stage 1 in OUT/intermediate first. "
        "Defaults are TinyBERT's. Data: a GLUE task, or --task custom with your own "
        "DATA_DIR/{train,dev}.{csv,tsv,jsonl} and the column options.",
    )
    p.add_argument("--stage", type=choice(STAGES), choices=STAGES, default=d.stage,
                   help="intermediate = stage 1 (attention scores + hidden states), prediction = stage 2 "
                   f"(soft cross-entropy on logits), both = stage 1 then stage 2 (default: {d.stage})")
    p.add_argument("--teacher", required=True, metavar="DIR", help="teacher model directory (fine-tuned on TASK)")
    p.add_argument("--student", required=True, metavar="DIR", help="student model directory (e.g. from make-student)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (must not hold a run unless --resume)")
    add_data_arguments(p)
    stages = p.add_argument_group("stages")
    for flag, text in (
        ("--intermediate-epochs", "stage 1 epochs (alone or in --stage both)"),
        ("--intermediate-lr", "stage 1 learning rate (alone or in --stage both)"),
        ("--prediction-epochs", "stage 2 epochs (alone or in --stage both)"),
        ("--prediction-lr", "stage 2 learning rate (alone or in --stage both)"),
        ("--temperature", "stage 2 softmax temperature T (>= 1: the κ bound's condition)"),
        ("--alpha", "stage 2 weight of the hard-label loss, in [0, 1) (TinyBERT: 0)"),
        ("--lambda-conf", "stage 2 weight of the confidence-gap term ½Σ(p_t−p_s)², 0 = off"),
    ):
        default = getattr(d, flag[2:].replace("-", "_"))
        stages.add_argument(flag, type=number, default=default, metavar="X", help=f"{text} (default: {default:g})")
    stages.add_argument("--layer-mapping", type=choice(LAYER_MAPPINGS), choices=LAYER_MAPPINGS, default=d.layer_mapping,
                        help="stage 1 student→teacher layers: uniform g(m)=⌊mN/M+½⌋ (TinyBERT), top "
                        f"g(m)=N−M+m, bottom g(m)=m (default: {d.layer_mapping})")
    stages.add_argument("--analyse", type=choice(("final", "best")), choices=["final", "best"], default=d.analyse,
                        help="stage 2's model that β is measured on (and an experiment analyses): the last "
                        f"step's or the evaluation-best (default: {d.analyse})")
    defaults = {name: getattr(d, name) for name in type(d).model_fields if name in TRAINER_OPTIONS}
    add_trainer_arguments(p, defaults=defaults, shown_defaults={
        "learning_rate": "--intermediate-lr / --prediction-lr", "num_train_epochs":
        "--intermediate-epochs / --prediction-epochs"}, help_text={
        "learning_rate": "learning rate of every stage that runs, overriding the stage's own",
        "num_train_epochs": "epochs of every stage that runs, overriding the stage's own",
        "eval_step": "stage 2: evaluate (task metric, σ) on the evaluation split every N steps "
                     "('none': at the end only)",
    })
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from confdistill.data.tabular import columns_from_args
    from confdistill.distillation.batches import single_process_launch_note
    from confdistill.distillation.config import DistillConfig
    from confdistill.distillation.trainer import distill

    note = single_process_launch_note("distill")
    if note:
        print(note, file=sys.stderr)  # the first line: the run's world_size 1 is not what was asked for

    columns = columns_from_args(args)
    names = set(DistillConfig.model_fields)
    settings = {k: v for k, v in vars(args).items() if k in names}
    settings["columns"] = None if columns is None else columns.to_dict()
    result = distill(DistillConfig.from_dict(settings))
    _print_summary(result)
    return 0


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _print_summary(result: dict) -> None:
    import sys

    parts = [f"{result.get('stage')} done: {result.get('outputs', {}).get('final')}"]
    if result.get("final_eval"):
        parts.append("eval " + ", ".join(f"{k}={_fmt(v)}" for k, v in result["final_eval"].items()))
    if result.get("beta") is not None:
        parts.append(f"beta={result['beta']:.4g} (mean {result['beta_mean']:.4g} over {result['n_train']} rows)")
    print("; ".join(parts), file=sys.stderr)
