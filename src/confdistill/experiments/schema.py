"""The structure of an experiment file, as pydantic v2 models: every table, its keys and their types.

:mod:`confdistill.experiments.config` validates a parsed TOML document against :class:`ExperimentFile`
first (types, ranges, unknown keys, each table on its own), then merges the tables (a task's teacher
over ``[teacher]``, a student's stage tables over the file-level ones…) into the plain dataclasses
the runner uses. Keeping the two apart is why a key is reported where the user wrote it: an error in
``[[students]]`` says ``students[1].layers``, one in ``[[tasks.SST-2.students]]`` says
``tasks.SST-2.students[1].layers``.

The stage tables (``[stage1]``, ``[stage2]``, ``[finetune]`` and those of a teacher or a student)
are the training settings' own models (:data:`confdistill.distillation.settings.STAGE_SETTINGS`:
:class:`~confdistill.distillation.settings.TrainConfig` plus the stage's loss and run extras), so a
range is checked by the one rule the trainer and the κ bound use. Only the keys a table gives are
kept (``model_fields_set``): the defaults stay the trainer's, per stage.

The values a key may hold (strings, positive integers, κ, the stage lists…) and the wording of
an error are :mod:`confdistill.experiments.values`.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)
from pydantic_core import PydanticCustomError

from confdistill.distillation.general_config import EmbeddingInit, EncoderInit
from confdistill.distillation.settings import (
    RunExtras,
    Settings,
    Stage1Loss,
    Stage2Loss,
    TrainConfig,
)
from confdistill.experiments import values
from confdistill.experiments.values import (
    STAGE_KEYS,
    AtLeastEight,
    AtLeastTwo,
    Bool,
    Compress,
    Kappa,
    Name,
    NonNegativeInt,
    PositiveInt,
    Str,
    show,
)

#: Fields of DistillConfig / FinetuneConfig that the runner sets itself (paths, stage, seed, the
#: custom task's columns): a user setting them in a stage table would silently fight the runner.
RUNNER_OWNED_FIELDS = frozenset({
    "teacher", "teacher_dir", "student", "student_dir", "model", "model_dir", "task", "data_dir", "out",
    "output_dir", "out_dir", "stage", "resume", "overwrite", "seed", "eval_split", "columns",
})





# ----------------------------------------------------------------------------- tables


def _key_error(key: str, message: str) -> PydanticCustomError:
    """An error about one key of the table being validated (:func:`describe` appends the key)."""
    return PydanticCustomError("table_key", message, {"key": key})


class Table(BaseModel):
    """A TOML table: unknown keys refused, named with the keys the table does take."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def keys(cls) -> list[str]:
        return sorted(f.alias or name for name, f in cls.model_fields.items())

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise PydanticCustomError("table", "expected a table, got {got}", {"got": show(data)})
        allowed = set(cls.keys())
        for key in data:
            if key not in allowed:
                raise _key_error(key, f"unknown key (expected one of: {', '.join(sorted(allowed))})")
        return data


class _StageTable(Settings):
    """Base of the stage tables: runner-owned keys refused, ``"none"`` (or false) switches an
    optional setting off (TOML has no null)."""

    _order: tuple[str, ...] = PrivateAttr(default=())
    #: the keys this table leaves to the runner (a table that declares one of them takes it itself)
    runner_owned: ClassVar[frozenset[str]] = RUNNER_OWNED_FIELDS

    @model_validator(mode="wrap")
    @classmethod
    def _stage_keys(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise PydanticCustomError("table", "expected a table, got {got}", {"got": show(data)})
        known = sorted(set(cls.model_fields) - cls.runner_owned)
        data = dict(data)
        for key, value in data.items():
            if key in cls.runner_owned:
                raise _key_error(key, "is set by the runner, not by the experiment file")
            if key not in cls.model_fields:
                raise _key_error(key, f"unknown key (expected one of: {', '.join(known)})")
            optional = type(None) in typing.get_args(cls.model_fields[key].annotation)
            if optional and (value == "none" or value is False):
                data[key] = None
        table = handler(data)
        table._order = tuple(data)  # the file's order: a table written back reads the same
        return table

    def given(self) -> dict[str, Any]:
        """The keys the file gave, in its order, with their validated values (the trainer keeps its
        defaults for the others)."""
        return {name: getattr(self, name) for name in self._order}


class Stage1Table(_StageTable, TrainConfig, Stage1Loss, RunExtras):
    """``[stage1]``: TinyBERT's intermediate-layer distillation (the loop + the layer mapping)."""


class Stage2Table(_StageTable, TrainConfig, Stage2Loss, RunExtras):
    """``[stage2]``: TinyBERT's prediction-layer distillation (the loop + T, α, λ)."""


class FinetuneTable(_StageTable, TrainConfig, RunExtras):
    """``[finetune]``: the teacher's fine-tuning (the loop only)."""


#: The compressed forms a model of an experiment can get (``compress = ["onnx-int8"]``).


class GeneralTable(_StageTable, TrainConfig, Stage1Loss):
    """``general = {…}`` of a student: TinyBERT general distillation of a fresh student on unlabeled
    text (``confdistill general-distill``), before the task stages."""

    # its own teacher (the model distilled from) is the file's to give, not the runner's
    runner_owned: ClassVar[frozenset[str]] = RUNNER_OWNED_FIELDS - {"teacher"}

    corpus: Annotated[tuple[str, ...], BeforeValidator(values.corpus)] = ()
    text_column: str | None = None
    layers: int = 0
    hidden: int = 0
    heads: int = 0
    intermediate: int = 0
    embeddings: EmbeddingInit = "teacher"
    encoder_init: EncoderInit = "fresh"
    #: the model distilled from (default: the task teacher's encoder, else its directory)
    teacher: str | None = None
    shuffle_buffer: int = 10_000

    @model_validator(mode="after")
    def _required(self) -> GeneralTable:
        for key in ("layers", "hidden", "heads", "intermediate"):
            if getattr(self, key) < 1:
                raise _key_error(key, "missing or < 1 (the fresh student's size)")
        if not self.corpus:
            raise _key_error("corpus", "missing (the unlabeled text files)")
        if self.hidden % self.heads:
            raise _key_error("heads", f"expected a divisor of hidden = {self.hidden}, got {self.heads}")
        return self


class TeacherTable(Table):
    dir: Str | None = None
    encoder: Str | None = None
    finetune: FinetuneTable | None = None
    compress: Compress = ()


class StudentTable(Table):
    name: Name | None = None
    source: Str | None = Field(None, alias="from")
    layers: PositiveInt | None = None
    hidden: PositiveInt | None = None
    intermediate: PositiveInt | None = None
    heads: PositiveInt | None = None
    dir: Str | None = None
    stages: Annotated[tuple[str, ...], BeforeValidator(values.stages)] = STAGE_KEYS
    #: the same choice in distill's words (``stage = "prediction"`` = ``stages = ["stage2"]``)
    stage: Annotated[str, BeforeValidator(values.choice(*values.STAGE_WORDS))] | None = None
    stage1: Stage1Table | None = None
    stage2: Stage2Table | None = None
    analyse: Annotated[str, BeforeValidator(values.choice("final", "best"))] = "final"
    general: GeneralTable | None = None
    compress: Compress = ()

    @model_validator(mode="after")
    def _shape(self) -> StudentTable:
        if self.stage is not None and "stages" in self.model_fields_set:
            raise _key_error("stage", "cannot be combined with stages (give one of them)")
        if self.general is not None:
            for key, attr in (("from", "source"), ("layers", "layers"), ("hidden", "hidden"),
                              ("intermediate", "intermediate"), ("heads", "heads"), ("dir", "dir")):
                if attr in self.model_fields_set:
                    raise _key_error(key, "cannot be combined with general (general distillation makes the student)")
        elif self.dir is not None:
            for key, attr in (("from", "source"), ("layers", "layers"), ("hidden", "hidden"),
                              ("intermediate", "intermediate"), ("heads", "heads")):
                if attr in self.model_fields_set:
                    raise _key_error(key, "cannot be combined with dir (the directory is used as is)")
        elif self.layers is None:
            raise _key_error("layers", "missing (how many layers the student keeps), or give dir")
        if self.hidden is not None and self.heads is not None and self.hidden % self.heads:
            raise _key_error("heads", f"expected a divisor of hidden = {self.hidden}, got {self.heads}")
        return self


#: The keys of a task table that describe a custom task's columns (``task = "custom"``).
COLUMN_KEYS = ("text_column", "text_pair_column", "label_column", "label_names", "regression")


class TaskTable(Table):
    task: Str | None = None
    data_dir: Str | None = None
    train_split: Name | None = None
    dev_split: Name | None = None
    max_train_examples: PositiveInt | None = None
    max_dev_examples: PositiveInt | None = None
    kappa: Kappa | None = None
    teacher: TeacherTable | None = None
    students: list[StudentTable] | None = None
    # custom data (task = "custom"): DATA_DIR/{train,dev}.{csv,tsv,jsonl} with these columns
    text_column: Str | None = None
    text_pair_column: Str | None = None
    label_column: Str | None = None
    label_names: Annotated[tuple[str, ...], BeforeValidator(values.names)] | None = None
    regression: Bool | None = None


class ExperimentTable(Table):
    name: Str | None = None
    output_dir: Str | None = None
    data_dir: Str | None = None
    seed: NonNegativeInt = 42
    kappa: Kappa | None = None
    max_length: AtLeastEight = 128
    predict_batch_size: PositiveInt = 64
    train_split: Name = "train"
    dev_split: Name = "dev"


class AnalysisTable(Table):
    threshold: Annotated[float, BeforeValidator(values.threshold)] = 0.9
    delta: Annotated[str, BeforeValidator(values.choice("auto", "p0", "label"))] = "auto"
    n_bootstrap: NonNegativeInt = 1000
    slice_by: Annotated[tuple[str, ...], BeforeValidator(values.name_list)] = ()


class FootprintTable(Table):
    enabled: Bool = True
    seq_len: AtLeastTwo = 64
    batch_sizes: Annotated[tuple[int, ...], BeforeValidator(values.positive_list)] = (1, 32)
    repeats: PositiveInt = 5


class ExperimentFile(Table):
    """The whole document. Stage tables at this level are the defaults of every student's."""

    experiment: ExperimentTable = ExperimentTable()
    finetune: FinetuneTable | None = None
    stage1: Stage1Table | None = None
    stage2: Stage2Table | None = None
    teacher: TeacherTable | None = None
    students: list[StudentTable] | None = None
    tasks: dict[Name, TaskTable] | None = None   # the key names the folder OUT/<task>/
    analysis: AnalysisTable = AnalysisTable()
    footprint: FootprintTable = FootprintTable()
