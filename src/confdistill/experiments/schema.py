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

:func:`describe` turns a :class:`pydantic.ValidationError` into ``key.path: message`` parts, every
problem of the file at once.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
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
    error_message,
)

#: Fields of DistillConfig / FinetuneConfig that the runner sets itself (paths, stage, seed, the
#: custom task's columns): a user setting them in a stage table would silently fight the runner.
RUNNER_OWNED_FIELDS = frozenset({
    "teacher", "teacher_dir", "student", "student_dir", "model", "model_dir", "task", "data_dir", "out",
    "output_dir", "out_dir", "stage", "resume", "overwrite", "seed", "eval_split", "columns",
})

STAGE_KEYS = ("stage1", "stage2")


def show(value: Any) -> str:
    """A value as the user wrote it in TOML: strings in double quotes, a table as "a table"."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a table"
    return repr(value)


# ----------------------------------------------------------------------------- value types


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {show(value)}")
    return value


def _integer(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise ValueError(f"expected {kind}, got {show(value)}")
        return value
    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {show(value)}")
    return value


def _tolerance(value: Any) -> float:
    """``kappa``: the user's tolerance on σ, a finite number > 0 (the β bound is never one)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"expected a positive number, got {show(value)}")
    if value == math.inf:
        raise ValueError("expected a finite tolerance on σ > 0 (e.g. 0.05), got inf")
    return float(value)


def _threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"expected a number in (0, 1], got {show(value)}")
    return float(value)


def _choice(*choices: str) -> Callable[[Any], str]:
    shown = ", ".join(f'"{c}"' for c in choices[:-1]) + f' or "{choices[-1]}"'

    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected {shown}, got {show(value)}")
        return value
    return check


def _positive_list(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or not value or not all(
            isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in value):
        raise ValueError(f"expected a list of positive integers, got {show(value)}")
    return tuple(value)


def _stages(value: Any) -> tuple[str, ...]:
    if (not isinstance(value, list | tuple) or not value or any(x not in STAGE_KEYS for x in value)
            or len(set(value)) != len(value)):
        raise ValueError(f'expected a list drawn from ["stage1", "stage2"], got {show(value)}')
    return tuple(x for x in STAGE_KEYS if x in value)  # always in pipeline order


def _names(value: Any) -> tuple[str, ...]:
    if (not isinstance(value, list | tuple) or len(value) < 2
            or not all(isinstance(n, str) and n.strip() for n in value) or len(set(value)) != len(value)):
        raise ValueError(f"expected a list of at least two distinct class names, got {show(value)}")
    return tuple(value)


Str = Annotated[str, BeforeValidator(_string)]
Bool = Annotated[bool, BeforeValidator(_boolean)]
PositiveInt = Annotated[int, BeforeValidator(_integer(1))]
NonNegativeInt = Annotated[int, BeforeValidator(_integer(0))]
AtLeastTwo = Annotated[int, BeforeValidator(_integer(2))]
AtLeastEight = Annotated[int, BeforeValidator(_integer(8))]
Kappa = Annotated[float, BeforeValidator(_tolerance)]


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

    @model_validator(mode="wrap")
    @classmethod
    def _stage_keys(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise PydanticCustomError("table", "expected a table, got {got}", {"got": show(data)})
        known = sorted(set(cls.model_fields) - RUNNER_OWNED_FIELDS)
        data = dict(data)
        for key, value in data.items():
            if key in RUNNER_OWNED_FIELDS:
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
COMPRESS_FORMS = ("onnx", "onnx-int8")


def _compress(value: Any) -> tuple[str, ...]:
    if (not isinstance(value, list) or any(v not in COMPRESS_FORMS for v in value)
            or len(set(value)) != len(value)):
        raise ValueError(f"expected a list drawn from {list(COMPRESS_FORMS)}, got {show(value)}")
    return tuple(value)


Compress = Annotated[tuple[str, ...], BeforeValidator(_compress)]


def _corpus(value: Any) -> tuple[str, ...]:
    files = [value] if isinstance(value, str) else value
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f.strip() for f in files):
        raise ValueError(f"expected a file name or a non-empty list of file names, got {show(value)}")
    return tuple(files)


class GeneralTable(_StageTable, TrainConfig, Stage1Loss):
    """``general = {…}`` of a student: TinyBERT general distillation of a fresh student on unlabeled
    text (``confdistill general-distill``), before the task stages."""

    corpus: Annotated[tuple[str, ...], BeforeValidator(_corpus)] = ()
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
    name: Str | None = None
    source: Str | None = Field(None, alias="from")
    layers: PositiveInt | None = None
    hidden: PositiveInt | None = None
    intermediate: PositiveInt | None = None
    heads: PositiveInt | None = None
    dir: Str | None = None
    stages: Annotated[tuple[str, ...], BeforeValidator(_stages)] = STAGE_KEYS
    stage1: Stage1Table | None = None
    stage2: Stage2Table | None = None
    analyse: Annotated[str, BeforeValidator(_choice("final", "best"))] = "final"
    general: GeneralTable | None = None
    compress: Compress = ()

    @model_validator(mode="after")
    def _shape(self) -> StudentTable:
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
        if self.name is not None and not all(c.isalnum() or c in "-_." for c in self.name):
            raise _key_error("name", f"expected letters, digits, '-', '_' or '.', got {show(self.name)}")
        return self


#: The keys of a task table that describe a custom task's columns (``task = "custom"``).
COLUMN_KEYS = ("text_column", "text_pair_column", "label_column", "label_names", "regression")


class TaskTable(Table):
    task: Str | None = None
    data_dir: Str | None = None
    train_split: Str | None = None
    dev_split: Str | None = None
    max_train_examples: PositiveInt | None = None
    max_dev_examples: PositiveInt | None = None
    kappa: Kappa | None = None
    teacher: TeacherTable | None = None
    students: list[StudentTable] | None = None
    # custom data (task = "custom"): DATA_DIR/{train,dev}.{csv,tsv,jsonl} with these columns
    text_column: Str | None = None
    text_pair_column: Str | None = None
    label_column: Str | None = None
    label_names: Annotated[tuple[str, ...], BeforeValidator(_names)] | None = None
    regression: Bool | None = None


class ExperimentTable(Table):
    name: Str | None = None
    output_dir: Str | None = None
    data_dir: Str | None = None
    seed: NonNegativeInt = 42
    kappa: Kappa | None = None
    max_length: AtLeastEight = 128
    predict_batch_size: PositiveInt = 64
    train_split: Str = "train"
    dev_split: Str = "dev"


class AnalysisTable(Table):
    threshold: Annotated[float, BeforeValidator(_threshold)] = 0.9
    delta: Annotated[str, BeforeValidator(_choice("auto", "p0", "label"))] = "auto"
    n_bootstrap: NonNegativeInt = 1000


class FootprintTable(Table):
    enabled: Bool = True
    seq_len: AtLeastTwo = 64
    batch_sizes: Annotated[tuple[int, ...], BeforeValidator(_positive_list)] = (1, 32)
    repeats: PositiveInt = 5


class ExperimentFile(Table):
    """The whole document. Stage tables at this level are the defaults of every student's."""

    experiment: ExperimentTable = ExperimentTable()
    finetune: FinetuneTable | None = None
    stage1: Stage1Table | None = None
    stage2: Stage2Table | None = None
    teacher: TeacherTable | None = None
    students: list[StudentTable] | None = None
    tasks: dict[str, TaskTable] | None = None
    analysis: AnalysisTable = AnalysisTable()
    footprint: FootprintTable = FootprintTable()


# ----------------------------------------------------------------------------- errors


def describe(exc: ValidationError) -> list[str]:
    """``key.path: message`` for every error pydantic found, in the order it found them."""
    parts = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in _TAGS))]
        ctx = err.get("ctx") or {}
        if err["type"] == "table_key":
            loc.append(ctx["key"])
        text = ""
        for p in loc:
            text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
        parts.append(f"{text or '(file)'}: {_message(err)}")
    return parts


# Union / strictness tags pydantic may put in an error's location.
_TAGS = frozenset({"int", "float", "none", "bool", "str", "constrained-int", "constrained-float",
                   "lax-or-strict", "function-after", "function-before"})


def _message(err: Any) -> str:
    """The settings model's wording (:func:`confdistill.distillation.settings.error_message`), plus
    the two shapes only a TOML table has: lists and sub-tables."""
    kind, value = err["type"], err.get("input")
    if kind in ("list_type", "tuple_type"):
        return f"expected a list, got {show(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a table, got {show(value)}"
    return error_message(err)
