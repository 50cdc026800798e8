"""``confdistill run``: check an experiment's settings, build its plan, execute it into its folder.

The pieces: :mod:`.plan` (the steps of an experiment), :mod:`.steps` (the engine that skips what
its content hashes say is done and resumes killed training steps), :mod:`.actions` (what each step
does), :mod:`.results` (the finished experiment's results for the report). This module is the
public API the CLI and the tuner use; it re-exports their names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from confdistill.errors import InputError
from confdistill.experiments.actions import analyze_student
from confdistill.experiments.config import ExperimentConfig
from confdistill.experiments.paths import STAGE_NAMES, TRAIN_OUTPUTS, TaskPaths, prediction_files
from confdistill.experiments.plan import build_plan
from confdistill.experiments.steps import (
    CODE_OF_KIND,
    Hasher,
    RunSummary,
    Step,
    code_version,
    execute,
    manifest_path,
)
from confdistill.io import write_json

__all__ = ["CODE_OF_KIND", "STAGE_NAMES", "TRAIN_OUTPUTS", "Hasher", "RunSummary", "Step", "TaskPaths",
           "analyze_student", "build_plan", "check_settings", "check_student_tokenizer", "code_version", "execute",
           "is_experiment_dir", "manifest_path", "prediction_files", "run_experiment"]


def _train_kwargs(task: Any, cfg: ExperimentConfig) -> dict[str, Any]:
    from confdistill.experiments.actions import train_kwargs

    return train_kwargs(task, cfg)


def check_settings(cfg: ExperimentConfig) -> None:
    """Every training step's settings through the trainer's own validation, before any step runs
    (a stage-2 batch size 0 is an InputError naming the table now, not after hours of stage 1)."""
    from confdistill.distillation import DistillConfig, FinetuneConfig

    for task in cfg.tasks:
        common = _train_kwargs(task, cfg)
        jobs: list[tuple[str, type, dict[str, Any]]] = []
        if task.teacher.encoder is not None:
            jobs.append((f"{task.teacher.key}.finetune", FinetuneConfig,
                         {"model": "m", **common, **task.teacher.finetune}))
        for s in task.students:
            for stage in s.stages:
                jobs.append((f"{s.key}.{stage}", DistillConfig, {"teacher": "t", "student": "s",
                             "stage": STAGE_NAMES[stage], **common, **getattr(s, stage)}))
        for where, cls, settings in jobs:
            try:
                cls.from_dict({"task": task.task, "data_dir": "d", "out": "o", **settings}).validate()
            except InputError as exc:
                raise InputError(f"{cfg.source}: {where}: {exc}") from None
        for s in task.students:
            check_student_tokenizer(task, s, where=f"{cfg.source}: {s.key}")


#: What an experiment's student whose tokenizer differs from its teacher's should say instead.
_STAGE2_ONLY = 'give the student stage = "prediction" (stage 2 needs only the teacher\'s logits on the same texts)'


def check_student_tokenizer(task: Any, student: Any, *, where: str) -> None:
    """Refuse (InputError) stage 1 of ``student`` when its tokenizer is not the teacher's.

    The student's tokenizer is that of the model it is made from: its ``dir``, its ``from`` model,
    or its general distillation's ``teacher`` (a general student reads with that teacher's
    tokenizer); a student cut from the task teacher shares the teacher's. A teacher still to be
    fine-tuned has its encoder's. Stage 2 alone runs across tokenizers.
    """
    from confdistill.experiments.config import resolve_model_source
    from confdistill.models.loading import check_same_vocab, load_tokenizer

    if "stage1" not in student.stages:
        return
    teacher = task.teacher.dir or task.teacher.encoder
    source = student.dir or (student.general or {}).get("teacher") or (
        None if student.source == "teacher" or student.general is not None else student.source)
    if teacher is None or source is None:
        return
    t_dir = resolve_model_source(str(teacher), what=f"{task.teacher.key}")
    s_dir = resolve_model_source(str(source), what=f"{student.key}")
    try:
        check_same_vocab(load_tokenizer(t_dir), load_tokenizer(s_dir), t_dir, s_dir, hint=_STAGE2_ONLY)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def is_experiment_dir(path: Path) -> bool:
    """Whether ``path`` is an experiment output folder (``run`` continues it by itself)."""
    return (path / "experiment.json").is_file() or (path / ".steps").is_dir()


def run_experiment(
    cfg: ExperimentConfig, *, dry_run: bool = False, log: Callable[[str], None] | None = None,
    overwrite: bool = False, ours: Callable[[Path], bool] = is_experiment_dir,
) -> RunSummary:
    """Build the plan of ``cfg`` and execute it into ``cfg.output_dir`` (see :func:`execute`).

    The output folder is claimed first (:func:`confdistill.folders.claim_output`): a non-empty
    folder that is not an experiment's is refused unless ``overwrite`` (then emptied, once the plan
    is built), a file is never replaced, and the folder is locked for the whole run — a second
    ``run`` into it stops at once with "… is in use by process N". A dry run writes and locks nothing.
    ours: which existing folders are continued (default: :func:`is_experiment_dir`).
    """
    from confdistill.folders import check_output_target, claim_output, clear_directory

    out = cfg.output_dir
    check_settings(cfg)
    if dry_run:
        check_output_target(out, overwrite=overwrite, ours=ours, what="output folder")
        return execute(build_plan(cfg), out, dry_run=True, log=log)
    with claim_output(out, overwrite=overwrite, ours=ours, what="output folder"):
        steps = build_plan(cfg)
        if overwrite:
            clear_directory(out)
        write_json(out / "experiment.json", cfg.to_dict())
        return execute(steps, out, dry_run=dry_run, log=log)
