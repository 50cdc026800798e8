"""What each step of ``confdistill run`` does: prepare data, fine-tune, make a student, distil,
predict, measure the footprint, analyse, write the report. Each function is one step's action
(:mod:`confdistill.experiments.plan` binds them), reading and writing only the paths it is given.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from confdistill.experiments.config import ExperimentConfig, StudentSpec, TaskConfig
from confdistill.experiments.paths import STAGE_NAMES, prediction_files
from confdistill.experiments.steps import rel
from confdistill.io import write_json


def prepare_data(task: TaskConfig, src_files: dict[str, Path], caps: dict[str, int | None],
                  data_dir: Path, seed: int) -> None:
    """Write the capped splits: a seeded random subset of rows, in file order, header kept."""
    import numpy as np

    from confdistill.data import load_split
    from confdistill.io import atomic_write

    if not any(caps.values()):
        return  # the original files are used as they are
    for role, src in src_files.items():
        cap = caps[role]
        examples = load_split(task.task, src.parent, src.stem)  # validates the rows as well
        lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
        first = examples[0].line if examples else len(lines) + 1
        keep_rows = [e.line for e in examples]
        if cap is not None and cap < len(keep_rows):
            rng = np.random.default_rng(seed)
            keep_rows = sorted(rng.choice(keep_rows, size=cap, replace=False).tolist())
        with atomic_write(data_dir / src.name) as fh:
            fh.writelines(lines[: first - 1])  # the header (none for CoLA)
            for line in keep_rows:
                text = lines[line - 1]
                fh.write(text if text.endswith("\n") else text + "\n")


def train_kwargs(task: TaskConfig, cfg: ExperimentConfig) -> dict[str, Any]:
    return {"max_seq_length": cfg.max_length, "eval_split": task.dev_split, "seed": cfg.seed}


def finetune(cfg: ExperimentConfig, task: TaskConfig, encoder: Path, data_dir: Path, out: Path,
              hp: dict[str, Any], resume: bool) -> None:
    from confdistill.distillation import FinetuneConfig, finetune

    settings = {**train_kwargs(task, cfg), **hp}
    config = FinetuneConfig(model=str(encoder), task=task.task, data_dir=str(data_dir), out=str(out),
                            resume=resume, **settings)
    finetune(config)


def distill(cfg: ExperimentConfig, task: TaskConfig, teacher: Path, student: Path, data_dir: Path,
             out: Path, stage: str, hp: dict[str, Any], resume: bool) -> None:
    from confdistill.distillation import DistillConfig, distill

    settings = {**train_kwargs(task, cfg), **hp}
    config = DistillConfig(teacher=str(teacher), student=str(student), task=task.task, data_dir=str(data_dir),
                           out=str(out), stage=STAGE_NAMES[stage], resume=resume, **settings)
    distill(config)


def make_student(cfg: ExperimentConfig, task: TaskConfig, s: StudentSpec, from_dir: Path, out: Path) -> None:
    from confdistill.data import get_task
    from confdistill.models import make_student

    # The runner owns its folder: a re-run (changed inputs) replaces its own earlier student.
    make_student(from_dir, out, layers=s.layers, hidden=s.hidden, intermediate=s.intermediate, heads=s.heads,
                 num_labels=get_task(task.task).num_labels, seed=cfg.seed, overwrite=True,
                 label_names=get_task(task.task).class_names)


def predict(cfg: ExperimentConfig, task: TaskConfig, model_dir: Path, data_dir: Path, split: str,
             out: Path) -> None:
    from confdistill.prediction.predict import predict_split

    # The runner owns its folder: a re-run (changed inputs, damaged output) replaces its own pair.
    predict_split(model_dir, task.task, data_dir, split, out, batch_size=cfg.predict_batch_size,
                  max_length=cfg.max_length, overwrite=True)


def footprint(cfg: ExperimentConfig, task: TaskConfig, model_dir: Path, data_dir: Path, out: Path) -> None:
    from confdistill.data import load_split
    from confdistill.experiments.footprint import measure_footprint

    texts = [e.text_a if e.text_b is None else f"{e.text_a} {e.text_b}"
             for e in load_split(task.task, data_dir, task.dev_split)[:256]]
    fp = measure_footprint(model_dir, texts=texts, seq_len=cfg.footprint.seq_len,
                           batch_sizes=cfg.footprint.batch_sizes, repeats=cfg.footprint.repeats)
    write_json(out, fp)


def analyze_student(cfg: ExperimentConfig, task: TaskConfig, s: StudentSpec, run_json: Path | None) -> dict[str, Any]:
    """analyze_pair on train and dev for one student, from the prediction files on disk.

    Both splits are judged against the task's (or experiment's) tolerance ``kappa`` (None: no
    verdict). The stage-2 run.json (β, N, α, T) is the bound: it gives the train split its
    ``bound_check`` and marks dev "not covered"; it is never the κ a split is judged against.
    """
    from confdistill.prediction.softmax_file import read_softmax
    from confdistill.properties import analyze_pair
    from confdistill.properties.verdict import read_run_json

    out = cfg.output_dir
    bound = None
    if s.stages and s.stages[-1] == "stage2" and run_json is not None and run_json.is_file():
        # Relative to OUT in messages: the output folder can be moved and its hashes stay the same.
        bound = dataclasses.replace(read_run_json(run_json), source=rel(run_json, out))
    result: dict[str, Any] = {
        "kappa": task.kappa, "kappa_source": None if task.kappa is None else "user",
        "bound_source": None if bound is None else bound.source,
        **{k: None if bound is None else getattr(bound, k) for k in ("beta", "beta_mean", "n_train", "alpha",
                                                                     "temperature")},
    }
    kwargs: dict[str, Any] = {"threshold": cfg.analysis.threshold, "delta": cfg.analysis.delta,
                              "n_bootstrap": cfg.analysis.n_bootstrap, "seed": cfg.seed}
    for role in ("train", "dev"):
        teacher = read_softmax(prediction_files(out, task.key, "teacher", role)[0])
        student = read_softmax(prediction_files(out, task.key, s.name, role)[0])
        split = "train" if role == "train" else "eval"
        analysis = analyze_pair(teacher, student, kappa=task.kappa, bound=bound, split=split, **kwargs).to_dict()
        analysis["teacher_path"] = rel(prediction_files(out, task.key, "teacher", role)[0], out)
        analysis["student_path"] = rel(prediction_files(out, task.key, s.name, role)[0], out)
        result[role] = analysis
    return result


def analyze(cfg: ExperimentConfig, task: TaskConfig, s: StudentSpec, run_json: Path | None, out: Path) -> None:
    write_json(out, analyze_student(cfg, task, s, run_json))


def report(cfg: ExperimentConfig) -> None:
    from confdistill.experiments.results import collect_results
    from confdistill.reports.report import write_report

    write_report(collect_results(cfg), cfg.output_dir)
