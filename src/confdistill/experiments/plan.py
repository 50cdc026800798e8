"""The plan of ``confdistill run``: an experiment's steps, in dependency order.

For every task: data -> teacher (fine-tuned if asked) -> teacher predictions on train and dev; for
every student: init (make-student) -> stage 1 -> stage 2 -> predictions on train and dev -> analysis;
per model a footprint (parameters, size, CPU latency); finally the report. Each step's ``action``
is a function of :mod:`confdistill.experiments.actions`, looked up when the step runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from confdistill.experiments import actions, custom_data
from confdistill.experiments.config import (
    ExperimentConfig,
    TaskConfig,
    resolve_model_source,
)
from confdistill.experiments.paths import (
    STAGE_NAMES,
    TRAIN_OUTPUTS,
    TaskPaths,
    analysed_students,
    inside,
    prediction_files,
)
from confdistill.experiments.steps import Step, manifest_path
from confdistill.experiments.values import toml_key


def build_plan(cfg: ExperimentConfig) -> list[Step]:
    """The steps of an experiment, in an order where every step comes after its dependencies."""
    out = cfg.output_dir
    steps: list[Step] = []
    report_deps: list[str] = []
    for task in cfg.tasks:
        for step in _task_steps(cfg, task, report_deps):
            steps.append(_written_inside(step, out, f"{cfg.source}: tasks.{toml_key(task.key)}"))
    steps.append(_written_inside(
        Step(
            name="report",
            kind="report",
            deps=report_deps,
            settings={"experiment": cfg.name, "tasks": [t.key for t in cfg.tasks]},
            outputs=[out / "results.json", out / "report.md", out / "report.html", out / "figures"],
            action=lambda step: actions.report(cfg),
        ), out, f"{cfg.source}: report"))
    names = [s.name for s in steps]
    assert len(names) == len(set(names)), "step names must be unique"
    return steps


def _written_inside(step: Step, out: Path, where: str) -> Step:
    """``step``, once every path it writes is known to lie inside OUT (:func:`inside`): its outputs
    (not a data step's uncapped split files, read where they are), its training folder, its manifests."""
    written = [p for p in step.outputs if p not in step.sources]
    written += [manifest_path(out, step.name), manifest_path(out, step.name, ".started.json")]
    for p in [*written, *([step.train_dir] if step.train_dir is not None else [])]:
        inside(out, p, f"{where}: step {step.name}")
    return step


def _task_steps(cfg: ExperimentConfig, task: TaskConfig, report_deps: list[str]) -> list[Step]:
    out = cfg.output_dir
    paths = TaskPaths(out / task.key)
    k = task.key
    steps: list[Step] = []
    splits = {"train": task.train_split, "dev": task.dev_split}
    caps = {"train": task.max_train_examples, "dev": task.max_dev_examples}

    # -- data: the split files every later step reads (a seeded subset when capped).
    src_files = {role: custom_data.split_file(task, split) for role, split in splits.items()}
    # A custom task: columns checked, class names fixed from the whole train file (every step's).
    task = custom_data.resolve_columns(cfg, task, src_files)
    # Custom data's columns are part of every step that reads data (absent for a GLUE task, so its
    # hashes are those of earlier versions).
    cols = {} if task.columns is None else {"columns": task.columns}
    data_outputs: list[Path] = []
    for role, src in src_files.items():
        data_outputs.append(paths.data / src.name if caps[role] else src)
    data_dir = paths.data if any(caps.values()) else task.data_dir
    if any(caps.values()) and not all(caps.values()):
        # One split capped: the other is copied beside it so that one folder holds both.
        data_outputs = [paths.data / src_files[r].name for r in splits]
    steps.append(Step(
        name=f"{k}/data", kind="data", deps=[],
        settings={"task": task.task, "splits": splits, "caps": caps, "seed": cfg.seed, **cols},
        sources=list(src_files.values()),
        outputs=data_outputs,
        action=lambda step: actions.prepare_data(task, src_files, caps, paths.data, cfg.seed),
    ))
    data_step = f"{k}/data"

    # -- teacher
    teacher_deps: list[str] = []
    teacher_sources: list[Path] = []
    if task.teacher.dir is not None:
        teacher_dir = resolve_model_source(task.teacher.dir, what=f"{cfg.source}: {task.teacher.key}.dir")
        teacher_sources = [teacher_dir]
    else:
        encoder = resolve_model_source(task.teacher.encoder, what=f"{cfg.source}: {task.teacher.key}.encoder")
        teacher_dir = paths.teacher / "final"
        hp = dict(task.teacher.finetune)
        steps.append(Step(
            name=f"{k}/teacher/finetune", kind="finetune", deps=[data_step],
            settings={"task": task.task, "hparams": hp, "seed": cfg.seed, "dev_split": task.dev_split,
                      "max_length": cfg.max_length, **cols},
            sources=[encoder],
            outputs=[paths.teacher / p for p in TRAIN_OUTPUTS],
            train_dir=paths.teacher,
            # hp is bound now: the name is reassigned below for every student stage (late binding).
            action=lambda step, hp=hp: actions.finetune(cfg, task, encoder, data_dir, paths.teacher, hp, step.resume),
        ))
        teacher_deps = [f"{k}/teacher/finetune"]
    model_steps = {"teacher": (teacher_dir, teacher_deps, teacher_sources)}

    # -- students
    for s in task.students:
        sp = paths.student(s.name)
        deps: list[str] = []
        sources: list[Path] = []
        if s.general is not None:
            # TinyBERT general distillation of a fresh student on unlabeled text, from the task's
            # teacher (or the model the table names). Not from the pretrained encoder by default:
            # MiniLM-L6's pretrained [CLS] is almost constant (the sentence-transformers model was
            # trained with mean pooling), and a student distilled from it inherits a [CLS] that
            # stage 2 cannot classify from (docs/method.md, "General distillation").
            g_teacher, g_deps, g_sources = teacher_dir, teacher_deps, teacher_sources
            if s.general.get("teacher") is not None:
                g_teacher = resolve_model_source(s.general["teacher"], what=f"{cfg.source}: {s.key}.general.teacher")
                g_deps, g_sources = [], [g_teacher]
            general_dir = sp / "general"
            steps.append(Step(
                name=f"{k}/{s.name}/general", kind="general", deps=list(g_deps),
                settings={"general": {kk: v for kk, v in s.general.items() if kk not in ("corpus", "teacher")},
                          "seed": cfg.seed, "max_length": cfg.max_length},
                sources=[*g_sources, *(Path(f) for f in s.general["corpus"])],
                outputs=[general_dir / p for p in TRAIN_OUTPUTS], train_dir=general_dir,
                action=lambda step, s=s, g_teacher=g_teacher, general_dir=general_dir: actions.general(
                    cfg, g_teacher, s.general, general_dir, step.resume),
            ))
            current, deps, sources = general_dir / "final", [f"{k}/{s.name}/general"], []
        elif s.dir is not None:
            current = resolve_model_source(s.dir, what=f"{cfg.source}: {s.key}.dir")
            sources = [current]
        else:
            if s.source == "teacher":
                from_dir, from_deps, from_sources = teacher_dir, teacher_deps, teacher_sources
            else:
                from_dir = resolve_model_source(s.source, what=f"{cfg.source}: {s.key}.from")
                from_deps, from_sources = [], [from_dir]
            init = sp / "init"
            # A custom task's classes come from its data (the head's size and names).
            init_deps = [*from_deps, data_step] if task.is_custom else list(from_deps)
            steps.append(Step(
                name=f"{k}/{s.name}/init", kind="make_student", deps=init_deps,
                settings={"layers": s.layers, "hidden": s.hidden, "intermediate": s.intermediate,
                          "heads": s.heads, "task": task.task, "seed": cfg.seed, **cols},
                sources=list(from_sources), outputs=[init],
                action=lambda step, s=s, from_dir=from_dir, init=init: actions.make_student(
                    cfg, task, s, from_dir, init),
            ))
            current, deps, sources = init, [f"{k}/{s.name}/init"], []
        for stage in s.stages:
            stage_dir = sp / stage
            hp = dict(getattr(s, stage))
            # Stage 2's model that is predicted and analysed (β is measured on the same one).
            analysed = "best" if stage == "stage2" and s.analyse == "best" else "final"
            if analysed == "best":
                hp["analyse"] = "best"
            step_deps = [data_step, *teacher_deps, *deps]
            steps.append(Step(
                name=f"{k}/{s.name}/{stage}", kind=stage, deps=step_deps,
                settings={"task": task.task, "stage": STAGE_NAMES[stage], "hparams": hp, "seed": cfg.seed,
                          "dev_split": task.dev_split, "max_length": cfg.max_length, **cols},
                sources=[*teacher_sources, *sources],
                outputs=[stage_dir / p for p in (*TRAIN_OUTPUTS, *(("best",) if analysed == "best" else ()))],
                train_dir=stage_dir,
                action=lambda step, stage=stage, student=current, stage_dir=stage_dir, hp=hp: actions.distill(
                    cfg, task, teacher_dir, student, data_dir, stage_dir, stage, hp, step.resume),
            ))
            current, deps, sources = stage_dir / analysed, [f"{k}/{s.name}/{stage}"], []
        model_steps[s.name] = (current, deps, sources)

    # -- compressed forms (ONNX, int8), each a model predicted and analysed against the teacher
    compress = {"teacher": task.teacher.compress, **{s.name: s.compress for s in task.students}}
    for model, forms in compress.items():
        for form in forms:
            base_dir, base_deps, base_sources = model_steps[model]
            export_dir = paths.root / "compressed" / f"{model}-{form}"
            steps.append(Step(
                name=f"{k}/{model}-{form}/export", kind="export", deps=list(base_deps),
                settings={"form": form}, sources=list(base_sources), outputs=[export_dir],
                action=lambda step, base_dir=base_dir, export_dir=export_dir, form=form: actions.export(
                    base_dir, export_dir, form),
            ))
            model_steps[f"{model}-{form}"] = (export_dir, [f"{k}/{model}-{form}/export"], [])

    # -- predictions, footprints, analyses
    for model, (model_dir, deps, sources) in model_steps.items():
        for role, split in splits.items():
            files = prediction_files(out, k, model, role)
            steps.append(Step(
                name=f"{k}/{model}/predict-{role}", kind="predict", deps=[data_step, *deps],
                settings={"task": task.task, "split": split, "batch_size": cfg.predict_batch_size,
                          "max_length": cfg.max_length, **cols},
                sources=list(sources), outputs=files,
                action=lambda step, model_dir=model_dir, split=split, files=files: actions.predict(
                    cfg, task, model_dir, data_dir, split, files[0]),
            ))
        if cfg.footprint.enabled:
            fp_out = paths.root / "footprint" / f"{model}.json"
            steps.append(Step(
                name=f"{k}/{model}/footprint", kind="footprint", deps=[data_step, *deps],
                settings={**dataclasses.asdict(cfg.footprint), **cols},
                sources=list(sources), outputs=[fp_out],
                action=lambda step, model_dir=model_dir, fp_out=fp_out: actions.footprint(
                    cfg, task, model_dir, data_dir, fp_out),
            ))
            report_deps.append(f"{k}/{model}/footprint")
        report_deps += [f"{k}/{model}/predict-{role}" for role in splits]

    for s in analysed_students(task):
        last = f"{k}/{s.name}/{s.stages[-1]}" if s.stages else None
        run_json = paths.student(s.name) / s.stages[-1] / "run.json" if s.stages else None
        deps = [f"{k}/{m}/predict-{role}" for m in ("teacher", s.name) for role in splits]
        if last is not None and s.stages[-1] == "stage2":
            deps.append(last)  # β comes from the prediction layer's run.json
        analysis = paths.student(s.name) / "analysis.json"
        steps.append(Step(
            name=f"{k}/{s.name}/analyze", kind="analyze", deps=deps,
            settings={"kappa": task.kappa, **dataclasses.asdict(cfg.analysis), "seed": cfg.seed},
            outputs=[analysis],
            action=lambda step, s=s, run_json=run_json, analysis=analysis: actions.analyze(
                cfg, task, s, run_json, analysis),
        ))
        report_deps.append(f"{k}/{s.name}/analyze")
        report_deps += [f"{k}/{s.name}/{st}" for st in s.stages]
        if s.general is not None:
            report_deps.append(f"{k}/{s.name}/general")
    if task.teacher.encoder is not None:
        report_deps.append(f"{k}/teacher/finetune")
    return steps

