"""Trial parameters ↔ an experiment's settings: which task and student to tune (:func:`select`),
the experiment's own settings as study parameters (:func:`baseline_params`), the search space a
student can vary (:func:`space_for`), and a student with a trial's parameters (:func:`student_with`).

Parameter → setting (DistillConfig names; the runner runs each stage as its own job):

======================  =====================================================
``stage1_epochs/lr``    ``students.stage1.num_train_epochs / learning_rate``
``stage2_epochs/lr``    ``students.stage2.num_train_epochs / learning_rate``
``temperature``         ``students.stage2.temperature`` (T ≥ 1)
``alpha``               ``students.stage2.alpha``
``lambda_conf``         ``students.stage2.lambda_conf`` (confidence-gap weight λ)
``augment``             ``aug_train`` of both stages (TinyBERT augments both)
``mapping``             ``students.stage1.layer_mapping`` (uniform | top | bottom)
======================  =====================================================
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from confdistill.distillation.config import DistillConfig
from confdistill.errors import InputError
from confdistill.experiments.config import ExperimentConfig, StudentSpec, TaskConfig
from confdistill.tuning.space import SearchSpace


def distill_defaults(stage: str = "stage2") -> dict[str, Any]:
    """The trainer's settings for a stage ("stage1" | "stage2") the experiment file leaves unset:
    :class:`~confdistill.distillation.config.DistillConfig`'s defaults, as its ``stage_loop`` gives
    them (stage 1: 10 epochs at 5e-5, stage 2: 3 epochs at 3e-5), so the tuner's baseline is the
    run ``confdistill distill`` would make — the settings models are the one place they are written."""
    d = DistillConfig()
    loop = d.stage_loop("intermediate" if stage == "stage1" else "prediction")
    return {**d.to_dict(), **loop.to_dict()}


def select(cfg: ExperimentConfig, task: str | None, student: str | None) -> tuple[TaskConfig, StudentSpec]:
    """The experiment's task (by key or GLUE name) and student (by name); the only one when not given."""
    tasks = cfg.tasks
    if task is not None:
        tasks = [t for t in cfg.tasks if task in (t.key, t.task)]
        if not tasks:
            raise InputError(f"--task {task!r}: not in {cfg.source} (tasks: {', '.join(t.key for t in cfg.tasks)})")
    elif len(tasks) > 1:
        raise InputError(f"--task: {cfg.source} has several tasks ({', '.join(t.key for t in tasks)}): name one")
    t = tasks[0]
    students = t.students
    if student is not None:
        students = [s for s in t.students if s.name == student]
        if not students:
            raise InputError(
                f"--student {student!r}: not a student of task {t.key} (students: {', '.join(s.name for s in t.students)})"
            )
    elif len(students) > 1:
        raise InputError(f"--student: task {t.key} has several students ({', '.join(s.name for s in students)}): name one")
    return t, students[0]


def baseline_params(student: StudentSpec) -> dict[str, Any]:
    """The experiment's own hyper-parameters for this student, as study parameters."""
    d, d1 = distill_defaults("stage2"), distill_defaults("stage1")
    s1, s2 = student.stage1, student.stage2
    return {
        "stage1_epochs": float(s1.get("num_train_epochs", d1["num_train_epochs"])),
        "stage2_epochs": float(s2.get("num_train_epochs", d["num_train_epochs"])),
        "stage1_lr": float(s1.get("learning_rate", d1["learning_rate"])),
        "stage2_lr": float(s2.get("learning_rate", d["learning_rate"])),
        "temperature": float(s2.get("temperature", d["temperature"])),
        "alpha": float(s2.get("alpha", d["alpha"])),
        "lambda_conf": float(s2.get("lambda_conf", d["lambda_conf"])),
        "augment": bool(s2.get("aug_train") or s1.get("aug_train")),
        "mapping": str(s1.get("layer_mapping", d["layer_mapping"])),
    }


def model_layers(source: str | Path | None) -> int | None:
    """``num_hidden_layers`` from a model directory's (or package reference's) ``config.json``;
    None when it cannot be read (e.g. a model not downloaded yet)."""
    if source is None:
        return None
    try:
        from confdistill.experiments.config import resolve_model_source

        config = json.loads((resolve_model_source(str(source), what="model") / "config.json").read_text())
        return int(config["num_hidden_layers"])
    except (InputError, OSError, ValueError, KeyError, TypeError):
        return None


def layer_counts(task: TaskConfig, student: StudentSpec) -> tuple[int | None, int | None]:
    """(student layers, teacher layers) as far as the experiment and its model folders tell."""
    teacher = model_layers(task.teacher.dir or task.teacher.encoder)
    if student.dir is not None:
        own = model_layers(student.dir)
    elif student.layers is not None:
        own = student.layers
    else:
        own = teacher if student.source == "teacher" else model_layers(student.source)
    return own, teacher


def space_for(
    student: StudentSpec, base: SearchSpace, *, aug_available: bool, task: TaskConfig | None = None
) -> SearchSpace:
    """``base`` restricted to what this student can vary: stage-1 dimensions are fixed when the
    student has no stage 1, augmentation only when an augmented train file exists, and the layer
    mapping (``base.mapping``, default all three) only when the student has fewer layers than the
    teacher (with as many, or without stage 1, every mapping is the same). ``task`` gives the
    teacher; without it (or when a layer count cannot be read) the mapping stays searched."""
    b = baseline_params(student)
    changes: dict[str, Any] = {"augment": (False, True) if aug_available else (b["augment"],)}
    if "stage1" not in student.stages:
        changes["stage1_epochs"] = (b["stage1_epochs"], b["stage1_epochs"])
        changes["stage1_lr"] = (b["stage1_lr"], b["stage1_lr"])
        changes["mapping"] = (b["mapping"],)
    elif task is not None:
        own, teacher = layer_counts(task, student)
        if own is not None and teacher is not None and own >= teacher:
            changes["mapping"] = (b["mapping"],)
    if "stage2" not in student.stages:
        raise InputError(f"{student.key}.stages: tuning needs stage 2 (σ is measured on the prediction layer)")
    return dataclasses.replace(base, **changes)


def student_with(student: StudentSpec, params: dict[str, Any], *, name: str, aug_train: str | None) -> StudentSpec:
    """A copy of ``student`` named ``name`` whose stage settings are ``params``."""
    s1 = dict(student.stage1)
    s2 = dict(student.stage2)
    s1.update(num_train_epochs=float(params["stage1_epochs"]), learning_rate=float(params["stage1_lr"]),
              layer_mapping=str(params.get("mapping", s1.get("layer_mapping", "uniform"))))
    s2.update(
        num_train_epochs=float(params["stage2_epochs"]),
        learning_rate=float(params["stage2_lr"]),
        temperature=float(params["temperature"]),
        alpha=float(params["alpha"]),
        lambda_conf=float(params["lambda_conf"]),
    )
    for stage in (s1, s2):
        if params.get("augment"):
            if aug_train is None and not stage.get("aug_train"):
                raise InputError("augment = true needs an augmented train file (--aug-train or --make-aug)")
            stage["aug_train"] = aug_train or stage.get("aug_train")
        else:
            stage.pop("aug_train", None)
    return dataclasses.replace(student, name=name, stage1=s1, stage2=s2)
