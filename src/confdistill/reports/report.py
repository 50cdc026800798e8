"""The experiment report: ``results.json`` (the data), ``report.md`` and a self-contained ``report.html``.

- ``results.json``: the RQ1 table's rows (task × student: teacher and student accuracy on train and
  dev, σ(train), σ(dev), κ and its source, verdict φ_cnf, plus the full analyses and the
  prediction files they came from), and per task the footprint of every model (parameters, bytes
  on disk, CPU latency per example at each batch size, speed-up over the teacher).
- ``report.md``: the same tables in Markdown, figures linked from ``figures/`` next to it.
- ``report.html``: one file that opens offline: inline CSS, figures embedded as base64 PNG data
  URIs, no JavaScript.

Figures: per task × student the confidence plot and the Δconf distribution
(:mod:`confdistill.reports.plots`), and per task the training-loss curves of the teacher's
fine-tuning and of every distillation stage (from each run's ``metrics.jsonl``).
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confdistill.io import atomic_path, atomic_write, write_json

if TYPE_CHECKING:
    from confdistill.experiments.config import ExperimentConfig

VERDICT_TEXT = {"holds": "holds", "fails": "fails", "no verdict": "no verdict"}


# ----------------------------------------------------------------------------- data


def collect_results(cfg: ExperimentConfig) -> dict[str, Any]:
    """Gather the finished experiment's analyses, footprints and training logs into plain data.

    Paths in the result are relative to ``cfg.output_dir`` so the folder can be moved or shared.
    """
    from confdistill.experiments.runner import TaskPaths, prediction_files

    out = cfg.output_dir
    rows: list[dict[str, Any]] = []
    footprint: dict[str, Any] = {}
    training: dict[str, Any] = {}
    for task in cfg.tasks:
        paths = TaskPaths(out / task.key)
        training[task.key] = {}
        if task.teacher.encoder is not None:
            training[task.key]["teacher"] = {"finetune": _rel(paths.teacher / "metrics.jsonl", out)}
        for s in task.students:
            analysis = json.loads((paths.student(s.name) / "analysis.json").read_text())
            train, dev = analysis["train"], analysis["dev"]
            files = {f"{m}_{role}": _rel(prediction_files(out, task.key, name, role)[0], out)
                     for m, name in (("teacher", "teacher"), ("student", s.name)) for role in ("train", "dev")}
            rows.append({
                "task": task.key,
                "glue_task": task.task,
                "student": s.name,
                "teacher_accuracy_train": train["teacher_accuracy"],
                "teacher_accuracy_dev": dev["teacher_accuracy"],
                "student_accuracy_train": train["student_accuracy"],
                "student_accuracy_dev": dev["student_accuracy"],
                "sigma_train": train["sigma"],
                "sigma_dev": dev["sigma"],
                "kappa": train["kappa"],
                "kappa_source": analysis.get("kappa_source"),
                "verdict": train["verdict"],
                "verdict_dev": dev["verdict"],
                "beta": analysis.get("beta"),
                "n_train": train["n"],
                "n_both_train": train["n_both"],
                "n_dev": dev["n"],
                "n_both_dev": dev["n_both"],
                "files": files,
                "analysis": {"train": train, "dev": dev},
            })
            training[task.key][s.name] = {
                st: _rel(paths.student(s.name) / st / "metrics.jsonl", out) for st in s.stages
            }
        fp_dir = paths.root / "footprint"
        if fp_dir.is_dir():
            models = ["teacher", *[s.name for s in task.students]]
            fps = {m: json.loads((fp_dir / f"{m}.json").read_text()) for m in models if (fp_dir / f"{m}.json").is_file()}
            teacher = fps.get("teacher")
            for fp in fps.values():
                if teacher is not None:
                    fp["parameter_ratio"] = teacher["parameters"] / fp["parameters"]
                    fp["size_ratio"] = teacher["size_bytes"] / max(fp["size_bytes"], 1)
                    fp["speedup"] = {b: teacher["latency_ms"][b] / fp["latency_ms"][b]
                                     for b in fp["latency_ms"] if b in teacher["latency_ms"]}
            footprint[task.key] = fps
    return {"experiment": cfg.name, "rows": rows, "footprint": footprint, "training": training}


def _rel(p: Path, out: Path) -> str:
    try:
        return str(p.relative_to(out))
    except ValueError:
        return str(p)


# ----------------------------------------------------------------------------- figures


def make_figures(results: dict[str, Any], out: Path) -> list[dict[str, str]]:
    """Write the report's PNGs under ``out/figures``; returns ``[{"path", "title", "section"}]``.

    - summary: σ(train) and σ(dev) per task and student with bootstrap CIs and κ
      (:func:`~confdistill.reports.plots.plot_sigma_summary`);
    - confidence: teacher vs student confidence on the both-correct rows, train and dev panels;
    - delta: the Δconf distribution with ±σ and ±κ (:func:`~confdistill.reports.plots.plot_delta_histogram`);
    - calibration: reliability diagram of the teacher and every student on dev, per task;
    - training: loss curves of every training run of a task.
    """
    from confdistill.prediction.softmax_file import read_softmax
    from confdistill.properties import analyze_pair
    from confdistill.reports import plots

    fig_dir = out / "figures"
    figures: list[dict[str, str]] = []

    def add(path: Path, title: str, section: str) -> None:
        figures.append({"path": _rel(path, out), "title": title, "section": section})

    entries = [
        {"group": r["task"], "series": f"{r['student']} {role}", "sigma": r["analysis"][role]["sigma"],
         "ci": r["analysis"][role].get("sigma_ci95"), "kappa": r["kappa"]}
        for r in results["rows"] for role in ("train", "dev")
    ]
    if entries:
        path = plots.plot_sigma_summary(entries, fig_dir / "sigma_summary.png",
                                        title="σ of Δconf per task and student (black: κ)")
        add(path, "σ(train), σ(dev) with 95% bootstrap intervals, and κ", "summary")

    calibration: dict[str, dict[str, tuple[Any, Any]]] = {}
    for row in results["rows"]:
        files = {k: read_softmax(out / v) for k, v in row["files"].items()}
        stem = f"{row['task']}_{row['student']}"
        pairs = {}
        for role in ("train", "dev"):
            recorded = row["analysis"][role]
            # Recomputed from the files (cheap without bootstrap) for the per-row arrays.
            pairs[role] = analyze_pair(files[f"teacher_{role}"], files[f"student_{role}"], n_bootstrap=0,
                                       delta=recorded.get("delta_kind") or "auto")
        conf = fig_dir / f"{stem}_confidence.png"
        plot_confidence_pair(pairs, conf, title=f"{row['task']} · teacher vs {row['student']}")
        add(conf, f"Confidence, {row['task']} · teacher vs {row['student']} (both-correct rows)", "confidence")
        for role in ("train", "dev"):
            a = pairs[role]
            path = plots.plot_delta_histogram(
                a.delta, fig_dir / f"{stem}_{role}_delta.png", sigma=a.sigma, mean=a.mean_delta,
                kappa=row["kappa"], title=f"{row['task']} · {row['student']} · {role}: Δconf")
            add(path, f"Δconf, {row['task']} · {row['student']} · {role}", "delta")
        cal = calibration.setdefault(row["task"], {})
        cal.setdefault("teacher", (pairs["dev"].teacher_maxprob, pairs["dev"].teacher_correct))
        cal[row["student"]] = (pairs["dev"].student_maxprob, pairs["dev"].student_correct)
    for task, curves in calibration.items():
        path = plots.plot_reliability(curves, fig_dir / f"{task}_reliability.png",
                                      title=f"{task}: reliability on dev")
        add(path, f"Reliability on dev, {task}", "calibration")
    for task, models in results["training"].items():
        curves = {f"{model} {stage}": out / path for model, stages in models.items()
                  for stage, path in stages.items() if (out / path).is_file()}
        if curves:
            loss = fig_dir / f"{task}_training_loss.png"
            plot_loss_curves(curves, loss, title=f"{task}: training loss")
            add(loss, f"Training loss, {task}", "training")
    return figures


def plot_confidence_pair(pairs: dict[str, Any], out: Path, *, title: str) -> Path:
    """Teacher and student confidence distributions overlaid, one panel per split.

    ``pairs``: split -> PairAnalysis; plotted are its ``teacher_conf`` / ``student_conf`` (n_both,),
    the confidences whose difference is Δconf.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(pairs), figsize=(5.2 * len(pairs), 3.6), squeeze=False)
    bins = np.linspace(0.0, 1.0, 21)
    for ax, (role, a) in zip(axes.flat, pairs.items(), strict=True):
        label = "p0" if a.delta_kind == "p0" else "p(gold label)"
        ax.hist(a.teacher_conf, bins=bins, density=True, alpha=0.55, color="tab:blue", label="teacher")
        ax.hist(a.student_conf, bins=bins, density=True, histtype="step", lw=1.8, color="tab:orange",
                label="student")
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"confidence ({label})")
        ax.set_ylabel("density")
        ax.set_title(f"{role} (n_both = {a.n_both}, σ = {a.sigma:.4f})", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out


def read_losses(metrics_jsonl: Path) -> tuple[list[float], list[float]]:
    """(global step, training loss) pairs from a run's ``metrics.jsonl`` (rows with a ``loss``)."""
    steps: list[float] = []
    losses: list[float] = []
    for line in metrics_jsonl.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        loss = rec.get("loss", rec.get("train_loss"))
        if isinstance(loss, int | float) and math.isfinite(loss) and rec.get("split", "train") == "train":
            steps.append(float(rec.get("step", rec.get("global_step", len(steps)))))
            losses.append(float(loss))
    return steps, losses


def plot_loss_curves(curves: dict[str, Path], out: Path, *, title: str) -> Path:
    """Every run's training loss on one log-scale axes, x = fraction of the run's steps.

    Runs have different lengths and losses on different scales (stage-1 MSE, stage-2 soft CE,
    fine-tuning CE): a shared progress axis and a log y-axis keep them readable on one plot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    positive = True
    for label, path in curves.items():
        steps, losses = read_losses(path)
        if not losses:
            continue
        last = max(steps) or 1.0
        ax.plot([x / last for x in steps], losses, lw=1.2, label=label)
        positive = positive and min(losses) > 0
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("fraction of the run's training steps")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight")
    plt.close(fig)
    return out


# ----------------------------------------------------------------------------- rendering


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "–"
        return f"{x:.{digits}f}"
    return str(x)


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def rq1_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of the RQ1 table."""
    header = ["task", "student", "teacher acc train", "teacher acc dev", "student acc train",
              "student acc dev", "σ(train)", "σ(dev)", "κ", "φ_cnf (train)", "φ_cnf (dev)"]
    cells = []
    for r in results["rows"]:
        kappa = _fmt(r["kappa"]) + (" (user)" if r.get("kappa_source") == "user" else "")
        cells.append([r["task"], r["student"], _pct(r["teacher_accuracy_train"]), _pct(r["teacher_accuracy_dev"]),
                      _pct(r["student_accuracy_train"]), _pct(r["student_accuracy_dev"]), _fmt(r["sigma_train"]),
                      _fmt(r["sigma_dev"]), kappa, VERDICT_TEXT.get(r["verdict"], str(r["verdict"])),
                      VERDICT_TEXT.get(r["verdict_dev"], str(r["verdict_dev"]))])
    return header, cells


def footprint_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the "what distillation bought" table."""
    batch_sizes: list[str] = []
    for fps in results["footprint"].values():
        for fp in fps.values():
            batch_sizes += [b for b in fp["latency_ms"] if b not in batch_sizes]
    header = ["task", "model", "parameters", "size on disk (MB)",
              *[f"ms/example @ batch {b}" for b in batch_sizes], *[f"speed-up @ {b}" for b in batch_sizes]]
    cells = []
    for task, fps in results["footprint"].items():
        for model, fp in fps.items():
            ratio = fp.get("parameter_ratio")
            params = f"{fp['parameters'] / 1e6:.2f} M" + ("" if model == "teacher" or not ratio else f" (÷{ratio:.1f})")
            cells.append([task, model, params, f"{fp['size_bytes'] / 1e6:.1f}",
                          *[_fmt(fp["latency_ms"].get(b), 2) for b in batch_sizes],
                          *[(f"{fp['speedup'][b]:.2f}×" if b in fp.get("speedup", {}) else "–") for b in batch_sizes]])
    return header, cells


def _md_table(header: list[str], cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join(lines)


def _html_table(header: list[str], cells: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="{_cell_class(c)}">{html.escape(c)}</td>' for c in row) + "</tr>"
        for row in cells
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell_class(text: str) -> str:
    return {"holds": "ok", "fails": "bad", "no verdict": "na"}.get(text, "")


def _footprint_sentence(results: dict[str, Any]) -> str:
    parts = []
    for task, fps in results["footprint"].items():
        for model, fp in fps.items():
            if model == "teacher" or "speedup" not in fp:
                continue
            sp = ", ".join(f"{v:.1f}× at batch {b}" for b, v in fp["speedup"].items())
            parts.append(f"{task} {model}: {fp.get('parameter_ratio', 0):.1f}× fewer parameters, {sp}")
    return "; ".join(parts)


INTRO = (
    "φ_cnf holds for a student when σ(train), the population standard deviation of "
    "Δconf(x) = p0_teacher(x) − p0_student(x) over the train inputs both models classify correctly, is at "
    "most κ. κ is the bound γ·sqrt(β / (N·(1−α))) from the prediction-layer distillation loss β (total over "
    "the train split, from the stage-2 run.json) unless a tolerance was given; σ(dev) is judged against the "
    "same κ."
)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1200px;
 color:#222;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}th{background:#f3f3f3}
td:first-child,td:nth-child(2){text-align:left}
td.ok{background:#e3f4e3;color:#135d13;font-weight:600}td.bad{background:#fbe3e3;color:#8a1414;font-weight:600}
td.na{color:#777}
.figs{display:flex;flex-wrap:wrap;gap:1rem}figure{margin:0;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.85rem;color:#555}
code{background:#f5f5f5;padding:0 .2rem}.note{color:#555;font-size:.9rem}
"""

SECTIONS = [("summary", "σ against κ"), ("confidence", "Confidence: teacher vs student"),
            ("delta", "Δconf distributions"), ("calibration", "Calibration"),
            ("training", "Training-loss curves")]


def render_markdown(results: dict[str, Any], figures: list[dict[str, str]]) -> str:
    """report.md: tables and figure links relative to the report's folder."""
    h1, c1 = rq1_table(results)
    parts = [f"# confdistill report: {results['experiment']}", "", INTRO, "", "## RQ1: is confidence preserved?",
             "", _md_table(h1, c1), ""]
    if results["footprint"]:
        h2, c2 = footprint_table(results)
        parts += ["## What distillation bought", "", _md_table(h2, c2), "",
                  f"CPU latency: median of timed forward passes after warm-up, fixed-length inputs "
                  f"({_seq_len(results)} tokens), {_threads(results)} thread(s), per example.", ""]
    for section, title in SECTIONS:
        figs = [f for f in figures if f["section"] == section]
        if figs:
            parts += [f"## {title}", ""] + [f"![{f['title']}]({f['path']})" for f in figs] + [""]
    parts += ["## Files", "", "Prediction files analysed (`pred,p0..,label`, one row per example, file order):", ""]
    for r in results["rows"]:
        parts.append(f"- {r['task']} / {r['student']}: " + ", ".join(f"`{v}`" for v in r["files"].values()))
    parts += ["", "`results.json` holds every number above as data.", ""]
    return "\n".join(parts)


def render_html(results: dict[str, Any], figures: list[dict[str, str]], out: Path) -> str:
    """report.html: one self-contained page (inline CSS, base64 PNGs, no scripts)."""
    h1, c1 = rq1_table(results)
    title = f"confdistill report: {html.escape(results['experiment'])}"
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>",
             f"<style>{CSS}</style></head><body>", f"<h1>{title}</h1>", f"<p>{html.escape(INTRO)}</p>",
             "<h2>RQ1: is confidence preserved?</h2>", _html_table(h1, c1)]
    if results["footprint"]:
        h2, c2 = footprint_table(results)
        parts += ["<h2>What distillation bought</h2>", _html_table(h2, c2),
                  f"<p class=\"note\">{html.escape(_footprint_sentence(results))}. CPU latency: median of timed "
                  f"forward passes after warm-up, fixed-length inputs ({_seq_len(results)} tokens), "
                  f"{_threads(results)} thread(s), per example.</p>"]
    for section, sec_title in SECTIONS:
        figs = [f for f in figures if f["section"] == section]
        if not figs:
            continue
        parts += [f"<h2>{html.escape(sec_title)}</h2>", '<div class="figs">']
        for f in figs:
            data = base64.b64encode((out / f["path"]).read_bytes()).decode("ascii")
            parts.append(f'<figure><img alt="{html.escape(f["title"])}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{html.escape(f['title'])}</figcaption></figure>")
        parts.append("</div>")
    parts += ["<h2>Files</h2><ul>"]
    for r in results["rows"]:
        parts.append(f"<li>{html.escape(r['task'])} / {html.escape(r['student'])}: "
                     + ", ".join(f"<code>{html.escape(v)}</code>" for v in r["files"].values()) + "</li>")
    parts += ["</ul><p><code>results.json</code> holds every number above as data.</p></body></html>"]
    return "\n".join(parts)


def _seq_len(results: dict[str, Any]) -> str:
    vals = {fp.get("seq_len") for fps in results["footprint"].values() for fp in fps.values()}
    return ", ".join(str(v) for v in sorted(v for v in vals if v is not None)) or "?"


def _threads(results: dict[str, Any]) -> str:
    vals = {fp.get("threads") for fps in results["footprint"].values() for fp in fps.values()}
    return ", ".join(str(v) for v in sorted(v for v in vals if v is not None)) or "?"


def write_report(results: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write figures, ``results.json``, ``report.md`` and ``report.html`` into ``out`` (atomically each)."""
    out = Path(out)
    figures = make_figures(results, out)
    write_json(out / "results.json", results)
    with atomic_write(out / "report.md") as fh:
        fh.write(render_markdown(results, figures))
    with atomic_write(out / "report.html") as fh:
        fh.write(render_html(results, figures, out))
    return {"results": out / "results.json", "markdown": out / "report.md", "html": out / "report.html"}
