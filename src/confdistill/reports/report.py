"""The experiment report: ``results.json`` (the data), ``report.md`` and a self-contained ``report.html``.

The report answers the question first: per student, "can it replace the teacher?" (φ_cnf against
the user's tolerance with its 95% verdict, accuracy change, decision flips at the operating
thresholds, ECE change, the footprint gain, and the β bound as a check of the measurement), then
the plots, then the inputs that moved (:mod:`confdistill.reports.answer`).

- ``results.json``: one row per task × student (the answer's figures, plus the full train and dev
  analyses), per task the footprint of every model, the training logs, the provenance (version,
  date, command, hashes of the prediction files and of the data files their sidecars name) and the
  figures. Schema: docs/formats.md, "Experiment results (results.json)".
- ``report.md`` (:mod:`confdistill.reports.markdown`) and ``report.html``
  (:mod:`confdistill.reports.html`: inline CSS, base64 PNGs, no scripts, readable at 420 px).

Every figure is drawn from the analyses' JSON summaries (:mod:`confdistill.reports.plots`), so the
report never rereads the prediction files (cheap at any size, and reproducible from results.json).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confdistill.io import atomic_write, write_json
from confdistill.reports.answer import combined_verdict
from confdistill.reports.plots import read_losses  # noqa: F401  (re-exported: was defined here)

#: ``results.json`` schema tag (docs/formats.md).
SCHEMA = "confdistill-results/2"


# ----------------------------------------------------------------------------- data


def student_row(task: str, glue_task: str, student: str, train: dict[str, Any], dev: dict[str, Any],
                files: dict[str, str]) -> dict[str, Any]:
    """One ``results.json`` row from a student's train and dev analyses (``PairAnalysis.to_dict()``)."""
    t_acc, s_acc = dev.get("teacher_accuracy"), dev.get("student_accuracy")
    cal = dev.get("calibration") or {}
    ece = {m: (cal.get(m) or {}).get("ece") for m in ("teacher", "student", "delta")}
    notes = [*(train.get("judgement_notes") or []), *(dev.get("judgement_notes") or [])]
    warnings = [*(train.get("warnings") or []), *(dev.get("warnings") or [])]
    return {
        "task": task,
        "glue_task": glue_task,
        "student": student,
        "answer": combined_verdict(train.get("verdict_95"), dev.get("verdict_95")),
        "labelled": bool(dev.get("labelled", t_acc is not None)),
        "set": dev.get("set"),
        "delta_kind": dev.get("delta_kind"),
        "teacher_accuracy_train": train.get("teacher_accuracy"),
        "teacher_accuracy_dev": t_acc,
        "student_accuracy_train": train.get("student_accuracy"),
        "student_accuracy_dev": s_acc,
        "accuracy_change_dev": None if t_acc is None or s_acc is None else s_acc - t_acc,
        "agreement_dev": dev.get("agreement"),
        "sigma_train": train.get("sigma"),
        "sigma_dev": dev.get("sigma"),
        "sigma_ci95_train": train.get("sigma_ci95"),
        "sigma_ci95_dev": dev.get("sigma_ci95"),
        "sigma_one_sided95_train": train.get("sigma_one_sided95"),
        "sigma_one_sided95_dev": dev.get("sigma_one_sided95"),
        "kappa": train.get("kappa"),
        "kappa_source": train.get("kappa_source"),
        "verdict": train.get("verdict"),
        "verdict_95": train.get("verdict_95"),
        "verdict_dev": dev.get("verdict"),
        "verdict_95_dev": dev.get("verdict_95"),
        # The bound is about σ over X_train: the train analysis' check is the one that means anything.
        "bound": {"check": train.get("bound_check"), "kappa_beta": train.get("kappa_from_beta"),
                  "beta": train.get("beta"), "n_train": train.get("n_train"), "gamma": train.get("gamma"),
                  "alpha": train.get("alpha"), "temperature": train.get("temperature")},
        "flips_dev": dev.get("flips") or {},
        "negative_flips_dev": dev.get("negative_flips"),
        "positive_flips_dev": dev.get("positive_flips"),
        "accuracy_test_dev": dev.get("accuracy_test"),
        # Why a split cannot be judged, named first in the report (docs/method.md, "Not informative").
        "not_informative": list(dict.fromkeys([*(train.get("not_informative") or []),
                                               *(dev.get("not_informative") or [])])),
        "ece_teacher_dev": ece["teacher"],
        "ece_student_dev": ece["student"],
        "ece_change_dev": ece["delta"],
        "ece_change_ci95_dev": ((cal.get("ci95") or {}).get("delta") or {}).get("ece"),
        "n_rows_train": train.get("n"),
        "n_set_train": train.get("n_set", train.get("n_both")),
        "n_both_train": train.get("n_both"),
        "n_rows_dev": dev.get("n"),
        "n_set_dev": dev.get("n_set", dev.get("n_both")),
        "n_both_dev": dev.get("n_both"),
        "notes": list(dict.fromkeys(notes)),
        "warnings": list(dict.fromkeys(warnings)),
        "files": files,
        "analysis": {"train": train, "dev": dev},
    }


def provenance(out: Path, files: Sequence[str], *, command: str | Sequence[str] | None = None) -> dict[str, Any]:
    """Version, date, command line and, per prediction file, its SHA-256 and its sidecar's data hash."""
    from confdistill import __version__

    if command is None:
        command = _own_command()
    elif not isinstance(command, str):
        command = shlex.join(command)
    config = out / "experiment.json"
    return {
        "confdistill_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "python": platform.python_version(),
        "experiment_json_sha256": _sha256(config) if config.is_file() else None,
        "files": [_file_entry(out, f) for f in files],
    }


def _own_command() -> str | None:
    """This process' command line when it is ``confdistill …`` (not, e.g., a test runner)."""
    argv0 = sys.argv[0] if sys.argv else ""
    name = Path(argv0).name
    if name.startswith("confdistill") or (name == "__main__.py" and "confdistill" in argv0):
        return shlex.join(["confdistill", *sys.argv[1:]])
    return None


def _file_entry(out: Path, rel: str) -> dict[str, Any]:
    path = out / rel
    # The sidecar is <file>.meta.json (docs/formats.md, "Sidecar"): read here as plain JSON.
    side = path.with_name(path.name + ".meta.json")
    meta: dict[str, Any] = {}
    if side.is_file():
        try:
            loaded = json.loads(side.read_text())
            meta = loaded if isinstance(loaded, dict) else {}
        except (json.JSONDecodeError, OSError):
            meta = {}
    return {"path": rel, "sha256": _sha256(path) if path.is_file() else None,
            "bytes": path.stat().st_size if path.is_file() else None,
            "model": meta.get("model"), "split": meta.get("split"), "n_rows": meta.get("n_rows"),
            "data_file": meta.get("data_file"), "data_sha256": meta.get("data_sha256")}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _rel(p: Path, out: Path) -> str:
    try:
        return str(p.relative_to(out))
    except ValueError:
        return str(p)


# ----------------------------------------------------------------------------- figures


def make_figures(results: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    """Write the report's PNGs under ``out/figures``, drawn from the analyses' summaries.

    Returns ``[{"path", "title", "section", "key", "wide"}]`` (``wide``: spans the page): ``key`` is ``"<task>/<student>"`` for a
    student's figures (confidence on train and dev, Δconf on train and dev, reliability on dev when labelled,
    decision flips on dev), null for the summary (σ per task and student) and the training-loss
    figure of each task (one panel per stage).
    """
    from confdistill.reports import plots

    fig_dir = out / "figures"
    figures: list[dict[str, Any]] = []

    def add(path: Path, title: str, section: str, key: str | None = None, wide: bool = False) -> None:
        figures.append({"path": _rel(path, out), "title": title, "section": section, "key": key, "wide": wide})

    entries = [
        {"group": r["task"], "series": f"{r['student']} {role}", "sigma": r[f"sigma_{role}"],
         "ci": r.get(f"sigma_ci95_{role}"), "kappa": r["kappa"]}
        for r in results["rows"] for role in ("train", "dev") if r.get(f"sigma_{role}") is not None
    ]
    if entries:
        path = plots.plot_sigma_summary(entries, fig_dir / "sigma_summary.png",
                                        title="σ of Δconf per task and student (black: tolerance κ)")
        add(path, "σ(train), σ(dev) with 95% bootstrap intervals, and the tolerance κ", "summary")

    for task, fps in results.get("footprint", {}).items():
        points = tradeoff_points(results, task, fps)
        if len(points) > 1:
            batch = points[0]["batch"]
            kappa = next((r["kappa"] for r in results["rows"] if r["task"] == task), None)
            path = plots.plot_tradeoff(points, fig_dir / f"{task}_tradeoff.png", kappa=kappa, batch=batch,
                                       title=f"{task}: speed-up against σ (which model to ship)")
            add(path, f"Speed-up against σ(train), {task}: below the dashed line and to the right is better",
                "summary")

    for row in results["rows"]:
        key = f"{row['task']}/{row['student']}"
        stem = f"{row['task']}_{row['student']}"
        name = f"{row['task']} · {row['student']}"
        splits = row["analysis"]
        rows_word = plots.SET_WORDS.get(str(row.get("set")), "set rows")
        for role, a in splits.items():
            # One image per split (not one two-panel image): they sit side by side on a wide screen
            # and stack at full width on a phone.
            path = plots.plot_confidence_density(
                {"teacher": a["histograms"]["teacher_conf"], "student": a["histograms"]["student_conf"]},
                fig_dir / f"{stem}_{role}_confidence.png", delta_kind=row.get("delta_kind"),
                title=f"{name} · {role}: confidence ({rows_word}, σ = {a['sigma']:.4f})")
            add(path, f"Confidence of teacher and student on {role}, {name} ({rows_word})", "confidence", key)
        for role, a in splits.items():
            path = plots.plot_delta_conf(a["histograms"]["delta"], fig_dir / f"{stem}_{role}_delta.png",
                                         sigma=a.get("sigma"), mean=a.get("mean_delta"), tolerance=row["kappa"],
                                         title=f"{name} · {role}: Δconf = teacher − student")
            add(path, f"Δconf on {role}, {name}", "delta", key)
        dev = splits["dev"]
        if dev.get("reliability"):
            cal = dev.get("calibration") or {}
            ece = {m: (cal.get(m) or {}).get("ece") for m in ("teacher", "student")}
            path = plots.plot_reliability_bins(dev["reliability"], fig_dir / f"{stem}_reliability.png",
                                               title=f"{name}: reliability on dev (all rows)", ece=ece)
            add(path, f"Reliability on dev, {name}", "calibration", key)
        if dev.get("flip_curve"):
            path = plots.plot_flip_curve(dev["flip_curve"], fig_dir / f"{stem}_flips.png", flips=dev.get("flips"),
                                         title=f"{name}: decision flips on dev (all rows)")
            add(path, f"Decision flips over τ on dev, {name}", "decisions", key)

    for task, models in results["training"].items():
        stages: dict[str, dict[str, Path]] = {}
        for model, runs in models.items():
            for stage, rel in runs.items():
                if (out / rel).is_file():
                    stages.setdefault(stage, {})[model] = out / rel
        if stages:
            path = plots.plot_stage_losses(stages, fig_dir / f"{task}_training_loss.png",
                                           title=f"{task}: training loss per stage")
            add(path, f"Training loss, {task} (one panel per stage)", "training", wide=True)
    return figures


def tradeoff_points(results: dict[str, Any], task: str, fps: dict[str, Any]) -> list[dict[str, Any]]:
    """One point per model of ``task`` with a footprint: speed-up at the largest batch size, σ(train)."""
    teacher = fps.get("teacher")
    if teacher is None:
        return []
    batch = max(teacher["latency_ms"], key=lambda b: int(b))
    points = [{"model": "teacher", "speedup": 1.0, "sigma": 0.0, "ci": None, "runtime": teacher.get("runtime"),
               "batch": batch}]
    for r in results["rows"]:
        fp = fps.get(r["student"])
        if r["task"] != task or fp is None or r.get("sigma_train") is None or batch not in fp.get("speedup", {}):
            continue
        points.append({"model": r["student"], "speedup": fp["speedup"][batch], "sigma": r["sigma_train"],
                       "ci": r.get("sigma_ci95_train"), "runtime": fp.get("runtime"), "batch": batch})
    return points


# ----------------------------------------------------------------------------- writing


def write_report(results: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write figures, ``results.json``, ``report.md`` and ``report.html`` into ``out`` (atomically each)."""
    from confdistill.reports.html import render_html
    from confdistill.reports.markdown import render_markdown

    out = Path(out)
    figures = make_figures(results, out)
    write_json(out / "results.json", {**results, "figures": figures})
    with atomic_write(out / "report.md") as fh:
        fh.write(render_markdown(results, figures))
    with atomic_write(out / "report.html") as fh:
        fh.write(render_html(results, figures, out))
    return {"results": out / "results.json", "markdown": out / "report.md", "html": out / "report.html"}
