"""The files a study writes under ``OUT``, each atomically: trials.csv, pareto.png, summary.json
(and best.toml through the objective's writer)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confdistill.io import atomic_path, atomic_write, write_json
from confdistill.tuning.options import StudyOptions
from confdistill.tuning.summary import complete_rows, pareto_front, summarize, trial_rows

if TYPE_CHECKING:
    import optuna


def write_trials_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns or ["number"], extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    with atomic_write(path) as fh:
        fh.write(buf.getvalue())


def plot_pareto(rows: Sequence[dict[str, Any]], summary: dict[str, Any], path: Path) -> None:
    """Dev accuracy (y) vs σ(X_train) (x): feasible / infeasible trials, the Pareto front, the
    baseline and best trials, κ as a vertical line and the accuracy floor as a horizontal one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = complete_rows(rows)
    fig, ax = plt.subplots(figsize=(7, 4.8))
    feas = [r for r in done if r["feasible"]]
    infeas = [r for r in done if not r["feasible"]]
    if feas:
        ax.scatter([r["sigma"] for r in feas], [r["dev_accuracy"] for r in feas], c="tab:blue", s=22,
                   label=f"feasible ({len(feas)})", zorder=2)
    if infeas:
        ax.scatter([r["sigma"] for r in infeas], [r["dev_accuracy"] for r in infeas], c="tab:red", marker="x",
                   s=22, label=f"infeasible: accuracy < teacher − ε ({len(infeas)})", zorder=2)
    front = pareto_front(rows)
    if front:
        ax.step([r["sigma"] for r in front], [r["dev_accuracy"] for r in front], where="post", c="tab:orange",
                lw=1.2, zorder=1)
        ax.scatter([r["sigma"] for r in front], [r["dev_accuracy"] for r in front], facecolors="none",
                   edgecolors="tab:orange", s=90, lw=1.5, label="Pareto front", zorder=3)
    base = next((r for r in done if r["role"] == "baseline"), None)
    if base is not None:
        ax.scatter([base["sigma"]], [base["dev_accuracy"]], marker="*", c="black", s=180, label="baseline", zorder=4)
    best = summary.get("best")
    if best is not None:
        ax.scatter([best["sigma"]], [best["dev_accuracy"]], marker="D", facecolors="none", edgecolors="tab:green",
                   s=110, lw=2, label=f"best (trial {best['trial']})", zorder=4)
    if summary.get("kappa") is not None:
        ax.axvline(summary["kappa"], c="tab:purple", ls="--", lw=1.2,
                   label=f"tolerance κ = {summary['kappa']:.4g}")
    if summary.get("min_dev_accuracy") is not None:
        ax.axhline(summary["min_dev_accuracy"], c="grey", ls=":", lw=1.2,
                   label=f"teacher acc − ε = {summary['min_dev_accuracy']:.4f}")
    ax.set_xlabel("σ(X_train)  (std of Δconf over rows both models get right)")
    ax.set_ylabel("student dev accuracy")
    ax.set_title(f"study {summary.get('study_name')}: {len(done)} completed trials")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def write_outputs(
    study: optuna.Study,
    opts: StudyOptions,
    *,
    write_best: Callable[[dict[str, Any], Path], None] | None = None,
) -> dict[str, Any]:
    """Write trials.csv, pareto.png, summary.json (and best.toml through ``write_best``, given the
    best trial's parameters) under ``opts.out``; every file atomically, one worker at a time.
    Returns the summary."""
    from confdistill.tuning.folder import file_lock

    out = Path(opts.out)
    # Workers sharing OUT take turns, each reading the trials once it holds the lock: the last
    # one to write has seen every trial the others had finished (no stale summary wins).
    with file_lock(out / ".outputs.lock"):
        rows = trial_rows(study)
        summary = summarize(rows, opts)
        write_trials_csv(rows, out / "trials.csv")
        plot_pareto(rows, summary, out / "pareto.png")
        if write_best is not None and summary["best"] is not None:
            write_best(summary["best"]["params"], out / "best.toml")
            summary["best_toml"] = str(out / "best.toml")
        write_json(out / "summary.json", summary)
    return summary
