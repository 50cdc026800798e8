"""The commands' settings: :class:`DistillConfig` (TinyBERT's names and defaults) and :class:`FinetuneConfig`.

Both are pydantic models made of the typed groups of :mod:`confdistill.distillation.settings`
(the loop's :class:`~.settings.TrainConfig`, the losses' :class:`~.settings.Stage1Loss` /
:class:`~.settings.Stage2Loss`) plus where the run reads and writes. A value out of range is an
:class:`~confdistill.errors.InputError` naming the option as soon as the settings are built;
:meth:`validate` adds what needs several fields (required paths, custom-data columns, ``--resume``
with ``--overwrite``). ``from_dict(to_dict(c)) == c``, so a run's settings are stored in
``run.json`` and compared on ``--resume``.

Stage defaults do not depend on whether a stage runs alone: stage 1 trains 10 epochs at 5e-5
(TinyBERT's intermediate-layer distillation), stage 2 3 epochs at 3e-5 (its prediction-layer
distillation), with ``stage="both"`` (the default: TinyBERT's two stages) as alone.
``learning_rate`` / ``num_train_epochs`` (``--learning-rate`` / ``--epochs``) override them for
every stage that runs.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from confdistill.distillation.settings import (
    LAYER_MAPPINGS,
    AtLeastOne,
    Device,
    PathText,
    Positive,
    Settings,
    Stage1Loss,
    Stage2Loss,
    TrainConfig,
    settings_error,
)
from confdistill.errors import InputError, setting_name

__all__ = ["LAYER_MAPPINGS", "RESUME_MUTABLE", "STAGES", "DistillConfig", "FinetuneConfig"]

STAGES = ("intermediate", "prediction", "both")

#: Fields that may differ between the original run and its ``--resume`` invocation.
RESUME_MUTABLE = frozenset({"resume", "overwrite", "device", "eval_batch_size"})

T = TypeVar("T", bound="_RunSettings")


class _RunSettings(Settings):
    """Where a run reads and writes, and how it starts (fields common to both commands)."""

    task: str = ""
    data_dir: PathText = ""
    out: PathText = ""
    resume: bool = False
    overwrite: bool = False
    aug_train: PathText | None = None
    eval_split: str | None = None
    device: Device = "auto"
    #: The metric that picks ``OUT/best`` (default: the task's, as TinyBERT's task_distill.py).
    best_metric: str | None = None
    #: custom data (``task="custom"``): ``{"text", "label", "text_pair", "label_names", "regression"}``.
    columns: dict[str, Any] | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise settings_error(exc) from None

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Build from a dict; unknown keys are an :class:`InputError` naming them (typos must not pass silently)."""
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            raise InputError(f"unknown {cls.__name__} setting(s) {unknown}; known: {sorted(cls.model_fields)}")
        return cls(**data)

    def _check_common(self, required: tuple[str, ...]) -> None:
        for name in required:
            if not getattr(self, name):
                raise InputError(f"{setting_name(name)} is required")
        if self.resume and self.overwrite:
            raise InputError(f"give {setting_name('resume')} (continue the run in {setting_name('out')}) or "
                             f"{setting_name('overwrite')} (discard it), not both")
        if self.best_metric is not None and self.task:
            from confdistill.data import get_task

            with_task = self.task.strip().lower() != "custom"
            if with_task and self.best_metric not in get_task(self.task).metric_names:
                raise InputError(f"{setting_name('best_metric')} must be one of {', '.join(get_task(self.task).metric_names)} "
                                 f"for {self.task}, got {self.best_metric!r}")
        self._check_columns()

    def _check_columns(self) -> None:
        """``columns`` (custom data) is required with ``task="custom"`` and refused with a GLUE task."""
        from confdistill.data.tabular import CUSTOM_TASK, TableColumns

        custom = str(self.task).strip().lower() == CUSTOM_TASK
        if self.columns is not None and not custom:
            raise InputError(f"{setting_name('columns', flag='--text-column/--label-column')} apply to "
                             f"{setting_name('task')} {CUSTOM_TASK} only, not to {setting_name('task')} {self.task}")
        if not custom:
            return
        if not isinstance(self.columns, dict) or not self.columns.get("text") or not self.columns.get("label"):
            raise InputError(f"{setting_name('task')} {CUSTOM_TASK} needs "
                             f"{setting_name('columns', flag='--text-column and --label-column')} "
                             f"(columns = {{text = ..., label = ...}}), got columns = {self.columns!r}")
        try:
            parsed = TableColumns.from_mapping(self.columns)
        except InputError as exc:
            raise InputError(f"columns: {exc}") from None
        names = parsed.label_names
        if names is not None and (len(set(names)) != len(names) or len(names) < 2):
            raise InputError(f"{setting_name('columns.label_names', flag='--label-names')} must list at least "
                             f"two distinct classes, got {list(names)}")
        if names is not None and parsed.regression:
            raise InputError(f"{setting_name('columns.label_names', flag='--label-names')} does not apply with "
                             f"{setting_name('columns.regression', flag='--regression')}")

    def loop(self, **resolved: Any) -> TrainConfig:
        """This run's loop settings as a :class:`TrainConfig` (``resolved`` overrides, e.g. a stage's rate)."""
        return TrainConfig(**{**TrainConfig.pick(self.to_dict()), **resolved})


class DistillConfig(_RunSettings, TrainConfig, Stage1Loss, Stage2Loss):
    """TinyBERT task distillation settings (names and defaults of TinyBERT's ``task_distill.py``).

    stage: "both" (stage 1 then stage 2, TinyBERT's recipe; the default), "intermediate" (stage 1:
    attention scores + hidden states) or "prediction" (stage 2: soft cross-entropy on logits).
    intermediate_* / prediction_*: each stage's epochs and rate, alone or in "both" (TinyBERT: stage
    1 with 10 epochs at 5e-5, stage 2 with 3 epochs at 3e-5). learning_rate / num_train_epochs:
    None, or an override for every stage that runs. alpha: weight of the hard-label CE in stage 2,
    loss = (1−α)·soft + α·hard (TinyBERT itself has no α: α = 0). lambda_conf: weight of
    :func:`~confdistill.distillation.losses.confidence_gap_loss` (0 = off). eval_step: stage 2's
    evaluation period in steps. resume / overwrite: continue the run in ``out`` / discard what
    ``out`` holds (an existing non-empty ``out`` is refused without one of them).
    """

    teacher: PathText = ""
    student: PathText = ""
    stage: Literal["intermediate", "prediction", "both"] = "both"
    learning_rate: Positive | None = None          # type: ignore[assignment]
    num_train_epochs: Positive | None = None       # type: ignore[assignment]
    intermediate_epochs: Positive = 10.0
    intermediate_lr: Positive = 5e-5
    prediction_epochs: Positive = 3.0
    prediction_lr: Positive = 3e-5
    #: Stage 2's model that is predicted and analysed, and that β is measured on: the last step's
    #: ("final") or the evaluation-best ("best", by ``best_metric``).
    analyse: Literal["final", "best"] = "final"

    def validate(self) -> None:
        """Raise :class:`InputError` on settings that cannot work together (before anything is written)."""
        self._check_common(("teacher", "student", "task", "data_dir", "out"))

    def stage_loop(self, kind: str) -> TrainConfig:
        """The loop settings of stage ``kind`` ("intermediate" | "prediction"): its own rate and epochs."""
        lr = self.intermediate_lr if kind == "intermediate" else self.prediction_lr
        epochs = self.intermediate_epochs if kind == "intermediate" else self.prediction_epochs
        lr = self.learning_rate if self.learning_rate is not None else lr
        epochs = self.num_train_epochs if self.num_train_epochs is not None else epochs
        return self.loop(learning_rate=lr, num_train_epochs=epochs)

    @property
    def stage1_settings(self) -> Stage1Loss:
        return Stage1Loss(**Stage1Loss.pick(self.to_dict()))

    @property
    def stage2_settings(self) -> Stage2Loss:
        return Stage2Loss(**Stage2Loss.pick(self.to_dict()))


class FinetuneConfig(_RunSettings, TrainConfig):
    """Teacher fine-tuning (hard-label cross-entropy, or MSE for regression) with the same loop.

    Defaults follow BERT's GLUE recipe as TinyBERT's teachers were trained: lr 2e-5, 3 epochs, batch 32.
    columns: custom data's columns with ``task="custom"``, as in :class:`DistillConfig`.
    num_labels: ``--num-labels K``: re-head a classifier trained for another number of classes.
    """

    model: PathText = ""
    learning_rate: Positive = 2e-5
    eval_step: AtLeastOne | None = 200
    #: the classifier's width when it replaces a head trained for another number of classes (the
    #: task's number of classes; None: the model's head must already have it)
    num_labels: AtLeastOne | None = None

    def validate(self) -> None:
        """Raise :class:`InputError` on settings that cannot work together (before anything is written)."""
        self._check_common(("model", "task", "data_dir", "out"))
