"""The training options shared by ``distill``, ``finetune`` and ``tune``: one definition, each
command's own defaults.

:func:`add_trainer_arguments` registers the options of the training loop (learning rate, epochs,
batch sizes, max length, warm-up, weight decay, evaluation, checkpoints, seed, augmented data,
length grouping, padding, accumulation, precision, device, resume, overwrite) under the ``DistillConfig`` / ``FinetuneConfig`` field names as
``dest``, so ``{k: v for k, v in vars(args).items() if k in fields}`` builds the config. Every
option's help ends with its default. Standard library only (the CLI starts fast).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from confdistill.errors import expected, one_of

__all__ = ["TRAINER_OPTIONS", "add_trainer_arguments", "choice", "integer", "number"]


# argparse types that word a bad value as the settings models do (confdistill.errors.expected):
# "argument --learning-rate: expected a number, got 'x'" on the command line, "learning_rate:
# expected a number, got 'x'" from Python.


def number(text: str) -> float:
    """A float option's value."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(expected("a number", text)) from None


def integer(text: str) -> int:
    """An integer option's value."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(expected("an integer", text)) from None


def choice(options: Collection[str]) -> Callable[[str], str]:
    """A type for an option with ``choices=options``: refuses another value in the settings' wording
    (argparse checks its ``choices`` only after the type)."""
    def parse(text: str) -> str:
        if text not in options:
            raise argparse.ArgumentTypeError(expected(one_of(list(options)), text))
        return text
    return parse


def _optional_int(text: str) -> int | None:
    """An integer, or ``none`` (the setting off)."""
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(expected("an integer or 'none'", text)) from None


@dataclass(frozen=True)
class _Option:
    flags: tuple[str, ...]
    help: str
    type: Any = None          # None: a switch (see ``action``)
    metavar: str | None = None
    action: str | None = None  # "store_true" / "store_false" for switches
    needs_default: bool = True
    choices: tuple[str, ...] | None = None


#: dest (the config field) -> how the option is spelled and described, in --help order.
TRAINER_OPTIONS: dict[str, _Option] = {
    "learning_rate": _Option(("--learning-rate",), "peak learning rate", number, "LR"),
    "num_train_epochs": _Option(("--num-train-epochs", "--epochs"), "training epochs (may be fractional)",
                                number, "N"),
    "train_batch_size": _Option(("--train-batch-size", "--batch-size"),
                                "global batch size (all processes together)", integer, "N"),
    "eval_batch_size": _Option(("--eval-batch-size",), "batch size for evaluation and teacher logits", integer, "N"),
    "max_seq_length": _Option(("--max-seq-length",), "truncate inputs to this many tokens", integer, "N"),
    "warmup_proportion": _Option(("--warmup-proportion",),
                                 "fraction of the steps with linear warm-up, then linear decay "
                                 "(stage 1 of distill: constant rate)", number, "P"),
    "weight_decay": _Option(("--weight-decay",), "AdamW weight decay, not on biases/LayerNorm", number, "W"),
    "eval_step": _Option(("--eval-step",), "evaluate on the evaluation split every N steps, and at the end "
                         "('none': at the end only)", _optional_int, "N"),
    "eval_split": _Option(("--eval-split",), "evaluation split", str, "SPLIT",
                          needs_default=False),
    "checkpoint_steps": _Option(("--checkpoint-steps",), "checkpoint every N steps, and at epoch ends "
                                "('none': epoch ends only)", _optional_int, "N"),
    "seed": _Option(("--seed",), "random seed", integer, "N"),
    "aug_train": _Option(("--aug-train",), "train on this (augmented) file instead of the task's train split "
                         "(β and n_train stay measured on the train split)", str, "FILE", needs_default=False),
    "group_by_length": _Option(("--no-group-by-length",), "random batches without grouping similar lengths "
                               "(slower; TinyBERT's batches)", action="store_false", needs_default=False),
    "resume": _Option(("--resume",), "continue the run in OUT from its last checkpoint",
                      action="store_true", needs_default=False),
    "overwrite": _Option(("--overwrite",), "discard what OUT holds (a run or anything else) and start afresh; "
                         "without it, or --resume, an existing non-empty OUT is refused",
                         action="store_true", needs_default=False),
    "gradient_accumulation_steps": _Option(("--gradient-accumulation-steps",),
                                           "compute each batch in N micro-batches (same gradient, less memory)",
                                           integer, "N"),
    "pad_to_max_length": _Option(("--pad-to-max-length",), "pad every batch to --max-seq-length (research "
                                 "reproduction: stage 1's MSE then averages over exactly TinyBERT's positions)",
                                 action="store_true", needs_default=False),
    "mixed_precision": _Option(("--mixed-precision",), "autocast precision of training (accelerate); β and σ "
                               "are always measured in fp32", str, None, choices=("no", "bf16", "fp16")),
    "device": _Option(("--device",), "where to train: auto = a GPU when present", str, None,
                      choices=("auto", "cpu", "cuda")),
    "best_metric": _Option(("--best-metric",), "evaluation metric that picks OUT/best", str, "NAME",
                           needs_default=False),
}

_SWITCH_DEFAULT_TEXT = {"group_by_length": "length-grouped batches", "resume": "off", "overwrite": "off",
                        "pad_to_max_length": "off, dynamic padding"}
#: How a None default reads in --help.
_NONE_TEXT = {"eval_split": "dev; MNLI: dev_matched", "aug_train": "none, the task's train split",
              "best_metric": "the task's TinyBERT metric: accuracy; CoLA matthews_corr; STS-B corr"}


def _show(value: Any) -> str:
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def add_trainer_arguments(
    parser: argparse.ArgumentParser,
    *,
    defaults: Mapping[str, Any],
    only: Collection[str] | None = None,
    help_text: Mapping[str, str] | None = None,
    shown_defaults: Mapping[str, str] | None = None,
    title: str = "training",
) -> argparse._ArgumentGroup:
    """Add the shared training options to ``parser`` (in an argument group ``title``); return the group.

    defaults: dest -> default (this command's); required for every added value option except
    ``eval_split`` and ``aug_train`` (default None). only: the dests to add (default: all of
    :data:`TRAINER_OPTIONS`). help_text: dest -> replacement description (the default is still appended).
    shown_defaults: dest -> how to state the default in --help when its value says little (e.g.
    "the experiment's seed" for None).
    """
    unknown = set(defaults) - set(TRAINER_OPTIONS) | set(only or ()) - set(TRAINER_OPTIONS)
    if unknown:
        raise ValueError(f"unknown trainer option(s) {sorted(unknown)}; known: {sorted(TRAINER_OPTIONS)}")
    help_text = dict(help_text or {})
    shown_defaults = dict(shown_defaults or {})
    group = parser.add_argument_group(title)
    for dest, opt in TRAINER_OPTIONS.items():
        if only is not None and dest not in only:
            continue
        if opt.needs_default and dest not in defaults:
            raise ValueError(f"add_trainer_arguments: no default given for {dest!r}")
        text = help_text.get(dest, opt.help)
        if opt.action is not None:
            default = defaults.get(dest, opt.action == "store_false")
            shown = shown_defaults.get(dest, _SWITCH_DEFAULT_TEXT.get(dest, _show(default)))
            group.add_argument(*opt.flags, dest=dest, action=opt.action, default=default,
                               help=f"{text} (default: {shown})")
            continue
        default = defaults.get(dest)
        shown = shown_defaults.get(dest, _NONE_TEXT.get(dest, "none") if default is None else _show(default))
        kind = choice(opt.choices) if opt.choices else opt.type
        group.add_argument(*opt.flags, dest=dest, type=kind, default=default, metavar=opt.metavar,
                           choices=opt.choices, help=f"{text} (default: {shown})")
    return group
