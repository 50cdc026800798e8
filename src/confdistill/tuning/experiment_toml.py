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
from pathlib import Path
from typing import Any

from confdistill.experiments.config import ExperimentConfig


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


def optional_fields(class_name: str) -> frozenset[str]:
    """Fields of ``confdistill.distillation.<class_name>`` typed ``X | None`` (may be switched off)."""
    import typing

    from confdistill.distillation import config as dconfig

    cls = getattr(dconfig, class_name)
    return frozenset(name for name, f in cls.model_fields.items()
                     if type(None) in typing.get_args(f.annotation) or f.default is None)


def experiment_document(cfg: ExperimentConfig) -> dict[str, Any]:
    """The experiment file of ``cfg`` as plain data: every hyper-parameter table (teacher
    fine-tuning, student stages) with exactly its settings, ``None`` written as ``"none"``."""
    distill_optional, finetune_optional = optional_fields("DistillConfig"), optional_fields("FinetuneConfig")
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
        task["teacher"] = _table({"dir": t.teacher.dir, "encoder": t.teacher.encoder})
        if t.teacher.encoder is not None and t.teacher.finetune:
            task["teacher"]["finetune"] = _table(t.teacher.finetune, optional=finetune_optional)
        students = []
        for s in t.students:
            student = _table({
                "name": s.name,
                "from": None if s.dir is not None else s.source,
                "layers": s.layers, "hidden": s.hidden, "intermediate": s.intermediate, "heads": s.heads,
                "dir": s.dir, "stages": list(s.stages),
            })
            for stage in ("stage1", "stage2"):
                hp = getattr(s, stage)
                if hp:
                    student[stage] = _table(hp, optional=distill_optional)
            students.append(student)
        task["students"] = students
        doc["tasks"][t.key] = task
    return doc


def experiment_to_toml(cfg: ExperimentConfig, *, comment: str = "") -> str:
    """TOML text (written by tomli-w) that :func:`confdistill.experiments.config.load_experiment`
    reads back into ``cfg``; ``comment`` becomes a first comment line."""
    import tomli_w

    head = f"# {' '.join(comment.split())}\n" if comment else ""
    return head + tomli_w.dumps(experiment_document(cfg))
