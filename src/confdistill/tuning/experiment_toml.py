"""An experiment as TOML, in the format of :mod:`confdistill.experiments.config` (best.toml).

The document is built as plain data (:func:`experiment_document`) and written by ``tomli-w``;
:func:`confdistill.experiments.config.load_experiment` reads it back into the same configuration.
TOML has no null: an unset optional setting (a config field typed ``X | None``) is written as
``"none"``, which the loader reads back as None (leaving it out would bring back the field's
default, e.g. ``eval_step`` 50, and the file would no longer train the same model); other unset
values are left out.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from confdistill.experiments import schema
from confdistill.experiments.config import ExperimentConfig
from confdistill.experiments.specs import StudentSpec


def _plain(v: Any) -> Any:
    """``v`` as the types tomli-w writes: paths as strings, tuples as lists, no None inside tables."""
    if isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):  # e.g. a custom task's ``columns``
        return {str(k): _plain(x) for k, x in v.items() if x is not None}
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _table(items: dict[str, Any], *, optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A TOML table of ``items``: None written as "none" for the keys in ``optional``, else left out."""
    return {k: "none" if v is None else _plain(v) for k, v in items.items() if v is not None or k in optional}


def optional_fields(table: type[Any]) -> frozenset[str]:
    """Fields of a schema table (e.g. :class:`~confdistill.experiments.schema.Stage2Table`) typed
    ``X | None`` (may be switched off with ``"none"``)."""
    return frozenset(name for name, f in table.model_fields.items()
                     if type(None) in typing.get_args(f.annotation) or f.default is None)


#: The schema's stage tables, by the key a student (or a teacher, ``finetune``) writes them under.
_STAGE_TABLES: dict[str, type[Any]] = {"stage1": schema.Stage1Table, "stage2": schema.Stage2Table,
                                       "general": schema.GeneralTable, "finetune": schema.FinetuneTable}


def _schema_table(table: type[Any], spec: Any, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """``spec``'s values under the keys of the schema ``table`` (a key by its alias, ``from``), in the
    schema's order: every key the schema reads is written, so none is lost on the way back."""
    out: dict[str, Any] = {}
    for name, f in table.model_fields.items():
        value = getattr(spec, name, None)
        if name in skip or value is None or (isinstance(value, tuple | list | dict) and not value):
            continue
        if name in _STAGE_TABLES:
            value = _table(value, optional=optional_fields(_STAGE_TABLES[name]))
        out[f.alias or name] = value
    return _table(out)


def _student(s: StudentSpec) -> dict[str, Any]:
    """A student's table: what the schema's :class:`~confdistill.experiments.schema.StudentTable`
    reads, from the spec. ``stage`` is distill's word for ``stages`` (written as ``stages``); a
    student made by general distillation or given as a directory has no ``from`` or shape keys
    (the schema refuses them beside ``general``/``dir``)."""
    made = s.general is not None or s.dir is not None
    skip = frozenset({"stage"} | ({"source", "layers", "hidden", "intermediate", "heads"} if made else set()))
    return _schema_table(schema.StudentTable, s, skip)


def experiment_document(cfg: ExperimentConfig) -> dict[str, Any]:
    """The experiment file of ``cfg`` as plain data: every hyper-parameter table (teacher
    fine-tuning, student stages, general distillation) with exactly its settings, ``None``
    written as ``"none"``."""
    fp = dataclasses.asdict(cfg.footprint)
    doc: dict[str, Any] = {
        "experiment": _table({
            "name": cfg.name, "output_dir": str(cfg.output_dir), "seed": cfg.seed, "kappa": cfg.kappa,
            "max_length": cfg.max_length, "predict_batch_size": cfg.predict_batch_size,
        }),
        "analysis": _table(dataclasses.asdict(cfg.analysis)),
        "footprint": _table({**fp, "batch_sizes": list(fp["batch_sizes"])}),
        "tasks": {},
    }
    for t in cfg.tasks:
        task = _table({
            "task": t.task, "data_dir": str(t.data_dir), "train_split": t.train_split, "dev_split": t.dev_split,
            "max_train_examples": t.max_train_examples, "max_dev_examples": t.max_dev_examples, "kappa": t.kappa,
        })
        if t.columns is not None:  # a custom task: its columns as the task table's keys
            c = t.columns
            task.update(_table({"text_column": c["text"], "text_pair_column": c.get("text_pair"),
                                "label_column": c["label"], "label_names": c.get("label_names")}))
        # a ready teacher (dir) takes no finetune table: the schema refuses one beside dir
        task["teacher"] = _schema_table(schema.TeacherTable, t.teacher,
                                        frozenset({"finetune"}) if t.teacher.encoder is None else frozenset())
        task["students"] = [_student(s) for s in t.students]
        doc["tasks"][t.key] = task
    return doc


def experiment_to_toml(cfg: ExperimentConfig, *, comment: str = "") -> str:
    """TOML text (written by tomli-w) that :func:`confdistill.experiments.config.load_experiment`
    reads back into ``cfg``; ``comment`` becomes a first comment line."""
    import tomli_w

    head = f"# {' '.join(comment.split())}\n" if comment else ""
    return head + tomli_w.dumps(experiment_document(cfg))
