"""Everything a training job needs before its first step, checked before anything is written:
the data (X_train, the training file, the evaluation split), the models and the layer mapping.

β and ``n_train`` are always measured over the task's own train split (X_train, on which φ_cnf
is judged), also when training on an ``--aug-train`` file; for custom data X_train also fixes the
class order of every split.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confdistill.distillation.job import Job
from confdistill.errors import InputError


@dataclass
class Inputs:
    """The validated inputs of one job."""

    spec: Any                  # the task (TaskSpec)
    columns: Any               # TableColumns or None
    x_train: Any               # the task's train split (LoadedSplit): β, n_train
    train_file: Path
    train_examples: list[Any]
    eval_file: Path | None
    eval_examples: list[Any]
    student: Any
    tokenizer: Any
    teacher: Any | None
    mapping: list[int] | None
    #: the teacher's own tokenizer when it tokenises text differently from the student's (stage 2
    #: across tokenizers: the teacher's logits come from its own tokenization); None when they agree
    teacher_tokenizer: Any | None = None

    @property
    def label_names(self) -> list[str]:
        return list(self.spec.label_names)


def prepare_inputs(job: Job) -> Inputs:
    """Read the data and load the models of ``job``; an :class:`InputError` for anything wrong."""
    from confdistill.data import TableColumns, load_examples, read_glue_file, read_table
    from confdistill.distillation.mapping import check_compatible
    from confdistill.distillation.run_files import launch_rank
    from confdistill.models.loading import check_same_vocab, load_classifier
    from confdistill.models.tokenizer import tokenizer_difference

    columns = TableColumns.from_mapping(job.columns) if job.columns is not None else None
    x_train = load_examples(job.task, job.data_dir, "train", columns=columns)
    spec = x_train.task
    if columns is not None and not spec.is_regression:
        columns = dataclasses.replace(columns, label_names=spec.label_names)
    if job.best_metric is not None and job.best_metric not in spec.metric_names:
        raise InputError(f"--best-metric must be one of {', '.join(spec.metric_names)} for {spec.name}, "
                         f"got {job.best_metric!r}")
    if job.aug_train:
        train_file = Path(job.aug_train)
        if not train_file.is_file():
            raise InputError("--aug-train file does not exist", path=train_file)
        train_examples = (read_table(train_file, columns)[0] if columns is not None
                          else read_glue_file(job.task, train_file))
    else:
        train_file, train_examples = x_train.path, x_train.examples
    eval_file, eval_examples = None, []
    if job.kind != "intermediate":
        eval_data = load_examples(job.task, job.data_dir, job.eval_split or "dev", columns=columns)
        eval_file, eval_examples = eval_data.path, eval_data.examples
    from confdistill.models.hub import resolve_model_dir

    for name, attr in (("--student" if job.kind != "finetune" else "--model", "student"), ("--teacher", "teacher")):
        path = getattr(job, attr)
        if path is not None and not Path(path).is_dir():
            # An alias or a Hub id: its directory (the local Hugging Face cache; nothing is downloaded).
            setattr(job, attr, str(resolve_model_dir(str(path), what=name)))
    num_labels = spec.num_labels
    if job.num_labels is not None and job.num_labels != num_labels:
        raise InputError(f"--num-labels {job.num_labels}: the task {spec.name} has {num_labels} "
                         f"{'output (regression)' if spec.is_regression else 'classes'}")
    student, tokenizer = load_classifier(job.student, num_labels=num_labels, new_head=job.num_labels is not None)
    dropped = student.confdistill_load_report.dropped_head
    if dropped and launch_rank() == 0:
        print(f"--model {job.student}: dropped {dropped}; training a new {num_labels}-output head", file=sys.stderr)
    teacher, mapping, own_tokenizer = None, None, None
    if job.teacher is not None and not (job.kind == "prediction" and spec.is_regression):
        teacher, teacher_tokenizer = load_classifier(job.teacher, num_labels=num_labels)
        if job.kind == "intermediate":
            # Stage 1 matches attention and hidden states position by position: one tokenizer.
            check_same_vocab(teacher_tokenizer, tokenizer, job.teacher, job.student)
            mapping = check_compatible(student.config, teacher.config, job.stage1.layer_mapping)
        elif tokenizer_difference(teacher_tokenizer, tokenizer) is not None:
            own_tokenizer = teacher_tokenizer  # stage 2 needs only the teacher's logits on the same texts
    return Inputs(spec, columns, x_train, train_file, list(train_examples), eval_file, list(eval_examples),
                  student, tokenizer, teacher, mapping, own_tokenizer)


def check_evaluation_split(job: Job) -> None:
    """Read ``job``'s evaluation split (and so check it) without loading any model."""
    from confdistill.data import TableColumns, load_examples

    columns = TableColumns.from_mapping(job.columns) if job.columns is not None else None
    load_examples(job.task, job.data_dir, job.eval_split or "dev", columns=columns)
