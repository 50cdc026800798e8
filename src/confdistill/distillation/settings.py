"""Training settings as typed data, each written once with its default and range (pydantic v2).

Three groups, apart as TextBrewer keeps training settings apart from distillation-loss settings:

* :class:`TrainConfig` — the loop: learning rate, epochs, batch sizes, accumulation, sequence
  length and padding, warm-up, weight decay, seed, evaluation and checkpoint periods, precision;
* :class:`Stage1Loss` — TinyBERT stage 1 (attention scores + hidden states): the layer mapping;
* :class:`Stage2Loss` — TinyBERT stage 2 (prediction layer): temperature T, hard-label weight α,
  the confidence-gap weight λ.

The commands' settings (:class:`~confdistill.distillation.config.DistillConfig`,
:class:`~confdistill.distillation.config.FinetuneConfig`) inherit these fields, the experiment
files validate their ``[stage1]``/``[stage2]``/``[finetune]`` tables against them, and the tuner
builds them, so a range is checked by one rule everywhere (:mod:`confdistill.ranges`, also used by
the κ bound). :func:`settings_error` turns pydantic's errors into one line naming each key.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Strict, ValidationError

from confdistill import ranges
from confdistill.errors import InputError, expected, setting_name


def _within(rule: ranges.Range) -> AfterValidator:
    def check(value: float) -> float:
        if not rules_ok(rule, value):
            raise ValueError(rule.describe())
        return value
    return AfterValidator(check)


def rules_ok(rule: ranges.Range, value: float | None) -> bool:
    return value is None or rule.contains(float(value))


def _number(value: Any) -> Any:
    # TOML and JSON booleans are ints to Python: a boolean is never a number here.
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


def _path_text(value: Any) -> Any:
    # A path may be given as a pathlib.Path (any os.PathLike); it is kept as text, as run.json records it.
    return os.fspath(value) if isinstance(value, os.PathLike) else value


#: A file or folder: ``str`` or any ``os.PathLike`` (``pathlib.Path``), stored as ``str``.
PathText = Annotated[str, BeforeValidator(_path_text)]
Number = Annotated[float, BeforeValidator(_number)]
Integer = Annotated[int, Strict()]
Positive = Annotated[Number, _within(ranges.POSITIVE)]
NonNegative = Annotated[Number, _within(ranges.NON_NEGATIVE)]
AtLeastOne = Annotated[Integer, _within(ranges.Range(1.0))]
SeqLength = Annotated[Integer, _within(ranges.Range(8.0, 512.0))]
Seed = Annotated[Integer, _within(ranges.NON_NEGATIVE)]
Alpha = Annotated[Number, _within(ranges.ALPHA)]
Temperature = Annotated[Number, _within(ranges.TEMPERATURE)]
Warmup = Annotated[Number, _within(ranges.WARMUP)]

LAYER_MAPPINGS = ("uniform", "top", "bottom")
MIXED_PRECISION = ("no", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
LayerMapping = Literal["uniform", "top", "bottom"]
MixedPrecision = Literal["no", "bf16", "fp16"]
Device = Literal["auto", "cpu", "cuda"]


class Settings(BaseModel):
    """Base: unknown keys refused, values re-checked on assignment, plain-data round trip."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the settings (JSON/TOML serialisable)."""
        return self.model_dump()

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(cls.model_fields)

    @classmethod
    def pick(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The entries of ``data`` that are fields of this class."""
        return {k: v for k, v in data.items() if k in cls.model_fields}


class TrainConfig(Settings):
    """The training loop's settings (every kind of training: fine-tuning, stage 1, stage 2).

    train_batch_size is the batch of one optimiser step, all processes together; with
    gradient_accumulation_steps = G it is computed in G micro-batches (TinyBERT's convention:
    the same gradient with less memory). eval_step / checkpoint_steps: None = at the end / at
    epoch ends only. pad_to_max_length: pad every batch to max_seq_length (research reproduction:
    stage 1's MSE then averages over exactly TinyBERT's positions); default dynamic padding.
    mixed_precision: autocast for training through accelerate; β and σ are always measured in fp32.
    """

    learning_rate: Positive = 5e-5
    num_train_epochs: Positive = 3.0
    train_batch_size: AtLeastOne = 32
    eval_batch_size: AtLeastOne = 64
    gradient_accumulation_steps: AtLeastOne = 1
    max_seq_length: SeqLength = 128
    warmup_proportion: Warmup = 0.1
    weight_decay: NonNegative = 0.01
    seed: Seed = 42
    eval_step: AtLeastOne | None = 50
    checkpoint_steps: AtLeastOne | None = 500
    group_by_length: bool = True
    pad_to_max_length: bool = False
    mixed_precision: MixedPrecision = "no"


class Stage1Loss(Settings):
    """TinyBERT stage 1: MSE of attention scores and of hidden states (fit_dense where widths differ).

    layer_mapping: which teacher layer each student layer learns from — "uniform" (TinyBERT's
    g(m) = m·N/M), "top" or "bottom" (docs/method.md).
    """

    layer_mapping: LayerMapping = "uniform"


class Stage2Loss(Settings):
    """TinyBERT stage 2: (1 − α)·soft CE at temperature T + α·hard CE (+ λ·confidence gap).

    T ≥ 1 and α < 1 are the κ bound's conditions (:mod:`confdistill.ranges`). STS-B (regression)
    trains on the MSE to the gold score, as TinyBERT does; T, α, λ then do not apply.
    """

    temperature: Temperature = 1.0
    alpha: Alpha = 0.0
    lambda_conf: NonNegative = 0.0


class RunExtras(Settings):
    """Per-stage run settings an experiment's stage table may also give (not part of the loop or loss)."""

    aug_train: PathText | None = None  # train on this (augmented) file; β stays measured on X_train
    best_metric: str | None = None    # the evaluation key that picks OUT/best (default: TinyBERT's)


#: The settings a stage of an experiment (``[stage1]``, ``[stage2]``) or fine-tuning may set.
STAGE_SETTINGS: dict[str, tuple[type[Settings], ...]] = {
    "stage1": (TrainConfig, Stage1Loss, RunExtras),
    "stage2": (TrainConfig, Stage2Loss, RunExtras),
    "finetune": (TrainConfig, RunExtras),
}


def check_table(table: dict[str, Any], kinds: Sequence[type[Settings]], *, where: str) -> dict[str, Any]:
    """Validate a table of settings (e.g. an experiment's ``[stage2]``) against ``kinds``' fields.

    Returns the table with its values as validated (e.g. ints for float fields stay numbers);
    raises :class:`InputError` naming ``where.key`` for an unknown key or a value out of range.
    """
    known = frozenset().union(*(k.field_names() for k in kinds))
    unknown = sorted(set(table) - known)
    if unknown:
        raise InputError(f"{where}.{unknown[0]}: unknown key (expected one of: {', '.join(sorted(known))})")
    out: dict[str, Any] = {}
    problems: list[str] = []
    for kind in kinds:
        part = kind.pick(table)
        try:
            checked = kind.model_validate(part)
        except ValidationError as exc:
            problems += describe_errors(exc, prefix=where)
            continue
        out.update({k: getattr(checked, k) for k in part})
    if problems:
        raise InputError("; ".join(problems))
    return out


def settings_error(exc: ValidationError, *, prefix: str = "") -> InputError:
    """One line naming every bad key: ``prefix.key: must be in [0, 1)``; without a prefix, a
    setting is named as the caller spells it (:func:`~confdistill.errors.setting_name`:
    ``temperature`` from Python, ``--temperature`` from the command line)."""
    return InputError("; ".join(describe_errors(exc, prefix=prefix)))


def describe_errors(exc: ValidationError, *, prefix: str = "") -> list[str]:
    parts = []
    for err in exc.errors():
        loc = _location(err["loc"], prefix)
        parts.append(f"{loc}: {error_message(err)}")
    return parts


def _location(loc: Sequence[Any], prefix: str) -> str:
    names = [p for p in loc if not (isinstance(p, str) and p in ("function-after", "lax-or-strict"))]
    if not prefix and len(names) == 1 and isinstance(names[0], str):
        return setting_name(names[0])
    text = prefix
    for part in names:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not _is_type_tag(part):
            text += f".{part}" if text else str(part)
    return text


def _is_type_tag(part: str) -> bool:
    # pydantic adds the member type to the location of union members ("int", "none", ...)
    return part in ("int", "float", "none", "bool", "str", "constrained-int", "constrained-float")


def error_message(err: dict[str, Any]) -> str:
    """One pydantic error as the project words it ("must be in [0, 1)", "expected an integer, got 'x'")."""
    kind = err.get("type", "")
    value = err.get("input")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing"
    if kind == "value_error":
        return str((err.get("ctx") or {}).get("error", err["msg"])).removeprefix("Value error, ")
    if kind in ("int_type", "int_from_float", "int_parsing"):
        return expected("an integer", value)
    if kind in ("float_type", "float_parsing"):
        return expected("a number", value)
    if kind in ("bool_type", "bool_parsing"):
        return expected("true or false", value)
    if kind == "literal_error":
        return expected(f"one of {(err.get('ctx') or {}).get('expected')}", value)
    return str(err["msg"])
