"""What a finished job records in ``OUT/run.json``: settings, data hashes, evaluations, β, timings.

Schema: docs/formats.md ("run.json"). Kept apart from the loop so that the loop reads as the loop.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import torch

from confdistill.distillation.job import Job, job_record
from confdistill.io import sha256_file


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def versions() -> dict[str, str]:
    import accelerate
    import transformers

    import confdistill

    return {"confdistill": confdistill.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "python": platform.python_version(), "threads": str(torch.get_num_threads())}


def stage_summary(run: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of stage 1's run.json that stage 2's run.json repeats."""
    if not run:
        return None
    return {k: run.get(k) for k in ("status", "steps", "layer_mapping", "fit_denses", "outputs", "timings")}


def running_record(job: Job, started: str, stage1: dict[str, Any] | None) -> dict[str, Any]:
    return {"status": "running", "job": job_record(job), "settings": job.settings, "started": started,
            **({"intermediate": stage_summary(stage1)} if stage1 else {})}


def complete_record(job: Job, inputs: Any, *, stage1: dict[str, Any] | None, steps: int, steps_per_epoch: int,
                    world: int, device: Any, fit_denses: Any, final_eval: dict[str, Any] | None,
                    best: dict[str, Any] | None, beta: dict[str, Any], timings: dict[str, Any],
                    analysed: str) -> dict[str, Any]:
    """run.json of a finished job (``analysed``: "final" or "best", the model β was measured on)."""
    x_train, train_file, eval_file = inputs.x_train, inputs.train_file, inputs.eval_file
    n_train = len(x_train.examples)
    stage2 = job.stage2
    return {
        "status": "complete",
        "job": job_record(job),
        "settings": job.settings,
        "stage": job.kind,
        **({"intermediate": stage_summary(stage1)} if stage1 else {}),
        "task": inputs.spec.name,
        "columns": None if inputs.columns is None else inputs.columns.to_dict(),
        "label_names": inputs.label_names,
        "n_train": n_train,
        "n_eval": len(inputs.eval_examples),
        "steps": steps,
        "steps_per_epoch": steps_per_epoch,
        "world_size": world,
        "device": str(device),
        "mixed_precision": job.loop.mixed_precision,
        "gradient_accumulation_steps": job.loop.gradient_accumulation_steps,
        "pad_to_max_length": job.loop.pad_to_max_length,
        "layer_mapping": inputs.mapping,
        "layer_mapping_strategy": job.stage1.layer_mapping,
        "fit_denses": None if job.kind != "intermediate" else (
            "none (equal widths)" if fit_denses is None else f"one Linear per hidden state ({len(fit_denses)})"),
        "final_eval": final_eval,
        "best": best,
        "alpha": stage2.alpha,
        "temperature": stage2.temperature,
        "lambda_conf": stage2.lambda_conf,
        **{k: v for k, v in beta.items() if k not in ("alpha", "temperature")},
        "beta_model": analysed if beta else None,
        "beta_precision": beta.get("beta_precision"),   # what the β pass did (trainer.py)
        "beta_split_file": str(x_train.path) if job.kind == "prediction" else None,
        "data": {"train": {"path": str(train_file), "sha256": sha256_file(train_file),
                           "rows": len(inputs.train_examples)},
                 **({"x_train": {"path": str(x_train.path), "sha256": sha256_file(x_train.path),
                                 "rows": n_train}} if job.aug_train else {}),
                 **({"eval": {"path": str(eval_file), "sha256": sha256_file(eval_file),
                              "rows": len(inputs.eval_examples)}} if eval_file else {})},
        "models": {"student": str(job.student), "teacher": job.teacher, **_load_notes(inputs)},
        "outputs": {"final": str(job.out / "final"),
                    "best": str(job.out / "best") if eval_file is not None else None},
        "versions": versions(),
        "timings": timings,
    }


def _load_notes(inputs: Any) -> dict[str, str]:
    """What loading changed or chose (recorded only when it happened): the teacher's own tokenizer
    (stage 2 across tokenizers) and a head of another width dropped (``finetune --num-labels``)."""
    from confdistill.models.tokenizer import describe_tokenizer

    notes = {}
    if inputs.teacher_tokenizer is not None:
        notes["teacher_tokenizer"] = describe_tokenizer(inputs.teacher_tokenizer)
    report = getattr(inputs.student, "confdistill_load_report", None)
    if report is not None and report.dropped_head:
        notes["dropped_head"] = report.dropped_head
    return notes


def best_dir(out: Path, analysed: str) -> Path:
    return out / ("best" if analysed == "best" else "final")
