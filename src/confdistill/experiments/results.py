"""A finished experiment's results as data (``results.json``): what the report receives.

Gathers the analyses, footprints, training logs and provenance from the experiment's folder, so
that :mod:`confdistill.reports` only ever receives data and never imports the experiments.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confdistill.experiments.config import ExperimentConfig
from confdistill.experiments.paths import TaskPaths, analysed_students, prediction_files
from confdistill.reports.report import SCHEMA, provenance, student_row


def collect_results(cfg: ExperimentConfig, *, command: str | Sequence[str] | None = None) -> dict[str, Any]:
    """Gather the finished experiment's analyses, footprints, training logs and provenance.

    Reads ``OUT/<task>/<student>/analysis.json`` (``{"train": …, "dev": …}``, each a
    ``PairAnalysis.to_dict()``), ``OUT/<task>/footprint/<model>.json`` and the runs'
    ``metrics.jsonl``. ``command``: the command line to record (default: this process' own when
    it is the ``confdistill`` command). Paths are relative to ``cfg.output_dir``.
    """
    out = cfg.output_dir
    rows: list[dict[str, Any]] = []
    footprint: dict[str, Any] = {}
    training: dict[str, Any] = {}
    for task in cfg.tasks:
        paths = TaskPaths(out / task.key)
        training[task.key] = {}
        if task.teacher.encoder is not None:
            training[task.key]["teacher"] = {"finetune": _rel(paths.teacher / "metrics.jsonl", out)}
        for s in analysed_students(task):
            analysis = json.loads((paths.student(s.name) / "analysis.json").read_text())
            files = {f"{m}_{role}": _rel(prediction_files(out, task.key, name, role)[0], out)
                     for m, name in (("teacher", "teacher"), ("student", s.name)) for role in ("train", "dev")}
            row = student_row(task.key, task.task, s.name, analysis["train"], analysis["dev"], files)
            rows.append({**row, "compressed_from": s.compressed_from, "compression": s.form})
            if s.compressed_from is None:
                stages = (*(("general",) if s.general is not None else ()), *s.stages)
                training[task.key][s.name] = {
                    st: _rel(paths.student(s.name) / st / "metrics.jsonl", out) for st in stages
                }
        fp_dir = paths.root / "footprint"
        if fp_dir.is_dir():
            models = ["teacher", *[s.name for s in analysed_students(task)]]
            fps = {m: json.loads((fp_dir / f"{m}.json").read_text()) for m in models if (fp_dir / f"{m}.json").is_file()}
            teacher = fps.get("teacher")
            for fp in fps.values():
                if teacher is not None:
                    fp["parameter_ratio"] = teacher["parameters"] / fp["parameters"]
                    fp["size_ratio"] = teacher["size_bytes"] / max(fp["size_bytes"], 1)
                    fp["speedup"] = {b: teacher["latency_ms"][b] / fp["latency_ms"][b]
                                     for b in fp["latency_ms"] if b in teacher["latency_ms"]}
            footprint[task.key] = fps
    files = list(dict.fromkeys(v for r in rows for v in r["files"].values()))
    return {"schema": SCHEMA, "experiment": cfg.name, "provenance": provenance(out, files, command=command),
            "rows": rows, "footprint": footprint, "training": training}


def _rel(p: Path, out: Path) -> str:
    try:
        return str(p.relative_to(out))
    except ValueError:
        return str(p)
