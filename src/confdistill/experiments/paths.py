"""Where an experiment's outputs live under its folder (``OUT/<task>/…``), for every module that reads them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from confdistill.errors import InputError
from confdistill.experiments.config import StudentSpec, TaskConfig

#: Sub-paths of a training output directory that downstream steps read.
TRAIN_OUTPUTS = ("final", "run.json", "metrics.jsonl")

# DistillConfig.stage for each student stage.
STAGE_NAMES = {"stage1": "intermediate", "stage2": "prediction"}


@dataclass
class TaskPaths:
    """Where one task's outputs live under OUT/<task key>/."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def teacher(self) -> Path:
        return self.root / "teacher"

    def student(self, name: str) -> Path:
        return self.root / "students" / name

    def predictions(self, model: str, split: str) -> Path:
        return self.root / "predictions" / f"{model}.{split}.csv"


def inside(out: Path, path: Path, where: str) -> Path:
    """``path``, after checking that it lies strictly inside the output folder ``out``.

    The experiment's names are checked by the schema (:func:`confdistill.experiments.values.path_name`);
    this is the check of the paths built from them, before anything is written: an
    :class:`InputError` naming ``where`` (the key or step the path comes from). Lexical — ``..``
    collapsed, links not followed — because that is what a name can do to a path.
    """
    folder, target = os.path.normpath(os.path.abspath(out)), os.path.normpath(os.path.abspath(path))
    if os.path.commonpath([folder, target]) != folder or target == folder:
        raise InputError(f"{where}: {path} is not inside the output folder {out}")
    return path


def prediction_files(out: Path, task_key: str, model: str, split: str) -> list[Path]:
    """The prediction CSV and its sidecar, as written by predict_split."""
    csv = TaskPaths(out / task_key).predictions(model, split)
    return [csv, csv.with_name(csv.name + ".meta.json")]


def analysed_students(task: TaskConfig) -> list[StudentSpec]:
    """Every model a task analyses against its teacher: its students, then the compressed forms of
    the teacher and of each student (``compress``), named ``<model>-<form>`` (no stages, no β)."""
    forms = [StudentSpec(key=f"{task.teacher.key}.compress", name=f"teacher-{form}", stages=(),
                         compressed_from="teacher", form=form) for form in task.teacher.compress]
    for s in task.students:
        forms += [StudentSpec(key=f"{s.key}.compress", name=f"{s.name}-{form}", stages=(), compressed_from=s.name,
                              form=form) for form in s.compress]
    return [*task.students, *forms]
