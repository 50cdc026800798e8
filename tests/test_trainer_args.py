"""The shared training options (cli/trainer_args.py): one definition used by distill, finetune and
tune, each command's own defaults (equal to its config class's), every default stated in --help."""

from __future__ import annotations

import argparse
import re

import pytest

from confdistill.cli.main import build_parser
from confdistill.cli.trainer_args import TRAINER_OPTIONS, add_trainer_arguments
from confdistill.distillation import DistillConfig, FinetuneConfig


def _sub(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def _options_with_help(sub: argparse.ArgumentParser) -> dict[str, str]:
    return {a.dest: a.help or "" for a in sub._actions if a.option_strings and a.dest != "help"}


@pytest.mark.parametrize(("command", "config"), [("distill", DistillConfig), ("finetune", FinetuneConfig)])
def test_same_options_with_each_commands_defaults(command: str, config: type) -> None:
    sub = _sub(command)
    helps = _options_with_help(sub)
    assert set(TRAINER_OPTIONS) <= set(helps)
    required = {"--teacher": "t", "--student": "s", "--model": "m", "--out": "o", "--task": "sst2",
                "--data-dir": "d"}
    argv = [x for flag, v in required.items() if any(flag in a.option_strings for a in sub._actions)
            for x in (flag, v)]
    args = sub.parse_args(argv)
    defaults = config()
    for name in config.model_fields:
        if hasattr(args, name) and name not in ("columns", "teacher", "student", "model", "out", "task", "data_dir"):
            assert getattr(args, name) == getattr(defaults, name), name
    # Every option states its default in --help (the same text the user reads).
    for dest, text in helps.items():
        if dest in ("teacher", "student", "model", "out", "task", "data_dir", "text_column", "text_pair_column",
                    "label_column", "regression"):
            continue  # required, or custom-data options without a default
        assert "(default:" in text, (command, dest, text)
    assert re.search(r"--learning-rate LR\s+\S.*\(default: (2e-05|--intermediate-lr / --prediction-lr)\)",
                     " ".join(sub.format_help().split()))


def test_aliases_and_none() -> None:
    sub = _sub("distill")
    args = sub.parse_args(["--teacher", "t", "--student", "s", "--out", "o", "--task", "sst2", "--data-dir", "d",
                           "--epochs", "2.5", "--batch-size", "8", "--eval-step", "none", "--checkpoint-steps", "7",
                           "--no-group-by-length", "--resume"])
    assert (args.num_train_epochs, args.train_batch_size, args.eval_step, args.checkpoint_steps) == (2.5, 8, None, 7)
    assert args.group_by_length is False and args.resume is True and args.device == "auto"
    with pytest.raises(SystemExit):
        sub.parse_args(["--teacher", "t", "--student", "s", "--out", "o", "--task", "x", "--data-dir", "d",
                        "--eval-step", "often"])


def test_tune_uses_the_shared_seed_and_aug_train() -> None:
    helps = _options_with_help(_sub("tune"))
    assert helps["seed"] == "sampler seed (default: the experiment's seed)"
    assert helps["aug_train"].startswith("augmented train file")


def test_missing_default_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="learning_rate"):
        add_trainer_arguments(argparse.ArgumentParser(), defaults={})
    with pytest.raises(ValueError, match="unknown trainer option"):
        add_trainer_arguments(argparse.ArgumentParser(), defaults={"lr": 1.0})
