"""Run settings as plain data: :class:`DistillConfig` (TinyBERT's names and defaults) and :class:`FinetuneConfig`.

Both are dataclasses with only JSON/TOML-friendly fields (str, int, float, bool, None, and the
plain ``columns`` table of custom data), so that
``from_dict(to_dict(c)) == c`` and a run's settings can be stored in ``run.json`` and compared on
``--resume``. Validation of values the user can get wrong happens in :meth:`validate` and raises
:class:`~confdistill.errors.InputError` naming the argument.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from confdistill.errors import InputError

#: Stage-1 layer mapping strategies (see :mod:`confdistill.distillation.mapping`; kept here so that
#: importing the config never imports torch).
LAYER_MAPPINGS = ("uniform", "top", "bottom")

STAGES = ("intermediate", "prediction", "both")

#: Fields that may differ between the original run and its ``--resume`` invocation.
RESUME_MUTABLE = frozenset({"resume", "overwrite", "cpu", "eval_batch_size"})

T = TypeVar("T", bound="_Base")


@dataclass
class _Base:
    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the settings (JSON/TOML serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Build from a dict; unknown keys are an :class:`InputError` naming them (typos must not pass silently)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown {cls.__name__} setting(s) {unknown}; known: {sorted(names)}")
        return cls(**{k: v for k, v in data.items()})

    def _check_common(self) -> None:
        if self.resume and self.overwrite:
            raise InputError("give --resume (continue the run in --out) or --overwrite (discard it), not both")
        positive = ["train_batch_size", "max_seq_length", "eval_batch_size"]
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= float(self.warmup_proportion) < 1.0:
            raise InputError(f"--warmup-proportion must be in [0, 1), got {self.warmup_proportion}")
        if float(self.weight_decay) < 0:
            raise InputError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.checkpoint_steps is not None and int(self.checkpoint_steps) < 1:
            raise InputError(f"--checkpoint-steps must be >= 1, got {self.checkpoint_steps}")
        if self.eval_step is not None and int(self.eval_step) < 1:
            raise InputError(f"--eval-step must be >= 1, got {self.eval_step}")
        if int(self.max_seq_length) > 512:
            raise InputError(f"--max-seq-length must be <= 512, got {self.max_seq_length}")
        self._check_columns()

    def _check_columns(self) -> None:
        """``columns`` (custom data) is required with ``task="custom"`` and refused with a GLUE task."""
        from confdistill.data.tabular import CUSTOM_TASK, TableColumns

        columns = getattr(self, "columns", None)
        custom = str(self.task).strip().lower() == CUSTOM_TASK
        if columns is not None and not custom:
            raise InputError(f"--text-column/--label-column (columns) apply to --task {CUSTOM_TASK} only, "
                             f"not to --task {self.task}")
        if not custom:
            return
        if not isinstance(columns, dict) or not columns.get("text") or not columns.get("label"):
            raise InputError(f"--task {CUSTOM_TASK} needs --text-column and --label-column "
                             f"(columns = {{text = ..., label = ...}}), got columns = {columns!r}")
        try:
            parsed = TableColumns.from_mapping(columns)
        except InputError as exc:
            raise InputError(f"columns: {exc}") from None
        names = parsed.label_names
        if names is not None and (len(set(names)) != len(names) or len(names) < 2):
            raise InputError(f"--label-names must list at least two distinct classes, got {list(names)}")
        if names is not None and parsed.regression:
            raise InputError("--label-names does not apply with --regression")


@dataclass
class DistillConfig(_Base):
    """TinyBERT task distillation settings (names and defaults of TinyBERT's ``task_distill.py``).

    stage: "intermediate" (stage 1: attention scores + hidden states), "prediction" (stage 2:
    soft cross-entropy on logits), or "both" (stage 1 then stage 2, see docs/method.md).
    learning_rate / num_train_epochs apply to single-stage runs; for ``stage="both"`` the
    ``intermediate_*`` / ``prediction_*`` values apply (TinyBERT ran the stages as two commands:
    stage 1 with 10 epochs at 5e-5 on augmented data, stage 2 with 3 epochs at 3e-5).
    alpha: weight of the hard-label CE in stage 2, loss = (1−α)·soft + α·hard.
    lambda_conf: weight of :func:`~confdistill.distillation.losses.confidence_gap_loss` (0 = off).
    layer_mapping: stage 1's student→teacher layer rule, "uniform" (TinyBERT), "top" or "bottom".
    columns: with ``task="custom"``, the columns of ``DATA_DIR/<split>.{csv,tsv,jsonl}`` as plain data
    ``{"text", "label", "text_pair", "label_names", "regression"}`` (see ``TableColumns``).
    checkpoint_steps: None = checkpoint at epoch ends only. eval_step: stage 2 evaluation period in steps.
    resume / overwrite: continue the run in ``out`` / discard what ``out`` holds (an existing
    non-empty ``out`` is refused without one of them).
    """

    teacher: str = ""
    student: str = ""
    task: str = ""
    data_dir: str = ""
    out: str = ""
    stage: str = "prediction"
    learning_rate: float = 5e-5
    num_train_epochs: float = 3.0
    train_batch_size: int = 32
    eval_batch_size: int = 64
    max_seq_length: int = 128
    temperature: float = 1.0
    alpha: float = 0.0
    lambda_conf: float = 0.0
    warmup_proportion: float = 0.1
    weight_decay: float = 0.01
    seed: int = 42
    eval_step: int | None = 50
    checkpoint_steps: int | None = 500
    resume: bool = False
    overwrite: bool = False
    aug_train: str | None = None
    intermediate_epochs: float = 10.0
    intermediate_lr: float = 5e-5
    prediction_epochs: float = 3.0
    prediction_lr: float = 3e-5
    eval_split: str | None = None
    group_by_length: bool = True
    cpu: bool = False
    layer_mapping: str = "uniform"
    columns: dict[str, Any] | None = None

    def validate(self) -> None:
        """Raise :class:`InputError` on settings that cannot work (before anything is written)."""
        for name in ("teacher", "student", "task", "data_dir", "out"):
            if not getattr(self, name):
                raise InputError(f"--{name.replace('_', '-')} is required")
        if self.stage not in STAGES:
            raise InputError(f"--stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if float(self.temperature) <= 0:
            raise InputError(f"--temperature must be > 0, got {self.temperature}")
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise InputError(f"--alpha must be in [0, 1], got {self.alpha}")
        if float(self.lambda_conf) < 0:
            raise InputError(f"--lambda-conf must be >= 0, got {self.lambda_conf}")
        if self.layer_mapping not in LAYER_MAPPINGS:
            raise InputError(f"--layer-mapping must be one of {', '.join(LAYER_MAPPINGS)}, got {self.layer_mapping!r}")
        for name in ("learning_rate", "intermediate_lr", "prediction_lr"):
            if float(getattr(self, name)) <= 0:
                raise InputError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        for name in ("num_train_epochs", "intermediate_epochs", "prediction_epochs"):
            if float(getattr(self, name)) <= 0:
                raise InputError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        self._check_common()


@dataclass
class FinetuneConfig(_Base):
    """Teacher fine-tuning (hard-label cross-entropy, or MSE for regression) with the same loop.

    Defaults follow BERT's GLUE recipe as TinyBERT's teachers were trained: lr 2e-5, 3 epochs, batch 32.
    columns: custom data's columns with ``task="custom"``, as in :class:`DistillConfig`.
    """

    model: str = ""
    task: str = ""
    data_dir: str = ""
    out: str = ""
    learning_rate: float = 2e-5
    num_train_epochs: float = 3.0
    train_batch_size: int = 32
    eval_batch_size: int = 64
    max_seq_length: int = 128
    warmup_proportion: float = 0.1
    weight_decay: float = 0.01
    seed: int = 42
    eval_step: int | None = 200
    checkpoint_steps: int | None = 500
    resume: bool = False
    overwrite: bool = False
    aug_train: str | None = None
    eval_split: str | None = None
    group_by_length: bool = True
    cpu: bool = False
    columns: dict[str, Any] | None = None

    def validate(self) -> None:
        """Raise :class:`InputError` on settings that cannot work (before anything is written)."""
        for name in ("model", "task", "data_dir", "out"):
            if not getattr(self, name):
                raise InputError(f"--{name.replace('_', '-')} is required")
        if float(self.learning_rate) <= 0:
            raise InputError(f"--learning-rate must be > 0, got {self.learning_rate}")
        if float(self.num_train_epochs) <= 0:
            raise InputError(f"--epochs must be > 0, got {self.num_train_epochs}")
        self._check_common()
