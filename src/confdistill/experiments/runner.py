"""The experiment runner: a small DAG of steps, each skipped when its content hash says it is done.

For every task: data -> teacher (fine-tuned if asked) -> teacher predictions on train and dev; for
every student: init (make-student) -> stage 1 -> stage 2 -> predictions on train and dev -> analysis;
per model a footprint (parameters, size, CPU latency); finally the report.

Each step is a node with

- an **input hash** over everything that determines its outputs: its settings, the output hashes of
  the steps it reads, the content of external inputs (data files, model directories) and the code
  version (the package version, torch/transformers versions and the source of the modules the step
  runs), and
- **outputs** (files or directories) whose content hashes are recorded after the step finished.

The manifest ``OUT/.steps/<step>.json`` stores both. A step is skipped when its manifest's input
hash equals the current one *and* its outputs re-hash to the recorded values (so a deleted or
corrupted file is rebuilt). Because a step's input hash contains its upstream steps' *output*
hashes, a changed setting re-runs exactly the steps it affects, and a rebuilt step whose outputs
come out identical stops the invalidation there (nothing downstream of identical bytes re-runs).

A killed run picks up where it stopped: finished steps are skipped, and a training step that was
interrupted resumes from its last checkpoint (``resume=True``) when it was started with the same
input hash (recorded in ``OUT/.steps/<step>.started.json``); checkpoints of other settings are
discarded rather than resumed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confdistill import __version__
from confdistill.errors import InputError
from confdistill.experiments.config import (
    ExperimentConfig,
    StudentSpec,
    TaskConfig,
    resolve_model_source,
)
from confdistill.io import sha256_file, sha256_json, write_json

PACKAGE_DIR = Path(__file__).resolve().parents[1]

#: Source folders / files (relative to the package) whose code determines each kind of step.
CODE_OF_KIND: dict[str, tuple[str, ...]] = {
    "data": ("data",),
    "finetune": ("distillation", "data", "models"),
    "make_student": ("models",),
    "stage1": ("distillation", "data", "models"),
    "stage2": ("distillation", "data", "models"),
    "predict": ("prediction", "data", "models"),
    "analyze": ("properties", "prediction/softmax_file.py"),
    "footprint": ("experiments/footprint.py", "models"),
    "report": ("reports", "properties", "prediction/softmax_file.py"),
}

#: Sub-paths of a training output directory that downstream steps read.
TRAIN_OUTPUTS = ("final", "run.json", "metrics.jsonl")

# DistillConfig.stage for each student stage.
STAGE_NAMES = {"stage1": "intermediate", "stage2": "prediction"}


@dataclass
class Step:
    """One node of the plan. ``action`` does the work; it may assume its ``deps`` are done."""

    name: str  # "SST-2/L3/stage1": unique, also the manifest's name
    kind: str  # key of CODE_OF_KIND
    deps: list[str]
    settings: dict[str, Any]
    outputs: list[Path]
    action: Callable[[Step], None]
    sources: list[Path] = field(default_factory=list)  # external inputs hashed by content
    train_dir: Path | None = None  # training output dir (resumable from its checkpoints)
    resume: bool = False  # set by the runner just before ``action``


@dataclass
class RunSummary:
    """Which steps ran and which were skipped, in plan order (``reasons``: why each ran)."""

    out: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------- hashing


class Hasher:
    """Content hashes of files and directories, memoised per (path, size, mtime) within one run."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, int, int], str] = {}

    def file(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._memo:
            self._memo[key] = sha256_file(path)
        return self._memo[key]

    def path(self, path: Path) -> str | None:
        """Hash of a file, or of a directory (relative names + file hashes, hidden entries skipped);
        None when it does not exist."""
        if path.is_file():
            return self.file(path)
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            return sha256_json({str(p.relative_to(path)): self.file(p) for p in files})
        return None


_code_memo: dict[str, str] = {}


def code_version(kind: str) -> str:
    """Hash of the package version, library versions and the source of the modules a step runs."""
    if kind not in _code_memo:
        import torch
        import transformers

        files: list[Path] = []
        for rel in CODE_OF_KIND.get(kind, ()):
            p = PACKAGE_DIR / rel
            files += sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.exists() else []
        _code_memo[kind] = sha256_json({
            "confdistill": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "source": {str(f.relative_to(PACKAGE_DIR)): sha256_file(f) for f in files},
        })
    return _code_memo[kind]


def _manifest_path(out: Path, name: str, suffix: str = ".json") -> Path:
    return out / ".steps" / (name.replace("/", "__") + suffix)


# ----------------------------------------------------------------------------- execution


def execute(
    steps: list[Step], out: Path, *, dry_run: bool = False, log: Callable[[str], None] | None = None
) -> RunSummary:
    """Run ``steps`` (in order; deps first) into ``out``, skipping those that are up to date.

    With ``dry_run`` nothing runs: each step is reported as ``skip`` (up to date), ``run`` (with the
    reason) or ``run?`` (depends on a step that will run: whether it re-runs depends on whether
    that step's outputs change).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    hasher = Hasher()
    summary = RunSummary(out=out)
    output_hash: dict[str, str] = {}
    pending: set[str] = set()  # dry run: steps that would run
    width = max((len(s.name) for s in steps), default=0)
    for i, step in enumerate(steps, 1):
        tag = f"[{i:>2}/{len(steps)}] {step.name:<{width}}"
        if dry_run and any(d in pending for d in step.deps):
            pending.add(step.name)
            summary.ran.append(step.name)
            summary.reasons[step.name] = "after upstream"
            waiting = [d for d in step.deps if d in pending]
            shown = ", ".join(waiting[:3]) + (f" and {len(waiting) - 3} more" if len(waiting) > 3 else "")
            log(f"{tag}  run?  (after {shown})")
            continue
        input_hash = _input_hash(step, output_hash, hasher)
        reason, recorded = _why_run(step, out, input_hash, hasher)
        if reason is None:
            output_hash[step.name] = recorded
            summary.skipped.append(step.name)
            log(f"{tag}  skip  (up to date)")
            continue
        summary.ran.append(step.name)
        summary.reasons[step.name] = reason
        if dry_run:
            pending.add(step.name)
            log(f"{tag}  run   ({reason})")
            continue
        log(f"{tag}  run   ({reason})")
        step.resume = _prepare_resume(step, out, input_hash)
        if step.resume:
            log(f"{' ' * len(tag)}  resuming from the checkpoints in {step.train_dir}")
        t0 = time.perf_counter()
        step.action(step)
        seconds = time.perf_counter() - t0
        hashes = {}
        for p in step.outputs:
            h = hasher.path(p)
            if h is None:
                raise RuntimeError(f"step {step.name} finished without writing {p}")
            hashes[_rel(p, out)] = h
        output_hash[step.name] = sha256_json(hashes)
        write_json(_manifest_path(out, step.name), {
            "step": step.name,
            "kind": step.kind,
            "input_hash": input_hash,
            "outputs": hashes,
            "settings": step.settings,
            "deps": step.deps,
            "seconds": round(seconds, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        _manifest_path(out, step.name, ".started.json").unlink(missing_ok=True)
        if step.train_dir is not None:
            shutil.rmtree(_stale_dir(step), ignore_errors=True)
        summary.seconds[step.name] = seconds
        log(f"{' ' * len(tag)}  done in {seconds:.1f} s")
    return summary


def _rel(p: Path, out: Path) -> str:
    try:
        return str(p.relative_to(out))
    except ValueError:
        return str(p)


def _input_hash(step: Step, output_hash: dict[str, str], hasher: Hasher) -> str:
    sources = {}
    for p in step.sources:
        h = hasher.path(p)
        if h is None:
            raise InputError(f"step {step.name}: input {p} does not exist")
        sources[str(p)] = h
    return sha256_json({
        "kind": step.kind,
        "settings": step.settings,
        "deps": {d: output_hash[d] for d in step.deps},
        "sources": sources,
        "code": code_version(step.kind),
    })


def _why_run(step: Step, out: Path, input_hash: str, hasher: Hasher) -> tuple[str | None, str]:
    """(reason to run or None, recorded output hash when up to date)."""
    manifest = _manifest_path(out, step.name)
    if not manifest.is_file():
        return "not run yet", ""
    try:
        record = json.loads(manifest.read_text())
        recorded: dict[str, str] = record["outputs"]
        recorded_input = record["input_hash"]
    except (ValueError, KeyError, TypeError):
        return "manifest unreadable", ""
    if recorded_input != input_hash:
        return "inputs changed", ""
    expected = {_rel(p, out) for p in step.outputs}
    if set(recorded) != expected:
        return "outputs changed", ""
    for rel, h in recorded.items():
        p = Path(rel) if Path(rel).is_absolute() else out / rel
        now = hasher.path(p)
        if now is None:
            return f"output missing: {rel}", ""
        if now != h:
            return f"output modified: {rel}", ""
    return None, sha256_json(recorded)


def _prepare_resume(step: Step, out: Path, input_hash: str) -> bool:
    """Decide whether a training step resumes; clear the way when it starts afresh.

    It resumes (``resume=True``: the trainer continues from its last checkpoint, or returns at once
    if that run completed) only a run that was started with the same input hash. A run of other
    settings is moved aside to ``.<dir>.stale`` (the trainer refuses to write into an OUT holding a
    run), and deleted once the new run has finished.
    """
    if step.train_dir is None:
        return False
    started = _manifest_path(out, step.name, ".started.json")
    same = False
    if started.is_file():
        try:
            same = json.loads(started.read_text()).get("input_hash") == input_hash
        except ValueError:
            same = False
    resume = same and (step.train_dir / "run.json").is_file()
    if not resume and step.train_dir.exists():
        stale = _stale_dir(step)
        shutil.rmtree(stale, ignore_errors=True)
        step.train_dir.rename(stale)
    write_json(started, {"step": step.name, "input_hash": input_hash,
                         "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return resume


def _stale_dir(step: Step) -> Path:
    assert step.train_dir is not None
    return step.train_dir.with_name(f".{step.train_dir.name}.stale")


# ----------------------------------------------------------------------------- the plan


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


def prediction_files(out: Path, task_key: str, model: str, split: str) -> list[Path]:
    """The prediction CSV and its sidecar, as written by predict_split."""
    csv = TaskPaths(out / task_key).predictions(model, split)
    return [csv, csv.with_name(csv.name + ".meta.json")]


def build_plan(cfg: ExperimentConfig) -> list[Step]:
    """The steps of an experiment, in an order where every step comes after its dependencies."""
    out = cfg.output_dir
    steps: list[Step] = []
    report_deps: list[str] = []
    for task in cfg.tasks:
        steps += _task_steps(cfg, task, report_deps)
    steps.append(
        Step(
            name="report",
            kind="report",
            deps=report_deps,
            settings={"experiment": cfg.name, "tasks": [t.key for t in cfg.tasks]},
            outputs=[out / "results.json", out / "report.md", out / "report.html", out / "figures"],
            action=lambda step: _report(cfg),
        )
    )
    names = [s.name for s in steps]
    assert len(names) == len(set(names)), "step names must be unique"
    return steps


def _task_steps(cfg: ExperimentConfig, task: TaskConfig, report_deps: list[str]) -> list[Step]:
    out = cfg.output_dir
    paths = TaskPaths(out / task.key)
    k = task.key
    steps: list[Step] = []
    splits = {"train": task.train_split, "dev": task.dev_split}
    caps = {"train": task.max_train_examples, "dev": task.max_dev_examples}

    # -- data: the split files every later step reads (a seeded subset when capped).
    src_files = {}
    data_outputs: list[Path] = []
    for role, split in splits.items():
        src = _resolve_split(task, split)
        src_files[role] = src
        data_outputs.append(paths.data / src.name if caps[role] else src)
    data_dir = paths.data if any(caps.values()) else task.data_dir
    if any(caps.values()) and not all(caps.values()):
        # One split capped: the other is copied beside it so that one folder holds both.
        data_outputs = [paths.data / src_files[r].name for r in splits]
    steps.append(Step(
        name=f"{k}/data", kind="data", deps=[],
        settings={"task": task.task, "splits": splits, "caps": caps, "seed": cfg.seed},
        sources=list(src_files.values()),
        outputs=data_outputs,
        action=lambda step: _prepare_data(task, src_files, caps, paths.data, cfg.seed),
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
                      "max_length": cfg.max_length},
            sources=[encoder],
            outputs=[paths.teacher / p for p in TRAIN_OUTPUTS],
            train_dir=paths.teacher,
            # hp is bound now: the name is reassigned below for every student stage (late binding).
            action=lambda step, hp=hp: _finetune(cfg, task, encoder, data_dir, paths.teacher, hp, step.resume),
        ))
        teacher_deps = [f"{k}/teacher/finetune"]
    model_steps = {"teacher": (teacher_dir, teacher_deps, teacher_sources)}

    # -- students
    for s in task.students:
        sp = paths.student(s.name)
        deps: list[str] = []
        sources: list[Path] = []
        if s.dir is not None:
            current = resolve_model_source(s.dir, what=f"{cfg.source}: {s.key}.dir")
            sources = [current]
        else:
            if s.source == "teacher":
                from_dir, from_deps, from_sources = teacher_dir, teacher_deps, teacher_sources
            else:
                from_dir = resolve_model_source(s.source, what=f"{cfg.source}: {s.key}.from")
                from_deps, from_sources = [], [from_dir]
            init = sp / "init"
            steps.append(Step(
                name=f"{k}/{s.name}/init", kind="make_student", deps=list(from_deps),
                settings={"layers": s.layers, "hidden": s.hidden, "intermediate": s.intermediate,
                          "heads": s.heads, "task": task.task, "seed": cfg.seed},
                sources=list(from_sources), outputs=[init],
                action=lambda step, s=s, from_dir=from_dir, init=init: _make_student(
                    cfg, task, s, from_dir, init),
            ))
            current, deps, sources = init, [f"{k}/{s.name}/init"], []
        for stage in s.stages:
            stage_dir = sp / stage
            hp = dict(getattr(s, stage))
            step_deps = [data_step, *teacher_deps, *deps]
            steps.append(Step(
                name=f"{k}/{s.name}/{stage}", kind=stage, deps=step_deps,
                settings={"task": task.task, "stage": STAGE_NAMES[stage], "hparams": hp, "seed": cfg.seed,
                          "dev_split": task.dev_split, "max_length": cfg.max_length},
                sources=[*teacher_sources, *sources],
                outputs=[stage_dir / p for p in TRAIN_OUTPUTS],
                train_dir=stage_dir,
                action=lambda step, stage=stage, student=current, stage_dir=stage_dir, hp=hp: _distill(
                    cfg, task, teacher_dir, student, data_dir, stage_dir, stage, hp, step.resume),
            ))
            current, deps, sources = stage_dir / "final", [f"{k}/{s.name}/{stage}"], []
        model_steps[s.name] = (current, deps, sources)

    # -- predictions, footprints, analyses
    for model, (model_dir, deps, sources) in model_steps.items():
        for role, split in splits.items():
            files = prediction_files(out, k, model, role)
            steps.append(Step(
                name=f"{k}/{model}/predict-{role}", kind="predict", deps=[data_step, *deps],
                settings={"task": task.task, "split": split, "batch_size": cfg.predict_batch_size,
                          "max_length": cfg.max_length},
                sources=list(sources), outputs=files,
                action=lambda step, model_dir=model_dir, split=split, files=files: _predict(
                    cfg, task, model_dir, data_dir, split, files[0]),
            ))
        if cfg.footprint.enabled:
            fp_out = paths.root / "footprint" / f"{model}.json"
            steps.append(Step(
                name=f"{k}/{model}/footprint", kind="footprint", deps=[data_step, *deps],
                settings=dataclasses.asdict(cfg.footprint),
                sources=list(sources), outputs=[fp_out],
                action=lambda step, model_dir=model_dir, fp_out=fp_out: _footprint(
                    cfg, task, model_dir, data_dir, fp_out),
            ))
            report_deps.append(f"{k}/{model}/footprint")
        report_deps += [f"{k}/{model}/predict-{role}" for role in splits]

    for s in task.students:
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
            action=lambda step, s=s, run_json=run_json, analysis=analysis: _analyze(
                cfg, task, s, run_json, analysis),
        ))
        report_deps.append(f"{k}/{s.name}/analyze")
        report_deps += [f"{k}/{s.name}/{st}" for st in s.stages]
    if task.teacher.encoder is not None:
        report_deps.append(f"{k}/teacher/finetune")
    return steps


def _resolve_split(task: TaskConfig, split: str) -> Path:
    from confdistill.data import resolve_split_file

    return resolve_split_file(task.task, task.data_dir, split)


# ----------------------------------------------------------------------------- actions


def _prepare_data(task: TaskConfig, src_files: dict[str, Path], caps: dict[str, int | None],
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


def _train_kwargs(task: TaskConfig, cfg: ExperimentConfig) -> dict[str, Any]:
    return {"max_seq_length": cfg.max_length, "eval_split": task.dev_split, "seed": cfg.seed}


def _finetune(cfg: ExperimentConfig, task: TaskConfig, encoder: Path, data_dir: Path, out: Path,
              hp: dict[str, Any], resume: bool) -> None:
    from confdistill.distillation import FinetuneConfig, finetune

    settings = {**_train_kwargs(task, cfg), **hp}
    config = FinetuneConfig(model=str(encoder), task=task.task, data_dir=str(data_dir), out=str(out),
                            resume=resume, **settings)
    finetune(config)


def _distill(cfg: ExperimentConfig, task: TaskConfig, teacher: Path, student: Path, data_dir: Path,
             out: Path, stage: str, hp: dict[str, Any], resume: bool) -> None:
    from confdistill.distillation import DistillConfig, distill

    settings = {**_train_kwargs(task, cfg), **hp}
    config = DistillConfig(teacher=str(teacher), student=str(student), task=task.task, data_dir=str(data_dir),
                           out=str(out), stage=STAGE_NAMES[stage], resume=resume, **settings)
    distill(config)


def _make_student(cfg: ExperimentConfig, task: TaskConfig, s: StudentSpec, from_dir: Path, out: Path) -> None:
    from confdistill.data import get_task
    from confdistill.models import make_student

    # The runner owns its folder: a re-run (changed inputs) replaces its own earlier student.
    make_student(from_dir, out, layers=s.layers, hidden=s.hidden, intermediate=s.intermediate, heads=s.heads,
                 num_labels=get_task(task.task).num_labels, seed=cfg.seed, overwrite=True)


def _predict(cfg: ExperimentConfig, task: TaskConfig, model_dir: Path, data_dir: Path, split: str,
             out: Path) -> None:
    from confdistill.prediction.predict import predict_split

    # The runner owns its folder: a re-run (changed inputs, damaged output) replaces its own pair.
    predict_split(model_dir, task.task, data_dir, split, out, batch_size=cfg.predict_batch_size,
                  max_length=cfg.max_length, overwrite=True)


def _footprint(cfg: ExperimentConfig, task: TaskConfig, model_dir: Path, data_dir: Path, out: Path) -> None:
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
        bound = dataclasses.replace(read_run_json(run_json), source=_rel(run_json, out))
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
        analysis["teacher_path"] = _rel(prediction_files(out, task.key, "teacher", role)[0], out)
        analysis["student_path"] = _rel(prediction_files(out, task.key, s.name, role)[0], out)
        result[role] = analysis
    return result


def _analyze(cfg: ExperimentConfig, task: TaskConfig, s: StudentSpec, run_json: Path | None, out: Path) -> None:
    write_json(out, analyze_student(cfg, task, s, run_json))


def _report(cfg: ExperimentConfig) -> None:
    from confdistill.reports.report import collect_results, write_report

    write_report(collect_results(cfg), cfg.output_dir)


# ----------------------------------------------------------------------------- entry point


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
