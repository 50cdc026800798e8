"""One training job as plain data, and what ``--resume`` compares of it.

A job is one kind of training (``"finetune"``, ``"intermediate"`` = TinyBERT stage 1,
``"prediction"`` = stage 2) with its inputs, its output folder and its typed settings: the loop's
:class:`~.settings.TrainConfig` and the kind's loss settings. :func:`distill_jobs` /
:func:`finetune_job` build jobs from the commands' settings, so the loop never reads a command's
flat option names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confdistill.distillation.config import RESUME_MUTABLE, DistillConfig, FinetuneConfig
from confdistill.distillation.settings import Stage1Loss, Stage2Loss, TrainConfig
from confdistill.errors import InputError, setting_name

JOBS = ("intermediate", "prediction", "finetune")

#: Settings added after runs were recorded: left out of the resume record at their default, so
#: that a run recorded before they existed can still be resumed.
_RECORD_DEFAULTS: dict[str, Any] = {"layer_mapping": "uniform", "columns": None, "gradient_accumulation_steps": 1,
                                    "pad_to_max_length": False, "mixed_precision": "no", "best_metric": None,
                                    "analyse": "final", "num_labels": None}


@dataclass
class Job:
    """One training stage: which loss, which models, where to write, and its settings."""

    kind: str                      # "intermediate" | "prediction" | "finetune"
    out: Path
    student: str                   # the model being trained
    teacher: str | None
    task: str
    data_dir: str
    loop: TrainConfig
    stage1: Stage1Loss = field(default_factory=Stage1Loss)
    stage2: Stage2Loss = field(default_factory=Stage2Loss)
    aug_train: str | None = None
    eval_split: str | None = None
    best_metric: str | None = None
    analyse: str = "final"
    device: str = "auto"
    resume: bool = False
    columns: dict[str, Any] | None = None   # custom data: TableColumns as plain data
    num_labels: int | None = None   # finetune --num-labels: a new head of this width replaces the model's
    settings: dict[str, Any] = field(default_factory=dict)   # the user's config, stored in run.json
    clear_dir: Path | None = None   # --overwrite: emptied once the inputs are validated (not recorded)


def distill_jobs(config: DistillConfig, out: Path) -> list[Job]:
    """The stage jobs of a distillation: one, or stage 1 in ``OUT/intermediate`` then stage 2 in ``OUT``."""
    common = dict(teacher=config.teacher, task=config.task, data_dir=config.data_dir, aug_train=config.aug_train,
                  eval_split=config.eval_split, best_metric=config.best_metric, device=config.device,
                  analyse=config.analyse, resume=config.resume, columns=plain_columns(config.columns), settings=config.to_dict(),
                  stage1=config.stage1_settings, stage2=config.stage2_settings)
    clear = out if config.overwrite else None
    if config.stage != "both":
        return [Job(config.stage, out, config.student, loop=config.stage_loop(config.stage), clear_dir=clear,
                    **common)]
    stage1_out = out / "intermediate"
    return [Job("intermediate", stage1_out, config.student, loop=config.stage_loop("intermediate"),
                clear_dir=clear, **common),
            # Stage 2 continues whatever of its own run is there (the refusal covered OUT).
            Job("prediction", out, str(stage1_out / "final"), loop=config.stage_loop("prediction"),
                **{**common, "resume": True})]


def finetune_job(config: FinetuneConfig) -> Job:
    out = Path(config.out)
    return Job("finetune", out, config.model, None, config.task, config.data_dir, loop=config.loop(),
               aug_train=config.aug_train, eval_split=config.eval_split, best_metric=config.best_metric,
               device=config.device, resume=config.resume, columns=plain_columns(config.columns),
               num_labels=config.num_labels, settings=config.to_dict(), clear_dir=out if config.overwrite else None)


def plain_columns(columns: dict[str, Any] | None) -> dict[str, Any] | None:
    """Custom data's columns in one canonical plain form (JSON round trip equal: compared on --resume)."""
    if columns is None:
        return None
    from confdistill.data.tabular import TableColumns

    return TableColumns.from_mapping(columns).to_dict()


def job_record(job: Job) -> dict[str, Any]:
    """The settings that must be equal for --resume to continue the same run (flat, as run.json keeps them)."""
    d: dict[str, Any] = {"kind": job.kind, "out": str(job.out), "student": job.student, "teacher": job.teacher,
                         "task": job.task, "data_dir": job.data_dir, "aug_train": job.aug_train,
                         "eval_split": job.eval_split, "best_metric": job.best_metric, "columns": job.columns,
                         "analyse": job.analyse, "num_labels": job.num_labels,
                         **job.loop.to_dict()}
    if job.kind == "intermediate":
        d.update(job.stage1.to_dict())
    if job.kind == "prediction":
        d.update(job.stage2.to_dict())
    for k in RESUME_MUTABLE:
        d.pop(k, None)
    for k, default in _RECORD_DEFAULTS.items():
        if d.get(k) == default:
            d.pop(k)
    return d


#: Record keys that are paths: one inside the run folder (stage 2's student, ``OUT/intermediate/final``)
#: is compared relative to it.
_PATH_KEYS = ("student", "teacher", "data_dir", "aug_train")


def placed(record: dict[str, Any]) -> dict[str, Any]:
    """A resume record without where its run folder lies: ``out`` dropped and paths inside it made
    relative to it, so that a moved or copied run folder resumes (the result does not depend on it).
    Both paths were recorded by one process, so their relation holds whatever the current folder."""
    record = dict(record)
    out = record.pop("out", None)
    if isinstance(out, str) and out:
        root = os.path.abspath(out)
        for key in _PATH_KEYS:
            value = record.get(key)
            if isinstance(value, str) and value:
                path = os.path.abspath(value)
                if path == root or path.startswith(root + os.sep):
                    record[key] = os.path.join("<out>", os.path.relpath(path, root))
    return record


def check_same_settings(before: dict[str, Any], now: dict[str, Any], out: Path) -> None:
    """Refuse ``--resume`` with settings other than the recorded run's (naming the first differences);
    where the run folder lies is not a setting (:func:`placed`)."""
    before, now = placed(before), placed(now)
    diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if diff:
        shown = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in diff[:4])
        raise InputError(f"{setting_name('resume')} with different settings than the run being resumed ({shown}); "
                         f"use the original settings or another {setting_name('out')}", path=out)
