"""An experiment as plain data: the dataclasses :mod:`confdistill.experiments.config` builds from a
file and the plan and runner read (teacher, students, tasks, footprint and analysis settings)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confdistill.experiments.values import STAGE_KEYS

#: The stages a student goes through, in order. "stage1" = intermediate layers (attention scores
#: and hidden states), "stage2" = prediction layer (soft cross-entropy on logits).
STAGES = STAGE_KEYS


@dataclass
class TeacherSpec:
    """Where a task's teacher comes from: a ready directory, or an encoder to fine-tune."""

    key: str  # TOML key path, for messages ("tasks.SST-2.teacher")
    dir: str | None = None  # fine-tuned teacher (path or package reference)
    encoder: str | None = None  # pretrained encoder to fine-tune (path or package reference)
    finetune: dict[str, Any] = field(default_factory=dict)  # FinetuneConfig fields
    compress: tuple[str, ...] = ()  # compressed forms, each predicted and analysed against the teacher


@dataclass
class StudentSpec:
    """One student: how its initial weights are made, then the stages' hyper-parameters.

    - ``dir`` given: that directory is the initial student (e.g. a general TinyBERT).
    - otherwise ``make_student(from, layers, hidden, intermediate, heads)``: ``from`` is
      ``"teacher"`` (take ``layers`` layers of this task's teacher) or another model; giving any of
      ``hidden``/``intermediate``/``heads`` asks for a fresh (randomly initialised) configuration.
    """

    key: str  # "tasks.SST-2.students[0]"
    name: str
    source: str = "teacher"  # the TOML key is ``from``
    layers: int | None = None
    hidden: int | None = None
    intermediate: int | None = None
    heads: int | None = None
    dir: str | None = None
    stages: tuple[str, ...] = STAGES
    stage1: dict[str, Any] = field(default_factory=dict)  # DistillConfig fields for stage 1
    stage2: dict[str, Any] = field(default_factory=dict)  # DistillConfig fields for stage 2
    #: stage 2's model that is predicted and analysed (β measured on it): "final" or "best"
    analyse: str = "final"
    #: general distillation first (``general = {corpus, layers, hidden, heads, intermediate, …}``):
    #: GeneralConfig fields, corpus paths resolved; the student is then its output
    general: dict[str, Any] | None = None
    #: compressed forms of the trained student, each predicted and analysed against the teacher
    compress: tuple[str, ...] = ()
    #: a compressed form (see :func:`analysed_students`): the model it was made from, and how
    compressed_from: str | None = None
    form: str | None = None


@dataclass
class TaskConfig:
    """One task of the experiment."""

    key: str  # the table name under [tasks], used in output paths and step names
    task: str  # the GLUE task name given to confdistill.data (defaults to ``key``), or "custom"
    data_dir: Path  # GLUE root (DIR/TASK/split.tsv) or the task folder itself; custom: DIR/split.csv…
    teacher: TeacherSpec
    students: list[StudentSpec]
    train_split: str = "train"
    dev_split: str = "dev"
    max_train_examples: int | None = None  # seeded subset of the train split (file order kept)
    max_dev_examples: int | None = None
    # The user's tolerance on σ (> 0; defaults to the experiment's): every split is judged against it.
    # None -> no φ_cnf verdict (the stage-2 run.json β only gives the bound check, never a verdict).
    kappa: float | None = None
    #: task = "custom": TableColumns.to_dict() (text, label, text_pair, label_names, regression);
    #: None for a GLUE task. The plan fills in label_names from the train file when not given.
    columns: dict[str, Any] | None = None

    @property
    def is_custom(self) -> bool:
        return self.columns is not None


@dataclass
class FootprintSettings:
    """What distillation bought: CPU latency measurement settings (see footprint.py)."""

    enabled: bool = True
    seq_len: int = 64  # tokens per example, fixed so teacher and student see the same work
    batch_sizes: tuple[int, ...] = (1, 32)
    repeats: int = 5  # timed runs after warm-up; the median is reported


@dataclass
class AnalysisSettings:
    """Settings passed to analyze_pair."""

    threshold: float = 0.9
    delta: str = "auto"  # "auto" = p0 for 2 classes, gold-label probability for more
    n_bootstrap: int = 1000
    slice_by: tuple[str, ...] = ()  # "label", "length" or column names: figures per slice (properties/slices.py)


@dataclass
class ExperimentConfig:
    """A whole experiment, as plain data."""

    name: str
    source: str  # the file it was read from (or "<demo>"), for messages
    output_dir: Path
    tasks: list[TaskConfig]
    seed: int = 42
    kappa: float | None = None  # the tolerance on σ for every task that sets none of its own
    max_length: int = 128
    predict_batch_size: int = 64
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    footprint: FootprintSettings = field(default_factory=FootprintSettings)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (paths as strings), e.g. for logging the resolved experiment."""
        return dataclasses.asdict(self)
