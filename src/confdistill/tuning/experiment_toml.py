"""An experiment as TOML, in the format of :mod:`confdistill.experiments.config` (best.toml)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from confdistill.experiments.config import ExperimentConfig


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str | Path):
        return json.dumps(str(v), ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table (e.g. a custom task's ``columns``); TOML has no null
        return "{" + ", ".join(f"{_toml_key(str(k))} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() and k.isascii() else json.dumps(k)


def _table(lines: list[str], header: str | None, items: dict[str, Any], *, optional: frozenset[str] = frozenset()) -> None:
    # TOML has no null. A None of a key in ``optional`` (a config field typed ``X | None``) is written
    # as "none", which the experiment loader reads back as None: leaving it out would bring back the
    # field's default (e.g. eval_step 50), and the file would no longer train the same model.
    body = [
        f"{_toml_key(k)} = {_toml_value('none' if v is None else v)}"
        for k, v in items.items()
        if v is not None or k in optional
    ]
    if header is not None:
        lines.append("")
        lines.append(header)
    lines.extend(body)


def optional_fields(class_name: str) -> frozenset[str]:
    """Fields of ``confdistill.distillation.<class_name>`` typed ``X | None`` (may be switched off)."""
    import typing

    from confdistill.distillation import config as dconfig

    cls = getattr(dconfig, class_name)
    hints = typing.get_type_hints(cls)
    return frozenset(f.name for f in dataclasses.fields(cls) if type(None) in typing.get_args(hints[f.name]))


def experiment_to_toml(cfg: ExperimentConfig, *, comment: str = "") -> str:
    """TOML text that :func:`confdistill.experiments.config.load_experiment` reads back into ``cfg``:
    every hyper-parameter table (teacher fine-tuning, student stages) with exactly its settings,
    ``None`` written as ``"none"``."""
    distill_optional, finetune_optional = optional_fields("DistillConfig"), optional_fields("FinetuneConfig")
    lines: list[str] = [f"# {comment}"] if comment else []
    _table(lines, "[experiment]", {
        "name": cfg.name, "output_dir": str(cfg.output_dir), "seed": cfg.seed, "kappa": cfg.kappa,
        "max_length": cfg.max_length, "predict_batch_size": cfg.predict_batch_size,
    })
    _table(lines, "[analysis]", dataclasses.asdict(cfg.analysis))
    fp = dataclasses.asdict(cfg.footprint)
    fp["batch_sizes"] = list(fp["batch_sizes"])
    _table(lines, "[footprint]", fp)
    for t in cfg.tasks:
        tk = f"tasks.{_toml_key(t.key)}"
        _table(lines, f"[{tk}]", {
            "task": t.task, "data_dir": str(t.data_dir), "train_split": t.train_split, "dev_split": t.dev_split,
            "max_train_examples": t.max_train_examples, "max_dev_examples": t.max_dev_examples, "kappa": t.kappa,
        })
        _table(lines, f"[{tk}.teacher]", {"dir": t.teacher.dir, "encoder": t.teacher.encoder})
        if t.teacher.encoder is not None and t.teacher.finetune:
            _table(lines, f"[{tk}.teacher.finetune]", t.teacher.finetune, optional=finetune_optional)
        for s in t.students:
            _table(lines, f"[[{tk}.students]]", {
                "name": s.name,
                "from": None if s.dir is not None else s.source,
                "layers": s.layers, "hidden": s.hidden, "intermediate": s.intermediate, "heads": s.heads,
                "dir": s.dir, "stages": list(s.stages),
            })
            for stage in ("stage1", "stage2"):
                hp = getattr(s, stage)
                if hp:
                    _table(lines, f"[{tk}.students.{stage}]", hp, optional=distill_optional)
    return "\n".join(lines) + "\n"
