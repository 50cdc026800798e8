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

    from confdistill.data import load_examples
    from confdistill.experiments.custom_data import write_csv_subset
    from confdistill.io import atomic_write

    if not any(caps.values()):
        return  # the original files are used as they are
    for role, src in src_files.items():
        cap = caps[role]
        # validates the rows as well; a custom split is read with the task's columns
        examples = load_examples(task.task, src.parent, src.stem, columns=task.columns).examples
        keep_rows = [e.line for e in examples]
        if cap is not None and cap < len(keep_rows):
            rng = np.random.default_rng(seed)
            keep_rows = sorted(rng.choice(keep_rows, size=cap, replace=False).tolist())
        if src.suffix.lower() == ".csv":  # records may span lines
            write_csv_subset(src, data_dir / src.name, set(keep_rows))
            continue
        lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
        first = examples[0].line if examples else len(lines) + 1
        with atomic_write(data_dir / src.name) as fh:
            fh.writelines(lines[: first - 1])  # the header (none for CoLA)
            for line in keep_rows:
                text = lines[line - 1]
                fh.write(text if text.endswith("\n") else text + "\n")


def train_kwargs(task: TaskConfig, cfg: ExperimentConfig) -> dict[str, Any]:
    """The settings of every training job of a task that the runner owns (custom data: its columns)."""
    extra = {} if task.columns is None else {"columns": task.columns}
    return {"max_seq_length": cfg.max_length, "eval_split": task.dev_split, "seed": cfg.seed, **extra}


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


def general(cfg: ExperimentConfig, teacher: Path, general: dict[str, Any], out: Path, resume: bool) -> None:
    """General distillation of a fresh student (``general = {…}`` of a student table)."""
    from confdistill.distillation import GeneralConfig, StudentShape, general_distill

    shape_keys = ("layers", "hidden", "heads", "intermediate", "embeddings", "encoder_init")
    shape = StudentShape(**{k: general[k] for k in shape_keys if k in general})
    settings = {"seed": cfg.seed, "max_seq_length": cfg.max_length,
                **{k: v for k, v in general.items() if k not in (*shape_keys, "teacher")}}
    general_distill(GeneralConfig(teacher=str(teacher), out=str(out), student=shape, resume=resume, **settings))


def export(model_dir: Path, out: Path, form: str) -> None:
    """A compressed form of a model: ONNX (``"onnx"``) or ONNX with dynamic int8 weights (``"onnx-int8"``)."""
    from confdistill.models.onnx_export import export_onnx

    # The runner owns its folder: a re-run (changed inputs) replaces its own earlier export.
    export_onnx(model_dir, out, quantize="int8" if form == "onnx-int8" else None, overwrite=True)


def make_student(cfg: ExperimentConfig, task: TaskConfig, s: StudentSpec, from_dir: Path, out: Path) -> None:
    from confdistill.experiments.custom_data import labels
    from confdistill.models import make_student

    num_labels, names = labels(task)
    # The runner owns its folder: a re-run (changed inputs) replaces its own earlier student.
    make_student(from_dir, out, layers=s.layers, hidden=s.hidden, intermediate=s.intermediate, heads=s.heads,
                 num_labels=num_labels, seed=cfg.seed, overwrite=True, label_names=names)


def predict(cfg: ExperimentConfig, task: TaskConfig, model_dir: Path, data_dir: Path, split: str,
             out: Path) -> None:
    from confdistill.experiments.custom_data import record_columns
    from confdistill.prediction.predict import predict_split

    # The runner owns its folder: a re-run (changed inputs, damaged output) replaces its own pair.
    predict_split(model_dir, task.task, data_dir, split, out, batch_size=cfg.predict_batch_size,
                  max_length=cfg.max_length, overwrite=True, columns=task.columns)
    record_columns(out, task.columns)


def footprint(cfg: ExperimentConfig, task: TaskConfig, model_dir: Path, data_dir: Path, out: Path) -> None:
    from confdistill.experiments.custom_data import texts as split_texts
    from confdistill.experiments.footprint import measure_footprint

    texts = split_texts(task, data_dir, task.dev_split, 256)
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
                              "n_bootstrap": cfg.analysis.n_bootstrap, "seed": cfg.seed,
                              "slice_by": cfg.analysis.slice_by}
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
